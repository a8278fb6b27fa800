"""Shared helpers of the benchmarks: the benchmark model, realistic pairs, table printing, FLOPs and peaks, RSS,
percentiles."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(os.environ.get("RERANK_BENCH_DIR", Path.home() / ".cache/qwen-rerank/bench"))
# Qwen3-Reranker-0.6B's shape with Qwen's real vocabulary and weights stored in bf16 as Qwen's are ("-qv": folders
# made before it had a tiny vocabulary; "-bf16w": before its weights were bf16, when bf16 and f16 rows paid their
# rounding, which Qwen's checkpoint does not; docs/benchmarks.md, "bf16 (OpenVINO)").
BENCH_NAME = "qwen3-0.6b-shape-qv-bf16w"
BENCH_MODEL_DIR = BENCH_DIR / BENCH_NAME
BENCH_CHECKPOINT_DIR = BENCH_DIR / f"{BENCH_NAME}-hf"
NAIVE_MODEL_DIR = BENCH_DIR / f"{BENCH_NAME}-full-logits"
SEQ_CLS_DIR = BENCH_DIR / f"{BENCH_NAME}-seq-cls"
WORDS = (
    "retrieval ranking model query document passage relevant search index vector dense sparse token batch latency "
    "throughput cluster replica actor dataset parquet machine learning data science python coffee weather history "
    "paris france music sport recipe garden travel health finance energy climate"
).split()


def bench_checkpoint() -> Path:
    """The random Hugging Face checkpoint with Qwen3-Reranker-0.6B's exact shape (seed 0), its weights stored in bf16
    as Qwen's are; built once and cached."""
    folder = BENCH_CHECKPOINT_DIR
    if not (folder / "config.json").exists():
        from rerank_core.tiny_model import build_checkpoint

        print(f"building the 0.6B-shape random checkpoint into {folder} (once) ...", flush=True)
        build_checkpoint(folder, full_size=True)
    return folder


def bench_model(dtypes: str = "f32,int8") -> Path:
    """Our export of that checkpoint with the dtypes asked for; exported once (≈1–3 min per dtype) and cached."""
    from rerank_core.cpu import int8_weight_bits
    from rerank_core.export import EXPORTER_VERSION, export_checkpoint
    from rerank_core.model_files.manifest import Manifest

    wanted = dtypes.split(",")
    manifest = Manifest.read(BENCH_MODEL_DIR) if BENCH_MODEL_DIR.is_dir() else None
    current = manifest is not None and manifest.exporter == EXPORTER_VERSION
    graphs = manifest.graphs if current else []
    # An int8 graph counts only with this CPU's weight bits (8 with VNNI/AMX, 7 without: rerank_core/cpu.py).
    have = [
        g.dtype.value
        for g in graphs
        if g.layout == "past_kv" and (g.dtype.value != "int8" or g.weight_bits == int8_weight_bits())
    ]
    if any(d not in have for d in wanted):
        print(f"exporting the 0.6B-shape model ({dtypes}) into {BENCH_MODEL_DIR} (once) ...", flush=True)
        export_checkpoint(
            bench_checkpoint(),
            BENCH_MODEL_DIR,
            dtypes=list(dict.fromkeys(have + wanted)),
            overwrite=True,
            source_name="random-qwen3-reranker-0.6b-shape",
        )
    return BENCH_MODEL_DIR


def naive_model() -> Path:
    """The same checkpoint as a naive full-logits graph, laid out like third-party exports; cached."""
    if not (NAIVE_MODEL_DIR / "model.onnx").exists():
        from rerank_core.export import export_checkpoint

        print(f"exporting the naive full-logits graph into {NAIVE_MODEL_DIR} (once) ...", flush=True)
        export_checkpoint(bench_checkpoint(), NAIVE_MODEL_DIR, full_logits=True, overwrite=True)
    return NAIVE_MODEL_DIR


def seq_cls_checkpoint(checkpoint: Path, out: Path) -> Path:
    """The reranker as Qwen3ForSequenceClassification: one label whose weight is lm_head[yes] − lm_head[no]."""
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    causal = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=1, dtype=torch.float32)
    model.model.load_state_dict(causal.model.state_dict())
    with torch.no_grad():
        model.score.weight.copy_((causal.lm_head.weight[yes] - causal.lm_head.weight[no]).unsqueeze(0))
    model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.convert_tokens_to_ids("<|endoftext|>")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def mixed_pairs(
    n: int, *, queries: int = 8, min_words: int = 7, max_words: int = 160, seed: int = 0, query_words=(3, 10)
):
    """n (query, document) pairs over several queries (of `query_words` words) with documents of mixed length."""
    rng = random.Random(seed)
    qs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*query_words))) + "?" for _ in range(queries)]
    return [
        (qs[i % queries], " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))))
        for i in range(n)
    ]


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """Print a Markdown table (pastes straight into the README)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{c:.3g}" if isinstance(c, float) else str(c) for c in row) + " |")


# The instruction sets our CPU numbers depend on: AVX-512, int8 dot products, bf16 (AVX512-BF16, AMX).
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_description() -> str:
    """This machine's CPU for a table's title: model name, logical cores and the features that matter here (Linux)."""
    from rerank_core.cpu import cpu_flags

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    has = [f for f in CPU_FEATURES if f in cpu_flags()]
    return f"CPU: {names[0] if names else 'unknown'}, {os.cpu_count()} logical cores, {' '.join(has) or 'no AVX2'}"


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (VmHWM) so the next measurement covers only what follows (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gib() -> float:
    """Peak resident memory of this process since the last reset, in GiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def flops_per_pair(config: dict, tokens: int, attention: str = "square") -> float:
    """Useful FLOPs to score one sequence of `tokens` tokens: the matmuls of every layer, attention (QKᵀ and AV) over
    the full masked square (`attention` "square": what a masked graph computes) or its causal half ("causal": what
    Flash kernels compute), and the yes/no row."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    per_token = 2 * (h * q + 2 * h * kv + q * h + 3 * h * config["intermediate_size"])
    keys = tokens if attention == "square" else (tokens + 1) / 2
    return layers * (per_token * tokens + 2 * 2 * tokens * keys * q) + 2 * h


_PEAK_PROBE = """
import time, numpy as np
from threadpoolctl import threadpool_limits
a = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
best = 0.0
with threadpool_limits({threads}):
    for _ in range(4):
        start = time.perf_counter(); a @ a; best = max(best, 2 * 4096**3 / (time.perf_counter() - start))
print(best)
"""


def cpu_peak_flops(threads: int) -> float:
    """Attainable f32 peak: best of 4 float32 4096² sgemms with numpy's OpenBLAS on `threads` threads, in a
    child process without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (set on some machines here; they slow its kernels)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE.format(threads=threads)], env=env, check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip())


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) of `values` (numpy's linear interpolation); NaN when there are none."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")
