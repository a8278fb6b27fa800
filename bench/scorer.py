"""Scoring benchmark on Qwen3-Reranker-0.6B's exact shape (random weights, same FLOPs), all rows in one process.

Rows: the official transformers recipe (full logits, left padding, fixed batches of 8 in input order) · the
same model as a naive full-logits ONNX graph (fixed batches) · ours f32 / int8 / f16 (token-budget batches).
Also: score drift of int8/f16 against f32, and padding waste of our batching against fixed batches.

Run: python bench/scorer.py [--pairs 48] [--threads 2] [--skip-f16]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402
    bench_checkpoint,
    bench_model,
    mixed_pairs,
    naive_model,
    peak_rss_gib,
    print_table,
    reset_peak_rss,
)

FIXED_BATCH = 8


def flops_per_pair(config: dict, length: int) -> float:
    """Useful FLOPs to score one sequence of `length` tokens: matmuls of every layer + attention + the yes/no row."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    per_token = 2 * (h * q + 2 * h * kv + q * h + 3 * h * config["intermediate_size"])
    attention = 2 * 2 * length * length * q  # QKᵀ and AV over the full (masked) square
    return layers * (per_token * length + attention) + 2 * h


def cpu_peak_flops(threads: int) -> float:
    """Attainable f32 peak: best of 3 float32 4096² matmuls with numpy's BLAS on `threads` threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((4096, 4096), dtype=np.float32)
    best = 0.0
    with threadpool_limits(threads):
        for _ in range(3):
            start = time.perf_counter()
            a @ a
            best = max(best, 2 * 4096**3 / (time.perf_counter() - start))
    return best


def timed(fn):
    """Run fn once to warm up on a small input, then time it; returns (scores, seconds, peak GiB)."""
    gc.collect()
    reset_peak_rss()
    fn(warmup=True)
    start = time.perf_counter()
    scores = fn(warmup=False)
    return scores, time.perf_counter() - start, peak_rss_gib()


def padding_waste(tokenizer, pairs, token_budget: int) -> tuple[float, float]:
    """(padded − real) ÷ real tokens: our token-budget batches vs fixed batches of 8 in input order."""
    from rerank_core.formatting import format_content

    encoded = tokenizer.encode([format_content(q, d) for q, d in pairs])
    lengths = encoded.lengths
    real = lengths.sum()
    ours = sum(b.input_ids.size for b in tokenizer.batches(encoded, token_budget, 64))
    fixed = sum(len(lengths[i : i + FIXED_BATCH]) * lengths[i : i + FIXED_BATCH].max() for i in range(0, len(lengths), FIXED_BATCH))
    return (ours - real) / real, (fixed - real) / real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--token-budget", type=int, default=4096)
    parser.add_argument("--skip-f16", action="store_true")
    parser.add_argument("--skip-official", action="store_true")
    args = parser.parse_args()

    import json

    from rerank_core.backends.onnx_qwen3 import OnnxQwen3Scorer
    from rerank_core.testing import OfficialRecipe

    dtypes = "f32,int8" if args.skip_f16 else "f32,int8,f16"
    checkpoint, model, naive = bench_checkpoint(), bench_model(dtypes), naive_model()
    config = json.loads((checkpoint / "config.json").read_text())
    pairs = mixed_pairs(args.pairs, queries=6)
    warm = pairs[:2]
    peak = cpu_peak_flops(args.threads)

    rows, scores = [], {}

    def ours(dtype: str):
        scorer = OnnxQwen3Scorer(model, dtype=dtype, intra_op_threads=args.threads, token_budget=args.token_budget)
        return lambda warmup: scorer.score(warm if warmup else pairs), scorer

    lengths = ours("f32")[1].tokenizer.encode([f"{q}{d}" for q, d in pairs]).lengths
    useful = sum(flops_per_pair(config, int(n)) for n in lengths)

    def record(name, fn):
        s, seconds, rss = timed(fn)
        scores[name] = s
        rows.append([name, len(pairs) / seconds, seconds, rss, useful / seconds / 1e9, useful / seconds / peak])
        print(f"  {name}: {len(pairs) / seconds:.2f} pairs/s", flush=True)

    if not args.skip_official:
        recipe = OfficialRecipe(checkpoint, threads=args.threads)
        record("official transformers recipe", lambda warmup: recipe.score(warm if warmup else pairs, batch_size=FIXED_BATCH))
        del recipe
    naive_scorer = OnnxQwen3Scorer(naive, intra_op_threads=args.threads)
    record("naive full-logits ONNX", lambda warmup: naive_scorer.score(warm if warmup else pairs, batch_size=FIXED_BATCH))
    del naive_scorer
    for dtype in dtypes.split(","):
        fn, scorer = ours(dtype)
        record(f"ours {dtype}", fn)
        del fn, scorer

    base = rows[0][1]
    print_table(
        f"Scoring speed — {len(pairs)} mixed pairs (20–500 tokens, {int(lengths.min())}–{int(lengths.max())} with the "
        f"template), {args.threads} threads; CPU f32 peak {peak / 1e9:.0f} GFLOP/s measured (best 4096² sgemm, numpy BLAS)",
        ["path", "pairs/s", "seconds", "peak RSS GiB", "useful GFLOP/s", "share of peak", f"× {rows[0][0]}"],
        [r + [r[1] / base] for r in rows],
    )

    from scipy.stats import spearmanr

    ref = scores["ours f32"]
    drift_rows = []
    for name, s in scores.items():
        if name != "ours f32":
            drift_rows.append([name, float(np.abs(s - ref).max()), float(spearmanr(s, ref).statistic)])
    print_table("Score drift against ours f32 (same pairs)", ["path", "max |Δscore|", "Spearman"], drift_rows)

    tokenizer = OnnxQwen3Scorer(model, intra_op_threads=1).tokenizer
    ours_waste, fixed_waste = padding_waste(tokenizer, mixed_pairs(512, queries=8), args.token_budget)
    print_table(
        "Padding waste, 512 mixed pairs: (padded − real) ÷ real tokens",
        ["batching", "waste"],
        [[f"ours: sorted by length, ≤ {args.token_budget} tokens per batch", f"{ours_waste:.1%}"],
         [f"fixed batches of {FIXED_BATCH} in input order (official recipe, EmbedAnything)", f"{fixed_waste:.1%}"]],
    )


if __name__ == "__main__":
    main()
