"""GPU benchmark: our CUDA graph against what users run on GPUs today, same pairs, one run.

Rows, each in a fresh process (so peak GPU memory is its own): the official transformers recipe (f32 = the score
reference, and f16) · sentence-transformers CrossEncoder on the sequence-classification form of the reranker (the
yes−no row of the LM head as its one-label head: how TEI, Infinity and sentence-transformers serve Qwen3
rerankers; f16 and bf16, SDPA, or FlashAttention-2 where `flash_attn` is installed) · ours through the production
path `Reranker.from_pretrained(…, device="cuda")`: the f16 GPU graph (right padding, fused Attention), and the
f16 past-K/V graph (prefix sharing on) on CUDA for comparison. Length mixes: ~30-token documents, ~300-token documents,
and mixed 20–500. Columns: pairs/s, tokens/s, peak GPU memory (nvidia-smi, sampled), max |Δscore| vs official f32.
Model: random weights with Qwen3-Reranker-0.6B's exact shape (bench/common.py).

Needs a CUDA GPU with torch, and onnxruntime-gpu for our rows; without a GPU it says so and exits 0.
`--smoke` runs every row on the CPU with the tiny model, to check the script itself.

Run: python bench/gpu.py [--pairs 1024] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.common import BENCH_DIR, bench_checkpoint, mixed_pairs, print_table, seq_cls_checkpoint  # noqa: E402

GPU_EXPORT_DIR = BENCH_DIR / "qwen3-0.6b-shape-gpu"
SEQ_CLS_DIR = BENCH_DIR / "qwen3-0.6b-shape-seq-cls"
ROWS = {
    "official-f32": "official transformers recipe, f32 (reference)",
    "official-f16": "official transformers recipe, f16 SDPA",
    "st-f16": "sentence-transformers CrossEncoder, f16",
    "st-bf16": "sentence-transformers CrossEncoder, bf16",
    "ours-gpu-f16": "ours, f16 GPU graph (right padding, fused Attention)",
    "ours-cpu-layout-f16": "ours, f16 past-K/V graph (prefix sharing) on CUDA",
}
FIXED_BATCH = 32  # the peers' batch size (CrossEncoder.predict's default is 32)


def gpu_status() -> tuple[bool, str]:
    """(a CUDA GPU is usable by torch, why not / which)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA GPU"
    return True, torch.cuda.get_device_name(0)


def length_mixes(n: int) -> dict[str, list[tuple[str, str]]]:
    """The pair sets: short documents, ~300-token documents, and a mix."""
    return {
        "~30-token documents": mixed_pairs(n, queries=8, min_words=12, max_words=20, seed=1),
        "~300-token documents": mixed_pairs(n, queries=8, min_words=190, max_words=230, seed=2),
        "mixed 20–500 tokens": mixed_pairs(n, queries=8, min_words=7, max_words=330, seed=3),
    }


def make_row(row: str, checkpoint: Path, export: Path, device: str):
    """A scoring function for one row, loaded on `device`."""
    if row.startswith("official"):
        from tests.oracle import OfficialRecipe

        recipe = OfficialRecipe(checkpoint, device=device, dtype="float32" if row.endswith("f32") else "float16")
        return lambda pairs: recipe.score(pairs, batch_size=FIXED_BATCH)
    if row.startswith("st-"):
        from bench.peer_rows import sentence_transformers_row
        from rerank_core.formatting import DEFAULT_INSTRUCTION, PREFIX, SUFFIX

        seq_cls = seq_cls_checkpoint(checkpoint, SEQ_CLS_DIR if device == "cuda" else checkpoint.parent / "seq-cls")
        return sentence_transformers_row(str(seq_cls), row.split("-")[1], device, PREFIX, SUFFIX, DEFAULT_INSTRUCTION)
    from rerank_core import Reranker

    variant = "cuda" if row.startswith("ours-gpu") else "cpu"
    reranker = Reranker.from_pretrained(str(export), device=device, dtype="f16", graph_variant=variant)
    return reranker.score_pairs


def child(row: str, mix: str, n: int, smoke: bool) -> None:
    """Run one row on one mix in this (fresh) process; print a JSON line with the timing and the scores."""
    checkpoint, export, device = _models(smoke)
    pairs = length_mixes(n)[mix]
    score = make_row(row, checkpoint, export, device)
    score(pairs[:FIXED_BATCH])  # warm-up: kernels, allocator, CUDA graphs of the runtime
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    scores = score(pairs)
    seconds = time.perf_counter() - start
    print("RESULT " + json.dumps({"seconds": seconds, "scores": [float(s) for s in scores]}), flush=True)


def _models(smoke: bool) -> tuple[Path, Path, str]:
    """(checkpoint, our export with the f16 GPU graph, device)."""
    from rerank_core.export import export_checkpoint
    from rerank_core.locate.manifest import Manifest

    if smoke:
        from rerank_core.tiny_model import build_checkpoint

        root = BENCH_DIR / "gpu-smoke"
        checkpoint = root / "ckpt"
        if not (checkpoint / "config.json").exists():
            build_checkpoint(checkpoint)
        export, device = root / "export", "cpu"
    else:
        checkpoint, export, device = bench_checkpoint(), GPU_EXPORT_DIR, "cuda"
    manifest = Manifest.read(export) if export.is_dir() else None
    have = {(g.dtype.value, g.layout) for g in manifest.graphs} if manifest else set()
    if not {("f16", "past_kv"), ("f16", "causal")} <= have:
        print(f"exporting the f16 past-K/V and GPU graphs into {export} (once) ...", flush=True)
        export_checkpoint(checkpoint, export, dtypes=["f16"], cuda_dtypes=["f16"], overwrite=True)
    return checkpoint, export, device


class GpuMemorySampler:
    """Peak `nvidia-smi` memory.used (MiB) of GPU 0 while a block runs, sampled every 50 ms."""

    def __init__(self, enabled: bool):
        self.enabled, self.peak, self._stop = enabled, 0.0, threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                capture_output=True,
                text=True,
            ).stdout
            if out.strip():
                self.peak = max(self.peak, float(out.split()[0]))
            self._stop.wait(0.05)

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()


def run_row(row: str, mix: str, n: int, smoke: bool) -> tuple[dict | None, float, str]:
    """(result, peak GPU MiB, why it failed) of one row in a fresh process."""
    command = [sys.executable, __file__, "--child", row, "--mix", mix, "--pairs", str(n)] + (
        ["--smoke"] if smoke else []
    )
    with GpuMemorySampler(enabled=not smoke) as memory:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    why = "" if result else (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
    return result, memory.peak, why


def main() -> None:
    """Every row on every length mix; print one table per mix."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model: check the script, measure nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mix, args.pairs, args.smoke)
        return
    usable, which = gpu_status()
    if not usable and not args.smoke:
        print(f"bench/gpu.py: no GPU to measure on ({which}); nothing measured. `--smoke` checks the script on CPU.")
        return
    n = 8 if args.smoke else args.pairs
    which = "smoke run: CPU, tiny model, nothing measured" if args.smoke else which
    _, export, _ = _models(args.smoke)  # exported once, before any row is timed
    from rerank_core.backends.onnx import OnnxQwen3Scorer
    from rerank_core.formatting import format_content

    tokenizer = OnnxQwen3Scorer.open(export, dtype="f16", intra_op_threads=1).tokenizer
    for mix, pairs in length_mixes(n).items():
        tokens = int(tokenizer.encode([format_content(q, d) for q, d in pairs]).lengths.sum())
        table, reference = [], None
        for row, label in ROWS.items():
            result, peak, why = run_row(row, mix, n, args.smoke)
            if result is None:
                table.append([label, "not run", "-", "-", "-", why])
                print(f"  {mix}, {label}: not run ({why})", flush=True)
                continue
            scores = np.asarray(result["scores"])
            reference = scores if row == "official-f32" else reference
            delta = float(np.abs(scores - reference).max()) if reference is not None else float("nan")
            seconds = result["seconds"]
            table.append([label, n / seconds, tokens / seconds, f"{peak:.0f}" if peak else "-", delta, ""])
            print(f"  {mix}, {label}: {n / seconds:.1f} pairs/s", flush=True)
        print_table(
            f"{mix}: {n} pairs, {tokens / n:.0f} tokens per pair with the template — {which}",
            ["path", "pairs/s", "tokens/s", "peak GPU MiB", "max |Δscore| vs official f32", "note"],
            table,
        )


if __name__ == "__main__":
    main()
