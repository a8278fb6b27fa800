"""Scoring benchmark on Qwen3-Reranker-0.6B's exact shape (random weights, same FLOPs), all rows in one process.

Rows: the official transformers recipe (full logits, left padding, fixed batches of 8 in input order) · the
same model as a naive full-logits ONNX graph, fed by our tokenization and batching (≤ 8 rows), so the row isolates
the graph · ours f32 / int8 / f16 (length-sorted, token-budget batches) · ours bf16 (OpenVINO) where the CPU
has AMX-BF16 or AVX512-BF16.
Also: score drift of int8/f16 against f32, padding waste of our batching against fixed batches, and prefix
sharing off vs on (documents of ~30/120/500 tokens per query, several queries in one call, single pairs).

Useful FLOPs count every layer's matmuls per real token, attention over the full L² square (what the kernels
compute), and one yes−no row: the same work for every row, so FLOP/s compare like pairs/s do.

Run: python bench/scorer.py [--pairs 48] [--threads 2] [--skip-f16]
     python bench/scorer.py --prefix-only [--workloads W,…] [--dtypes f32,int8] [--prefix-budgets N]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    BENCH_MODEL_DIR,
    WORDS,
    bench_checkpoint,
    bench_model,
    cpu_description,
    cpu_peak_flops,
    flops_per_pair,
    mixed_pairs,
    naive_model,
    print_table,
)

ROW_NAMES = {"official": "official transformers recipe", "naive": "naive full-logits ONNX"}

FIXED_BATCH = 8


def rss_probe(row: str, threads: int, pairs: list) -> float:
    """Peak RSS (GiB) of a fresh process that loads `row`'s model and scores `pairs` (the longest batch)."""
    repo = str(Path(__file__).resolve().parents[1])
    code = (
        f"import json, sys; sys.path.insert(0, {repo!r})\n"
        "from bench.scorer import run_row; from bench.common import peak_rss_gib\n"
        f"run_row({row!r}, {threads:d}, json.loads(sys.stdin.read()))\n"
        "print(peak_rss_gib())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(pairs), check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def make_row(row: str, threads: int, token_budget: int | None = None):
    """A scoring function for one benchmark row: official, naive, or ours-<dtype>."""
    from rerank_core.backends.onnx import OnnxScorer
    from tests.oracle import OfficialRecipe

    if row == "official":
        recipe = OfficialRecipe(bench_checkpoint(), threads=threads)
        return lambda pairs: recipe.score(pairs, batch_size=FIXED_BATCH)
    if row == "naive":
        naive = OnnxScorer.open(naive_model(), intra_op_threads=threads)
        return lambda pairs: naive.score(pairs, batch_size=FIXED_BATCH)
    scorer = OnnxScorer.open(
        BENCH_MODEL_DIR, dtype=row.split("-", 1)[1], intra_op_threads=threads, token_budget=token_budget
    )
    return scorer.score


def run_row(row: str, threads: int, pairs: list) -> np.ndarray:
    """Load a row's model and score `pairs` once (what rss_probe measures)."""
    return make_row(row, threads)([tuple(p) for p in pairs])


def padding_waste(tokenizer, pairs, token_budget: int) -> tuple[float, float]:
    """(padded − real) ÷ real tokens: our token-budget batches vs fixed batches of 8 in input order."""
    from rerank_core.families.qwen3.template import format_content

    encoded = tokenizer.encode([format_content(q, d) for q, d in pairs])
    lengths = encoded.lengths
    real = lengths.sum()
    ours = sum(b.input_ids.size for b in tokenizer.batches(encoded.ids, token_budget, 64))
    fixed = sum(
        len(lengths[i : i + FIXED_BATCH]) * lengths[i : i + FIXED_BATCH].max()
        for i in range(0, len(lengths), FIXED_BATCH)
    )
    return (ours - real) / real, (fixed - real) / real


def main() -> None:
    """Build or reuse the models, run every row on the same pairs, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--token-budget", type=int, default=None, help="default: the scorer's CPU default")
    parser.add_argument("--skip-f16", action="store_true")
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--prefix-only", action="store_true", help="only the prefix-sharing table")
    parser.add_argument("--workloads", help="prefix table: only the workloads whose name holds one of these (comma)")
    parser.add_argument("--dtypes", default="f32,int8", help="prefix table: the dtypes")
    parser.add_argument(
        "--prefix-budgets",
        type=int,
        help="prefix table: token budgets a shared prefix may span (the scorer's PREFIX_BUDGETS; before 2026-12-07: 1)",
    )
    args = parser.parse_args()
    if args.prefix_only:
        if args.prefix_budgets:
            from rerank_core.backends.onnx import scorer

            scorer.PREFIX_BUDGETS = args.prefix_budgets
        bench_model("f32,int8")
        prefix_sharing_table(args.threads, args.dtypes.split(","), only=args.workloads)
        return

    dtypes = "f32,int8" if args.skip_f16 else "f32,int8,f16"
    checkpoint = bench_checkpoint()
    bench_model(dtypes)
    naive_model()
    config = json.loads((checkpoint / "config.json").read_text())
    pairs = mixed_pairs(args.pairs, queries=6)
    peak = cpu_peak_flops(args.threads)

    from rerank_core.backends.onnx import OnnxScorer
    from rerank_core.config import TOKEN_BUDGET
    from rerank_core.families.qwen3.template import format_content

    tokenizer = OnnxScorer.open(BENCH_MODEL_DIR, intra_op_threads=1).tokenizer
    lengths = tokenizer.encode([format_content(q, d) for q, d in pairs]).lengths
    useful = sum(flops_per_pair(config, int(n)) for n in lengths)
    longest = [list(pairs[i]) for i in np.argsort(-lengths)[:FIXED_BATCH]]

    names = (["official"] if not args.skip_official else []) + ["naive"] + [f"ours-{d}" for d in dtypes.split(",")]
    from rerank_core.backends.onnx.openvino_session import NO_BF16, bf16_available

    if bf16_available():
        names.append("ours-bf16")
    else:
        print(f"  ours bf16: left out, {NO_BF16} (or OpenVINO is missing)")
    rows, scores = [], {}
    for name in names:
        score = make_row(name, args.threads, args.token_budget)
        score(pairs[:2])  # warm-up
        start = time.perf_counter()
        scores[name] = score(pairs)
        seconds = time.perf_counter() - start
        del score
        rss = rss_probe(name, args.threads, longest)
        label = ROW_NAMES.get(name, name.replace("-", " "))
        rows.append([label, len(pairs) / seconds, seconds, rss, useful / seconds / 1e9, useful / seconds / peak])
        print(f"  {label}: {len(pairs) / seconds:.2f} pairs/s, peak RSS {rss:.2f} GiB", flush=True)

    base = rows[0][1]
    print_table(
        f"Scoring speed — {len(pairs)} mixed pairs (20–500 tokens, {int(lengths.min())}–{int(lengths.max())} with the "
        f"template), {args.threads} threads; CPU f32 peak {peak / 1e9:.0f} GFLOP/s measured (best 4096² sgemm, numpy "
        f"OpenBLAS, {args.threads} threads); peak RSS: a fresh process scoring the {FIXED_BATCH} longest pairs; "
        f"{cpu_description()}",
        ["path", "pairs/s", "seconds", "peak RSS GiB", "useful GFLOP/s", "share of peak", f"× {rows[0][0]}"],
        [r + [r[1] / base] for r in rows],
    )

    from scipy.stats import spearmanr

    ref = scores["ours-f32"]
    drift_rows = []
    for name, s in scores.items():
        if name != "ours-f32":
            label = ROW_NAMES.get(name, name.replace("-", " "))
            drift_rows.append([label, float(np.abs(s - ref).max()), float(spearmanr(s, ref).statistic)])
    print_table("Score drift against ours f32 (same pairs)", ["path", "max |Δscore|", "Spearman"], drift_rows)

    budget = args.token_budget or TOKEN_BUDGET["cpu"]
    ours_waste, fixed_waste = padding_waste(tokenizer, mixed_pairs(512, queries=8), budget)
    print_table(
        "Padding waste, 512 mixed pairs: (padded − real) ÷ real tokens",
        ["batching", "waste"],
        [
            [f"ours: sorted by length, ≤ {budget} tokens per batch", f"{ours_waste:.1%}"],
            [f"fixed batches of {FIXED_BATCH} in input order (official recipe, EmbedAnything)", f"{fixed_waste:.1%}"],
        ],
    )
    prefix_sharing_table(args.threads, ["f32", "int8"])


def docs_of_tokens(tokenizer, target: int, n: int, seed: int) -> list[str]:
    """n documents of `target` content tokens each (± a word), drawn from the benchmark's vocabulary of words."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        words: list[str] = []
        while len(tokenizer.encode_text(" ".join(words))) < target:
            words.append(rng.choice(WORDS))
        docs.append(" ".join(words))
    return docs


def prefix_sharing_table(threads: int, dtypes: list[str], rounds: int = 2, only: str | None = None) -> None:
    """Pairs/s with prefix sharing off and on, f32 and int8, on the workloads rerankers see (one process); `only`:
    the workloads whose name holds one of these comma-separated words."""
    from rerank_core.backends.onnx import OnnxScorer
    from rerank_core.backends.onnx import scorer as scorer_module
    from rerank_core.families.qwen3.template import format_query

    scorers = {
        (d, share): OnnxScorer.open(BENCH_MODEL_DIR, dtype=d, intra_op_threads=threads, share_prefix=share)
        for d in dtypes
        for share in (False, True)
    }
    tok = scorers[(dtypes[0], True)].tokenizer
    query = "what are the health benefits of drinking green tea every day for adults?"
    queries = [
        query,
        "how do vector databases index dense embeddings?",
        "best pasta recipe with garden tomatoes",
        "history of the eiffel tower in paris france",
        "which python library reads parquet files fast?",
        "climate change effects on european energy prices",
    ]
    workloads = {
        "1 query × 32 docs of ~30 tokens": [[(query, d) for d in docs_of_tokens(tok, 30, 32, 1)]],
        "1 query × 16 docs of ~120 tokens": [[(query, d) for d in docs_of_tokens(tok, 120, 16, 2)]],
        "1 query × 8 docs of ~500 tokens": [[(query, d) for d in docs_of_tokens(tok, 500, 8, 3)]],
        "6 queries × 8 docs (30–500 tokens) in one call": [
            [
                (q, d)
                for i, q in enumerate(queries)
                for d in docs_of_tokens(tok, [30, 60, 120, 250, 500][i % 5], 8, 4 + i)
            ]
        ],
        "single pairs (~120 tokens), one per call": [[(query, d)] for d in docs_of_tokens(tok, 120, 6, 9)],
        "1 long query (~400 tokens) × 16 docs of ~30 tokens": [
            [(docs_of_tokens(tok, 400, 1, 10)[0], d) for d in docs_of_tokens(tok, 30, 16, 11)]
        ],
    }
    if only:
        workloads = {name: calls for name, calls in workloads.items() if any(w in name for w in only.split(","))}
    best: dict = {}
    scores: dict = {}
    for scorer in scorers.values():
        scorer.score([(query, "warm up")])
    for _ in range(rounds):
        for name, calls in workloads.items():
            for key, scorer in scorers.items():
                start = time.perf_counter()
                out = np.concatenate([scorer.score(call) for call in calls])
                seconds = time.perf_counter() - start
                best[name, key] = min(best.get((name, key), np.inf), seconds)
                scores[name, key] = out
    rows = []
    for name, calls in workloads.items():
        n = sum(len(c) for c in calls)
        for d in dtypes:
            off, on = best[name, (d, False)], best[name, (d, True)]
            delta = float(np.abs(scores[name, (d, True)] - scores[name, (d, False)]).max())
            rows.append([name, d, n / off, n / on, off / on, f"{delta:.1e}"])
    print_table(
        f"Prefix sharing — 0.6B shape, {threads} threads, best of {rounds} interleaved rounds, a prefix spans at most "
        f"{scorer_module.PREFIX_BUDGETS} token budgets "
        f"(system prompt {len(tok.prefix_ids)} tokens, query + instruction ≈ "
        f"{len(tok.encode_text(format_query(query)))} tokens)",
        ["workload", "dtype", "pairs/s off", "pairs/s on", "on ÷ off", "max |Δscore| on vs off"],
        rows,
    )


if __name__ == "__main__":
    main()
