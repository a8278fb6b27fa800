"""The graph layouts side by side on the CPU, f32, same pairs, one process: does `fused` pay here too?

Rows: `past_kv` (the CPU default: fused projections absent, attention with a mask, prefix sharing on, then off) ·
`causal` (the GPU graph: ONNX's Attention op, right padding) · `fused` (ONNX Runtime's fused operators: q/k/v and
gate+up each one GEMM, GroupQueryAttention with RoPE inside, residual adds fused with the norms) · `paged` (the same
on packed tokens; its PagedAttention runs here as the standard nodes of backends/onnx/paged_standard.py; prompts
shared inside a call in 128-token blocks, and not; calls of up to 8,192 tokens so that a call holds several rows).
Length mixes: ~30-token and ~300-token documents, and ~30-token documents of ~300-token queries. Columns:
pairs/s (best of `--rounds`), ratio to `past_kv` with sharing, max
|Δscore| against it. Model: random weights with Qwen3-Reranker-0.6B's exact shape (bench/common.py).

Run: python bench/layouts_cpu.py [--pairs 24] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import BENCH_DIR, BENCH_NAME, bench_checkpoint, cpu_description, mixed_pairs, print_table

EXPORT_DIR = BENCH_DIR / f"{BENCH_NAME}-layouts-f32"
ROWS = {
    "past_kv, prefix sharing (CPU default)": {"graph_variant": "cpu"},
    "past_kv, no sharing": {"graph_variant": "cpu", "share_prefix": False},
    "causal (ONNX Attention)": {"graph_variant": "cuda"},
    "fused (ONNX Runtime's fused operators)": {"graph_variant": "fused"},
    "paged, prompts shared in a call": {"graph_variant": "paged", "token_budget": 8192},
    "paged, no sharing": {"graph_variant": "paged", "token_budget": 8192, "share_prefix": False},
}


def export() -> Path:
    """The bench model's f32 graphs of every layout, exported once."""
    from rerank_core.export import export_checkpoint
    from rerank_core.model_files.manifest import Manifest

    layouts = {"fused", "causal", "paged"}
    if not (EXPORT_DIR.is_dir() and {g.layout for g in Manifest.read(EXPORT_DIR).graphs} >= layouts):
        print(f"exporting the f32 graphs of every layout into {EXPORT_DIR} (once) ...", flush=True)
        gpu_graphs = {f"{kind}_dtypes": ["f32"] for kind in ("cuda", "fused", "paged")}
        export_checkpoint(bench_checkpoint(), EXPORT_DIR, dtypes=["f32"], overwrite=True, **gpu_graphs)
    return EXPORT_DIR


def main() -> None:
    """Time every row on every mix; print one table per mix."""
    from rerank_core.backends.onnx import OnnxScorer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    folder = export()
    mixes = {
        "~30-token documents": mixed_pairs(args.pairs, queries=4, min_words=12, max_words=20, seed=1),
        "~300-token documents": mixed_pairs(args.pairs, queries=4, min_words=190, max_words=230, seed=2),
        "~30-token documents, ~300-token queries": mixed_pairs(
            args.pairs, queries=4, min_words=12, max_words=20, seed=4, query_words=(230, 270)
        ),
    }
    scorers = {row: OnnxScorer.open(folder, intra_op_threads=args.threads, **opts) for row, opts in ROWS.items()}
    for mix, pairs in mixes.items():
        results = {}
        for row, scorer in scorers.items():
            scorer.score(pairs[:2])  # warm-up
            best, scores = float("inf"), None
            for _ in range(args.rounds):
                start = time.perf_counter()
                scores = scorer.score(pairs)
                best = min(best, time.perf_counter() - start)
            results[row] = (len(pairs) / best, scores)
            print(f"  {mix}, {row}: {len(pairs) / best:.2f} pairs/s", flush=True)
        base_rate, base_scores = results[next(iter(ROWS))]
        rows = [
            [row, rate, rate / base_rate, float(np.abs(scores - base_scores).max())]
            for row, (rate, scores) in results.items()
        ]
        print_table(
            f"{mix}: {len(pairs)} pairs, f32, {args.threads} threads — {cpu_description()}",
            ["layout", "pairs/s", "× past_kv shared", "max |Δscore| vs past_kv"],
            rows,
        )


if __name__ == "__main__":
    main()
