"""GPU benchmark: every GPU check and our CUDA graph against what users run on GPUs today, same pairs, one run.

Prints, in order: the environment; node placement of our graphs on CUDA (no node on the CPU) and parity with the
official recipe on Qwen's real vocabulary in several batch compositions (bench/gpu/checks.py); then the rows, each in
a fresh process (so peak GPU memory is its own): the official transformers recipe (f32 = the score reference, and
f16) · sentence-transformers CrossEncoder on the sequence-classification form of the reranker (the yes−no row of the
LM head as its one-label head: how TEI, Infinity and sentence-transformers serve Qwen3 rerankers; f16 and bf16,
SDPA, or FlashAttention-2 where `flash_attn` is installed) · ours through the production path
`Reranker.from_pretrained(…, device="cuda")`: the f16 GPU graph (right padding, fused Attention), the f16 fused GPU
graph (ONNX Runtime's GroupQueryAttention with q/k norms and RoPE inside, fused norms, concatenated projections;
also with its q/k norms as nodes of their own, as other providers run it), the f16 paged GPU graph (the same on
packed tokens with PagedAttention; prompts shared inside a call, and not) and the f16 past-K/V graph (prefix
sharing) on CUDA, each with the default call size and with smaller calls. Length mixes:
~30-token, ~300-token and mixed 20–500-token documents, and ~30-token documents of ~300-token queries (where
sharing a query's prompt pays). Columns: pairs/s, tokens/s, useful TFLOP/s (the model's
matmul and causal-attention FLOPs on real tokens, no padding) and its share of the GPU's dense f16/bf16 peak, peak
GPU memory (nvidia-smi, sampled), max |Δscore| and Spearman against official f32.
Model: random weights with Qwen3-Reranker-0.6B's exact shape (bench/common.py).

Needs a CUDA GPU with torch, and onnxruntime-gpu for our rows; without a GPU it says so and exits 0. `--prepare`
builds and exports the models only (no GPU needed); `--smoke` runs everything on the CPU with tiny models, to check
the script itself.

Run: python bench/gpu/scoring.py [--pairs 1024] [--smoke] [--prepare]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.common import (  # noqa: E402
    BENCH_DIR,
    BENCH_NAME,
    SEQ_CLS_DIR,
    bench_checkpoint,
    flops_per_pair,
    mixed_pairs,
    print_table,
    seq_cls_checkpoint,
)
from bench.gpu import checks as gpu_checks  # noqa: E402
from bench.gpu.usage import Usage  # noqa: E402
from rerank_core.config import MAX_ROWS_PER_CALL, TOKEN_BUDGET  # noqa: E402

GPU_EXPORT_DIR = BENCH_DIR / f"{BENCH_NAME}-gpu"
GPU_DEFAULT_CALLS = f"{TOKEN_BUDGET['cuda']:,} tokens, {MAX_ROWS_PER_CALL['cuda']} rows a call"
SMALL_CALLS = {"token_budget": 16384, "max_rows_per_call": 32}  # the GPU defaults before they were measured
ROWS = {
    "official-f32": "official transformers recipe, f32 (reference)",
    "official-f16": "official transformers recipe, f16 SDPA",
    "st-f16": "sentence-transformers CrossEncoder, f16",
    "st-bf16": "sentence-transformers CrossEncoder, bf16",
    "st-f16-b128": "sentence-transformers CrossEncoder, f16, batch 128",
    "ours-gpu-f16": f"ours, f16 GPU graph (defaults: {GPU_DEFAULT_CALLS})",
    "ours-gpu-f16-small": "ours, f16 GPU graph, 16,384 tokens, 32 rows a call",
    "ours-fused-f16": f"ours, f16 fused GPU graph (ONNX Runtime's fused operators; {GPU_DEFAULT_CALLS})",
    "ours-fused-f16-small": "ours, f16 fused GPU graph, 16,384 tokens, 32 rows a call",
    "ours-fused-split-f16": f"ours, f16 fused GPU graph, q/k norms as nodes of their own ({GPU_DEFAULT_CALLS})",
    "ours-paged-f16": "ours, f16 paged GPU graph (packed tokens, prompts shared in 128-token blocks; defaults)",
    "ours-paged-f16-noshare": "ours, f16 paged GPU graph, prompts not shared (defaults)",
    "ours-shared-f16": "ours, f16 past-K/V graph, prefix sharing (defaults)",
    "ours-shared-f16-small": "ours, f16 past-K/V graph, prefix sharing, 16,384 tokens, 32 rows a call",
}
FIXED_BATCH = 32  # the peers' batch size (CrossEncoder.predict's default is 32)
DENSE_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense f16/bf16, SXM datasheets


def gpu_status() -> tuple[bool, str]:
    """(a CUDA GPU is usable by torch, why not / which)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA GPU"
    return True, torch.cuda.get_device_name(0)


def device_or_none(script: str, smoke: bool) -> tuple[str, str] | None:
    """(device, what it is) a GPU bench runs on: the GPU, or the CPU in a smoke run; None (and says why) when a real
    run finds no GPU."""
    if smoke:
        return "cpu", "smoke run: CPU, tiny model, nothing measured"
    usable, which = gpu_status()
    if not usable:
        print(f"{script}: no GPU to measure on ({which}); nothing measured. `--smoke` checks the script on CPU.")
        return None
    return "cuda", which


def length_mixes(n: int) -> dict[str, list[tuple[str, str]]]:
    """The pair sets: short documents, ~300-token documents, and a mix."""
    return {
        "~30-token documents": mixed_pairs(n, queries=8, min_words=12, max_words=20, seed=1),
        "~300-token documents": mixed_pairs(n, queries=8, min_words=190, max_words=230, seed=2),
        "mixed 20–500 tokens": mixed_pairs(n, queries=8, min_words=7, max_words=330, seed=3),
        "~30-token documents, ~300-token queries": mixed_pairs(
            n, queries=8, min_words=12, max_words=20, seed=4, query_words=(230, 270)
        ),
    }


def make_row(row: str, checkpoint: Path, export: Path, device: str):
    """A scoring function for one row, loaded on `device`."""
    if row.startswith("official"):
        from tests.oracle import OfficialRecipe

        recipe = OfficialRecipe(checkpoint, device=device, dtype="float32" if row.endswith("f32") else "float16")
        return lambda pairs: recipe.score(pairs, batch_size=FIXED_BATCH)
    if row.startswith("st-"):
        from bench.peer_rows import sentence_transformers_row
        from rerank_core.families.qwen3.template import DEFAULT_INSTRUCTION, PREFIX, SUFFIX

        seq_cls = seq_cls_checkpoint(checkpoint, SEQ_CLS_DIR if device == "cuda" else checkpoint.parent / "seq-cls")
        batch = 128 if row.endswith("b128") else FIXED_BATCH
        dtype = row.split("-")[1]
        return sentence_transformers_row(str(seq_cls), dtype, device, PREFIX, SUFFIX, DEFAULT_INSTRUCTION, batch)
    from rerank_core import Reranker

    kind = row.rsplit("-f16", 1)[0]
    variant = {"ours-gpu": "cuda", "ours-fused": "fused", "ours-fused-split": "fused", "ours-paged": "paged"}
    options = dict(SMALL_CALLS if row.endswith("-small") else {}, share_prefix=not row.endswith("-noshare"))
    folder = qk_split_export(export) if kind == "ours-fused-split" else export
    reranker = Reranker.from_pretrained(
        str(folder), device=device, dtype="f16", graph_variant=variant.get(kind, "cpu"), **options
    )
    if reranker.scorer.device != device:  # the CUDA provider did not start: a CPU timing would pass for a GPU one
        raise SystemExit(f"ours runs on {reranker.scorer.device}, not {device}")
    return reranker.score_pairs


def child(rows: list[str], n: int, smoke: bool) -> None:
    """Run rows on every mix in this (fresh) process; print a JSON line per row and mix with the timing and scores."""
    checkpoint, export, device = bench_models(smoke)
    if device == "cuda":
        import torch  # before any ONNX Runtime session: loads CUDA's libraries

    for row in rows:
        try:
            score = make_row(row, checkpoint, export, device)
        except Exception as exc:  # a row its peer's package lacks here, say: the other rows go on
            print("NOT RUN " + json.dumps({"row": row, "why": f"{type(exc).__name__}: {exc}"[:160]}), flush=True)
            continue
        for mix, pairs in length_mixes(n).items():
            score(pairs[:FIXED_BATCH])  # warm-up: kernels, allocator
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            scores = score(pairs)
            seconds = time.perf_counter() - start
            result = {"row": row, "mix": mix, "seconds": seconds, "scores": [float(s) for s in scores]}
            print("RESULT " + json.dumps(result), flush=True)


def bench_models(smoke: bool) -> tuple[Path, Path, str]:
    """(checkpoint, our export with the f16 GPU graphs and past-K/V graph, device); built and exported once. A smoke
    run takes the parity model's (tiny, every graph), so it builds one model."""
    from rerank_core.export import export_checkpoint
    from rerank_core.model_files.manifest import Manifest

    if smoke:
        checkpoint, export = gpu_checks.parity_model(smoke)
        return checkpoint, export, "cpu"
    checkpoint, export, device = bench_checkpoint(), GPU_EXPORT_DIR, "cuda"
    manifest = Manifest.read(export) if export.is_dir() else None
    have = {(g.dtype.value, g.layout) for g in manifest.graphs} if gpu_checks.current(manifest) else set()
    if not {("f16", layout) for layout in ("past_kv", "causal", "fused", "paged")} <= have:
        print(f"exporting the f16 past-K/V and GPU graphs into {export} (once) ...", flush=True)
        gpu_graphs = {"cuda_dtypes": ["f16"], "fused_dtypes": ["f16"], "paged_dtypes": ["f16"]}
        export_checkpoint(checkpoint, export, dtypes=["f16"], overwrite=True, **gpu_graphs)
    return checkpoint, export, device


def qk_split_export(export: Path) -> Path:
    """`export` beside itself with its f16 fused graph's q/k norms as nodes of their own (what other providers run,
    and what the fused graph was before exporter 8), to time both on CUDA; its other files linked."""
    import onnx

    from rerank_core.dtypes import Dtype
    from rerank_core.export.graph import FUSED_GRAPH_NAMES
    from rerank_core.families.qwen3.cuda_only import split_qk_norms

    name = FUSED_GRAPH_NAMES[Dtype.F16]
    source, out = export / name, export.with_name(export.name + "-qk-split")
    if (out / name).exists() and (out / name).stat().st_mtime >= source.stat().st_mtime:
        return out
    out.mkdir(exist_ok=True)
    for path in export.iterdir():
        link = out / path.name
        if not path.name.startswith(name) and not link.exists():
            link.symlink_to(path.resolve())
    external = (export / f"{name}.data").exists()
    model = split_qk_norms(onnx.load(str(source)))
    onnx.save(model, str(out / name), save_as_external_data=external, location=f"{name}.data")
    return out


def prepare(smoke: bool) -> None:
    """Build and export every model the run needs (no GPU needed): bench model, its seq-cls form, parity model."""
    checkpoint, export, _ = bench_models(smoke)
    qk_split_export(export)
    seq_cls_checkpoint(checkpoint, SEQ_CLS_DIR if not smoke else checkpoint.parent / "seq-cls")
    gpu_checks.parity_model(smoke)
    print("prepared", flush=True)


def run_rows(rows: list[str], n: int, smoke: bool) -> dict[str, tuple[dict[str, dict], float, str]]:
    """row → ({mix: result}, peak GPU MiB, why it failed) of `rows` run in one fresh process."""
    command = [sys.executable, __file__, "--child", ",".join(rows), "--pairs", str(n)] + (["--smoke"] if smoke else [])
    with Usage(gpu=not smoke, interval_s=0.05) as usage:
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    lines = proc.stdout.splitlines()
    results = [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]
    why = {r["row"]: r["why"] for r in (json.loads(line[8:]) for line in lines if line.startswith("NOT RUN "))}
    crash = "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
    return {
        row: ({r["mix"]: r for r in results if r["row"] == row}, usage.peak_memory_mib, why.get(row, crash))
        for row in rows
    }


def call_padding(lengths: np.ndarray) -> dict[str, float]:
    """The share of pad tokens in the GPU graphs' calls for these pair lengths at the GPU defaults: as planned (calls
    re-cut where padding costs more than a call) and as every call filled would be."""
    from rerank_core.families.qwen3.layouts import GPU_CALL_OVERHEAD_TOKENS
    from rerank_core.planning import budget_batches

    rows = [np.zeros(int(n), dtype=np.int64) for n in lengths]
    shares = {}
    for label, overhead in (("planned", GPU_CALL_OVERHEAD_TOKENS), ("calls filled", None)):
        calls = list(
            budget_batches(
                rows,
                TOKEN_BUDGET["cuda"],
                MAX_ROWS_PER_CALL["cuda"],
                pad_id=0,
                right_padding=True,
                call_overhead_tokens=overhead,
            )
        )
        shares[label] = 1 - int(lengths.sum()) / sum(call.input_ids.size for call in calls)
    return shares


def dense_peak(gpu: str) -> float | None:
    """The GPU's dense f16/bf16 peak in TFLOP/s from its datasheet, when known."""
    return next((peak for name, peak in DENSE_PEAK_TFLOPS.items() if name in gpu), None)


def main() -> None:
    """Checks, then every row on every length mix; print one table per mix."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny models: check the script, measure nothing")
    parser.add_argument("--prepare", action="store_true", help="build and export the models, then stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child.split(","), args.pairs, args.smoke)
        return
    if args.prepare:
        prepare(args.smoke)
        return
    found = device_or_none("bench/gpu/scoring.py", args.smoke)
    if found is None:
        return
    device, which = found
    n = 8 if args.smoke else args.pairs
    checkpoint, export, _ = bench_models(args.smoke)  # exported once, before any row is timed
    qk_split_export(export)
    gpu_checks.environment(device)
    _, parity_export = gpu_checks.parity_model(args.smoke)  # the bench model's ops, few layers: opens in seconds
    # Every graph on a GPU; a smoke run checks the script on two f16 graphs: a standard one and a CUDA-only one (which
    # the CPU runs rewritten).
    smoke_graphs = [parity_export / "model_f16.onnx", parity_export / "model_paged_f16.onnx"]
    gpu_checks.placement(smoke_graphs if args.smoke else sorted(parity_export.glob("*.onnx")), device)
    gpu_checks.parity(device, args.smoke)
    rows_table(checkpoint, export, n, args.smoke, which)


def rows_table(checkpoint: Path, export: Path, n: int, smoke: bool, which: str) -> None:
    """Every row (one process each, all mixes), then one table per mix."""
    from scipy.stats import spearmanr

    from rerank_core.backends.onnx import OnnxScorer
    from rerank_core.families.qwen3.template import format_content

    config = json.loads((checkpoint / "config.json").read_text())
    peak = dense_peak(which)
    tokenizer = OnnxScorer.open(export, dtype="f16", intra_op_threads=1).tokenizer
    mixes = length_mixes(n)
    lengths = {mix: tokenizer.encode([format_content(q, d) for q, d in pairs]).lengths for mix, pairs in mixes.items()}
    runs = {}
    # Each row in a fresh process of its own (its memory and time its own); a smoke run measures nothing: one for all.
    for group in [list(ROWS)] if smoke else [[row] for row in ROWS]:
        runs.update(run_rows(group, n, smoke))
        for row in group:
            rates = ", ".join(f"{n / r['seconds']:.0f}" for r in runs[row][0].values())
            print(f"  {ROWS[row]}: {rates or 'not run'} pairs/s {runs[row][2]}", flush=True)
    for mix in mixes:
        tokens = int(lengths[mix].sum())
        padding = "; ".join(f"{label} {100 * share:.1f}%" for label, share in call_padding(lengths[mix]).items())
        flops = sum(flops_per_pair(config, int(t), attention="causal") for t in lengths[mix])
        reference = runs["official-f32"][0].get(mix, {}).get("scores")
        table = []
        for row, label in ROWS.items():
            results, memory, why = runs[row]
            if mix not in results:
                table.append([label, "not run", "-", "-", "-", "-", "-", "-", why])
                continue
            seconds, scores = results[mix]["seconds"], np.asarray(results[mix]["scores"])
            delta = float(np.abs(scores - reference).max()) if reference is not None else float("nan")
            rho = float(spearmanr(scores, reference).statistic) if reference is not None else float("nan")
            tflops = flops / seconds / 1e12
            share = f"{100 * tflops / peak:.1f}%" if peak else "-"
            gpu_mib = f"{memory:.0f}" if memory else "-"
            table.append([label, n / seconds, tokens / seconds, tflops, share, gpu_mib, delta, rho, ""])
        print_table(
            f"{mix}: {n} pairs, {tokens / n:.0f} tokens per pair with the template, padding of the GPU graphs' "
            f"calls: {padding} — {which}",
            [
                "path",
                "pairs/s",
                "tokens/s",
                "useful TFLOP/s",
                "of dense peak",
                "peak GPU MiB",
                "max |Δscore| vs official f32",
                "Spearman vs official f32",
                "note",
            ],
            table,
        )


if __name__ == "__main__":
    main()
