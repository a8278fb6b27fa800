"""Offline benchmarks of the Ray Data job.

1. Speed: rows/s of the job vs `score_pairs` on the same rows in one process, same cores. Both sides include
   loading the model; the job also includes Ray Data's planning, reading, actor start-up and writing.
2. Scale: inputs several times larger than a small object store, through the job's streaming plan and through the
   all-to-all `repartition(num_blocks)` it used to have, side by side: rows/s, and bytes spilled to disk and
   restored. A streaming job's spill must not grow with its input. (Tiny model: the data volume is the point.)

Run: python bench/offline.py [--model DIR] [--dtype int8] [--rows 384] [--scale-mib 300,600 --store-mib 150]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, mixed_pairs, print_table

PAYLOAD_BYTES = 4096  # an incompressible column carried through, as real datasets carry theirs


def write_large_input(folder: Path, mib: int) -> int:
    """`mib` MiB of Parquet: short (query, document) pairs plus a payload column; returns the row count."""
    rows = mib * 2**20 // PAYLOAD_BYTES
    rng = np.random.default_rng(0)
    for start in range(0, rows, 20_000):
        n = min(20_000, rows - start)
        payload = pa.array([rng.bytes(PAYLOAD_BYTES) for _ in range(n)], pa.binary())
        table = pa.table(
            {
                "id": np.arange(start, start + n),
                "query": ["what is machine learning?"] * n,
                "document": [f"document {i} about data" for i in range(start, start + n)],
                "payload": payload,
            }
        )
        pq.write_table(table, folder / f"part-{start:09d}.parquet", compression="none")
    return rows


def _object_store_traffic() -> tuple[float, float]:
    """MiB spilled to disk and restored so far in this Ray instance."""
    from ray._private.internal_api import memory_summary

    text = memory_summary(stats_only=True)
    spilled = re.search(r"Spilled (\d+) MiB", text)
    restored = re.search(r"Restored (\d+) MiB", text)
    return float(spilled.group(1)) if spilled else 0.0, float(restored.group(1)) if restored else 0.0


def scale_run(input_dir: Path, output: Path, store_mib: int, all_to_all: bool) -> list:
    """One job over `input_dir` in a fresh Ray with a `store_mib` object store: [rows, s, rows/s, spilled, restored]."""
    import ray

    from pipelines.config import OfflineConfig
    from pipelines.offline import actor_setup, streaming_plan
    from rerank_core.tiny_model import TINY_MODEL

    cfg = OfflineConfig.from_dict(
        {
            "model": {"model": TINY_MODEL, "device": "cpu"},
            "input": str(input_dir),
            "output": str(output),
            "mode": "overwrite",
            "compute": {"concurrency": 1, "num_cpus": 1, "batch_size": 512},
        }
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=store_mib * 2**20)
    try:
        started = time.monotonic()
        setup = actor_setup(cfg)
        plan = streaming_plan(cfg, setup)
        if all_to_all:  # the plan the job had before: an all-to-all re-block in front of the actors
            from pipelines.scoring import BatchScorer

            ray.data.read_parquet(cfg.input).repartition(4).map_batches(  # Ray Data's default 128 MiB blocks
                BatchScorer,
                fn_constructor_kwargs=setup.scorer_kwargs,
                batch_format="pyarrow",
                batch_size=cfg.compute.batch_size,
                **setup.options,
            ).write_parquet(str(output))
        else:
            plan.write(str(output))  # as the job writes
        seconds = time.monotonic() - started
        spilled, restored = _object_store_traffic()
    finally:
        ray.shutdown()
    assert pq.ParquetDataset(output).read(columns=["id"]).num_rows == plan.rows
    return [plan.rows, seconds, plan.rows / seconds, spilled, restored]


def scale_table(sizes: list[int], store_mib: int) -> None:
    """Both plans at each input size; print the table."""
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for mib in sizes:
            folder = Path(tmp) / f"in-{mib}"
            folder.mkdir()
            write_large_input(folder, mib)
            for all_to_all in (True, False):
                plan = (
                    "before: repartition(num_blocks), all-to-all" if all_to_all else "ours: streaming, blocks ≤ 16 MiB"
                )
                row = scale_run(folder, Path(tmp) / f"out-{mib}-{all_to_all}", store_mib, all_to_all)
                table.append([f"{mib} MiB", plan, *row])
                print(f"  {mib} MiB, {plan}: {row}", flush=True)
    print_table(
        f"Offline job on inputs larger than the object store ({store_mib} MiB), tiny model, 1 actor, 2 CPUs",
        ["input", "plan", "rows", "seconds", "rows/s", "spilled MiB", "restored MiB"],
        table,
    )


def main() -> None:
    """Time in-process scoring and the Ray Data job on the same rows, then the scale runs; print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="export folder (default: the cached 0.6B-shape random model)")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--rows", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale-mib", default="300,600", help="input sizes of the scale runs ('' to skip them)")
    parser.add_argument("--store-mib", type=int, default=150, help="object store of the scale runs")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if args.scale_mib:
        scale_table([int(x) for x in args.scale_mib.split(",")], args.store_mib)
    if args.skip_speed:
        return
    model = args.model or bench_model()
    pairs = mixed_pairs(args.rows, min_words=10, max_words=40)

    from rerank_core import Reranker

    start = time.monotonic()
    Reranker.from_pretrained(model, dtype=args.dtype, intra_op_threads=args.threads).score_pairs(pairs)
    bare_s = time.monotonic() - start

    from pipelines.config import OfflineConfig
    from pipelines.offline import run_job

    with tempfile.TemporaryDirectory() as tmp:
        table = pa.table(
            {"id": list(range(len(pairs))), "query": [q for q, _ in pairs], "document": [d for _, d in pairs]}
        )
        pq.write_table(table, f"{tmp}/in.parquet")
        cfg = OfflineConfig.from_dict(
            {
                "model": {"model": str(model), "dtype": args.dtype, "device": "cpu", "intra_op_threads": args.threads},
                "input": f"{tmp}/in.parquet",
                "output": f"{tmp}/out",
                "compute": {"concurrency": 1, "num_cpus": 1, "batch_size": 128, "blocks_per_actor": 2},
            }
        )
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            summary = run_job(cfg)
        finally:
            ray.shutdown()
    bare = len(pairs) / bare_s
    print_table(
        f"Offline job vs in-process score_pairs — {model.name} {args.dtype}, {len(pairs)} rows, "
        f"{args.threads} threads, model load included on both sides",
        ["path", "seconds", "rows/s", "÷ in-process"],
        [
            ["in-process score_pairs", bare_s, bare, 1.0],
            ["Ray Data job (1 actor)", summary.seconds, summary.rows_per_s, summary.rows_per_s / bare],
        ],
    )


if __name__ == "__main__":
    main()
