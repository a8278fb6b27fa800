"""Generate the small sample datasets the demo and docs use (deterministic): python -m pipelines.sample_data DIR."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

QUERIES = [
    "What is machine learning?",
    "How to make coffee?",
    "What is Python programming?",
    "Where is the Eiffel Tower?",
    "How do rerankers improve search?",
]
DOCUMENTS = [
    "Machine learning is a subset of AI.",
    "ML algorithms can learn from data.",
    "Coffee is brewed from roasted beans.",
    "Coffee can be made with a French press.",
    "Python is a programming language.",
    "Python is great for beginners.",
    "The Eiffel Tower is in Paris, France.",
    "Paris is the capital of France.",
    "A reranker scores each query-document pair with a cross-encoder.",
    "The weather is sunny today.",
    "Pizza is a popular food.",
    "Le café est une boisson. 咖啡是一种饮料。",
]


def make_pairs(n: int = 300, seed: int = 0) -> pa.Table:
    """n (id, query, document) rows, a few of them deliberately bad (null/empty) to show error handling."""
    rng = random.Random(seed)
    ids, queries, docs = [], [], []
    for i in range(n):
        ids.append(f"row-{i:04d}")
        queries.append(rng.choice(QUERIES))
        doc = rng.choice(DOCUMENTS)
        docs.append(None if i % 97 == 13 else ("" if i % 89 == 7 else doc))
    return pa.table({"id": ids, "query": queries, "document": docs})


def make_grouped(seed: int = 0) -> pa.Table:
    """One row per query with a list column of candidates."""
    rng = random.Random(seed)
    return pa.table(
        {
            "id": [f"q-{i}" for i in range(len(QUERIES))],
            "query": QUERIES,
            "documents": [rng.sample(DOCUMENTS, 6) for _ in QUERIES],
        }
    )


def main(out: str) -> None:
    """Write sample_pairs.parquet and sample_grouped.parquet into `out`."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(make_pairs(), folder / "sample_pairs.parquet")
    pq.write_table(make_grouped(), folder / "sample_grouped.parquet")
    print(f"wrote {folder}/sample_pairs.parquet and sample_grouped.parquet")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "configs/demo/data")
