"""`rerank offline` on one GPU (issue #39 item 3): the command users run, with two model actors sharing the GPU
(`num_gpus: 0.5`), on a generated Parquet set of mixed lengths (200,000 pairs by default), against the scorer's own
rate on the same GPU and pairs (one process, the whole GPU). Prints rows/s of both and their ratio (goal ≥ 90%),
the GPU's busy share, GPU memory per actor (nvidia-smi, per process) and the host CPUs the job kept busy — so the
CPUs a GPU needs.

The config is configs/offline.yaml with the bench model (random weights, Qwen3-Reranker-0.6B's shape, f16 GPU
graphs), the generated input and a temporary output. `--smoke` runs it on the CPU with the tiny model, one actor and
200 rows, to check the script (measures nothing).

Run: python bench/gpu/offline.py [--rows 200000] [--scorer-rows 20000] [--actors 2] [--smoke]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from bench.common import BENCH_DIR, WORDS, cpu_description, print_table  # noqa: E402
from bench.gpu.scoring import bench_models, device_or_none  # noqa: E402
from bench.gpu.usage import Usage  # noqa: E402


def input_set(rows: int) -> Path:
    """A Parquet file of `rows` (id, query, document) pairs, 500 queries, documents of 7–330 words; made once."""
    path = BENCH_DIR / f"gpu-offline-{rows}.parquet"
    if not path.exists():
        rng = random.Random(0)
        queries = [f"what does document set {i} say about {rng.choice(WORDS)}?" for i in range(500)]
        table = pa.table(
            {
                "id": [f"row-{i}" for i in range(rows)],
                "query": [rng.choice(queries) for _ in range(rows)],
                "document": [" ".join(rng.choices(WORDS, k=rng.randint(7, 330))) for _ in range(rows)],
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=16_384)
    return path


def job_config(export: Path, source: Path, output: Path, device: str, actors: int) -> dict:
    """configs/offline.yaml for this run: the bench model, the generated input, `actors` actors sharing the GPU."""
    config = yaml.safe_load((REPO / "configs/offline.yaml").read_text())
    config["model"].update({"model": str(export), "device": device})
    config.update({"input": str(source), "output": str(output), "mode": "overwrite"})
    if device == "cuda":
        config["compute"].update({"concurrency": actors, "num_gpus": 1 / actors, "num_cpus": 2})
    else:  # smoke: CPU actors small enough for a 2-core machine
        config["model"].update({"token_budget": 1024, "max_rows_per_call": 32, "intra_op_threads": 1})
        config["compute"].update({"concurrency": actors, "num_gpus": 0, "num_cpus": 0.5, "batch_size": 128})
    return config


def run_job(config: dict, folder: Path) -> tuple[float, Usage, str]:
    """(seconds, what it used, its output's last lines) of `rerank offline --config` in its own local Ray."""
    path = folder / "offline.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "rerank_core.cli", "offline", "--config", str(path)]
    with Usage(gpu=config["model"]["device"] == "cuda", interval_s=0.5) as usage:
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"rerank offline failed:\n{proc.stderr[-4000:]}")
    return seconds, usage, "\n".join(proc.stdout.strip().splitlines()[:1])


def scorer_rate(export: Path, source: Path, rows: int, device: str) -> float:
    """Pairs/s of the scorer alone (this process, the whole device) on the input's first `rows` pairs."""
    from rerank_core import Reranker

    table = pq.read_table(source).slice(0, rows)
    pairs = list(zip(table["query"].to_pylist(), table["document"].to_pylist(), strict=True))
    options = {"intra_op_threads": 2} if device == "cpu" else {}
    reranker = Reranker.from_pretrained(str(export), device=device, dtype="f16", **options)
    reranker.score_pairs(pairs[:64])  # warm-up: kernels, allocator
    start = time.perf_counter()
    reranker.score_pairs(pairs)
    return len(pairs) / (time.perf_counter() - start)


def main() -> None:
    """Generate the input, run the job, time the scorer alone, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--scorer-rows", type=int, default=20_000, help="pairs the scorer alone is timed on")
    parser.add_argument("--actors", type=int, default=2, help="model actors sharing the GPU")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, 200 rows: check the script")
    args = parser.parse_args()
    found = device_or_none("bench/gpu/offline.py", args.smoke)
    if found is None:
        return
    device, which = found
    if args.smoke:
        args.rows, args.scorer_rows, args.actors = 200, 100, 1
    _, export, _ = bench_models(args.smoke)
    source = input_set(args.rows)
    with tempfile.TemporaryDirectory(prefix="gpu-offline-") as tmp:
        config = job_config(export, source, Path(tmp) / "out", device, args.actors)
        seconds, usage, summary = run_job(config, Path(tmp))
        written = pq.ParquetDataset(Path(tmp) / "out").read(columns=["id"]).num_rows
    alone = scorer_rate(export, source, min(args.scorer_rows, args.rows), device)
    job_rate = args.rows / seconds
    own = re.search(r" in ([0-9.]+)s ", summary)  # the job's summary: from its actors' start to its last write
    own_rate = args.rows / float(own.group(1)) if own else float("nan")
    actor_mib = sorted(usage.process_memory_mib.values(), reverse=True)[: args.actors]
    print(f"job: {summary}", flush=True)
    print_table(
        f"rerank offline, {args.actors} model actors on one GPU ({which}), {args.rows:,} pairs of 7–330-word documents"
        f"; host {cpu_description()}",
        ["what", "rows/s", "of the scorer alone", "GPU busy", "GPU MiB per actor", "host CPUs busy", "rows written"],
        [
            [
                "rerank offline, the whole command (Ray's start included)",
                job_rate,
                f"{100 * job_rate / alone:.0f}%",
                f"{100 * usage.gpu_busy_share:.0f}%",
                ", ".join(f"{m:.0f}" for m in actor_mib) or "-",
                f"{usage.host_cores_busy:.1f} of {os.cpu_count()}",
                written,
            ],
            [
                "rerank offline, its own summary (actors' start to last write)",
                own_rate,
                f"{100 * own_rate / alone:.0f}%",
            ]
            + ["-"] * 4,
            ["the scorer alone (one process, the whole device)", alone, "100%", "-", "-", "-", "-"],
        ],
    )


if __name__ == "__main__":
    main()
