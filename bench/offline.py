"""Offline benchmark: rows/s of the Ray Data job vs `score_pairs` on the same rows in one process, same cores.

Both sides include loading the model; the job also includes Ray Data's planning, reading, actor start-up and
writing. Run: python bench/offline.py [--model DIR] [--dtype int8] [--rows 384]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, mixed_pairs, print_table  # noqa: E402


def main() -> None:
    """Time in-process scoring and the Ray Data job on the same rows; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="export folder (default: the cached 0.6B-shape random model)")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--rows", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model = args.model or bench_model()
    pairs = mixed_pairs(args.rows, min_words=10, max_words=40)

    from rerank_core import Reranker

    start = time.monotonic()
    Reranker.from_pretrained(model, dtype=args.dtype, intra_op_threads=args.threads).score_pairs(pairs)
    bare_s = time.monotonic() - start

    from pipelines.offline import run_job
    from rerank_core.config import OfflineConfig

    with tempfile.TemporaryDirectory() as tmp:
        table = pa.table({"id": list(range(len(pairs))), "query": [q for q, _ in pairs], "document": [d for _, d in pairs]})
        pq.write_table(table, f"{tmp}/in.parquet")
        cfg = OfflineConfig.from_dict({
            "model": {"model": str(model), "dtype": args.dtype, "device": "cpu", "intra_op_threads": args.threads},
            "input": f"{tmp}/in.parquet", "output": f"{tmp}/out",
            "compute": {"concurrency": 1, "num_cpus": 1, "batch_size": 128, "blocks_per_actor": 2},
        })
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            summary = run_job(cfg)
        finally:
            ray.shutdown()
    bare = len(pairs) / bare_s
    print_table(
        f"Offline job vs in-process score_pairs — {model.name} {args.dtype}, {len(pairs)} rows, {args.threads} threads, "
        "model load included on both sides",
        ["path", "seconds", "rows/s", "÷ in-process"],
        [["in-process score_pairs", bare_s, bare, 1.0],
         ["Ray Data job (1 actor)", summary.seconds, summary.rows_per_s, summary.rows_per_s / bare]],
    )


if __name__ == "__main__":
    main()
