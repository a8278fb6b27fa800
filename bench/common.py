"""Shared helpers of the benchmarks: the benchmark model, realistic pairs, and table printing."""

from __future__ import annotations

import os
import random
from pathlib import Path

BENCH_MODEL_DIR = Path(os.environ.get("RERANK_BENCH_DIR", Path.home() / ".cache/qwen-rerank/bench")) / "qwen3-0.6b-shape"
_WORDS = (
    "retrieval ranking model query document passage relevant search index vector dense sparse token batch "
    "latency throughput cluster replica actor dataset parquet machine learning data science python coffee "
    "weather history paris france music sport recipe garden travel health finance energy climate"
).split()


def bench_model(dtypes: str = "f32,int8") -> Path:
    """The random model with Qwen3-Reranker-0.6B's exact shape; built once (≈2–3 min) and cached."""
    manifest = BENCH_MODEL_DIR / "rerank_manifest.json"
    if not manifest.exists() or any(f'"{d}"' not in manifest.read_text() for d in dtypes.split(",")):
        from rerank_core.testing import build_tiny_model

        print(f"building the 0.6B-shape random model into {BENCH_MODEL_DIR} (once) ...", flush=True)
        build_tiny_model(BENCH_MODEL_DIR, full_size=True, dtypes=dtypes.split(","), overwrite=True)
    return BENCH_MODEL_DIR


def mixed_pairs(n: int, *, queries: int = 8, min_words: int = 15, max_words: int = 350, seed: int = 0):
    """n (query, document) pairs over several queries with documents of mixed length (≈20–500 tokens)."""
    rng = random.Random(seed)
    qs = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 10))) + "?" for _ in range(queries)]
    return [
        (qs[i % queries], " ".join(rng.choice(_WORDS) for _ in range(rng.randint(min_words, max_words))))
        for i in range(n)
    ]


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """Print a Markdown table (pastes straight into the README)."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{c:.3g}" if isinstance(c, float) else str(c) for c in row) + " |")
