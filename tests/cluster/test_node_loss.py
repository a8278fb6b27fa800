"""A worker node lost without grace under a running offline job, on a real two-node Ray cluster on this machine:
the job still writes every input row exactly once, streaming and resumable alike (the cluster tests' head, a worker
node of its own for each)."""

import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO
from tests.processes import ray_actors

pytestmark = pytest.mark.slow
ROWS = 3_000


def _input(path) -> list[str]:
    ids = [f"r{i}" for i in range(ROWS)]
    docs = [f"document number {i} about " + "cats and dogs " * (1 + i % 6) for i in range(ROWS)]
    # ~2.5 MiB carried through, so a streaming job writes several 1 MiB files (max_block_mib), not one at its end
    payload = [os.urandom(800) for _ in range(ROWS)]
    table = pa.table(
        {"id": ids, "query": [f"query {i % 5}" for i in range(ROWS)], "document": docs, "payload": payload}
    )
    pq.write_table(table, path, row_group_size=500)
    return ids


def _job(tmp_path, name: str, resume: bool) -> tuple[list[str], object]:
    """The job's command line (through the CLI, joining the cluster by RAY_ADDRESS) and its output folder."""
    config = {
        "model": {"model": "builtin:tiny-qwen3-reranker", "device": "cpu", "intra_op_threads": 1},
        "input": str(tmp_path / "in.parquet"),
        "output": str(tmp_path / name),
        # Two actors of two CPUs on nodes of three: one per node (checked before the kill), each node keeping a CPU
        # for reads and writes, so the job can go on after a node is lost. The lost actor's restart cannot fit in
        # the survivor's spare CPU: where it can, it takes it, reads and writes starve and the job stalls (Ray Data
        # needs a free CPU for them, ray-project/ray#44687; see docs/offline.md).
        "compute": {"concurrency": 2, "num_cpus": 2, "batch_size": 64, "max_block_mib": 1, "rows_per_part": 500},
        "resume": resume,
    }
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "rerank_core.cli", "offline", "--config", str(tmp_path / f"{name}.yaml")], (
        tmp_path / name
    )


def _scoring_actors(node) -> list[int]:
    """The job's scoring actors running on `node` (the `ray start` process of one node): Ray titles them
    `ray::MapWorker(MapBatches(BatchScorer))` (`PartScorer` when resumable)."""
    return ray_actors("MapWorker", under=node.pid)


def _written(out) -> int:
    return len([p for p in out.rglob("*.parquet") if not p.name.startswith(".")]) if out.exists() else 0


@pytest.mark.parametrize("resume", [False, True], ids=["streaming", "resume"])
def test_a_worker_node_lost_mid_job_loses_no_row_and_duplicates_none(tmp_path, cluster, resume):
    ids = _input(tmp_path / "in.parquet")
    if len(cluster.live_nodes()) < 2:
        cluster.add_worker(3)
    nodes = cluster.live_nodes()  # the head and one worker
    command, out = _job(tmp_path, "out", resume)
    log = open(tmp_path / "job.log", "w")  # noqa: SIM115
    job = subprocess.Popen(command, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    started = time.monotonic()
    try:
        while _written(out) < 1 and job.poll() is None and time.monotonic() - started < 240:
            time.sleep(0.1)
        assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
        actors = [len(_scoring_actors(node)) for node in nodes]
        while not all(actors) and job.poll() is None and time.monotonic() - started < 240:  # the 2nd may still start
            time.sleep(0.1)
            actors = [len(_scoring_actors(node)) for node in nodes]
        assert all(actors), f"scoring actors per node (head, worker): {actors}"  # the kill takes one of them
        assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
        killed_at = time.monotonic()
        cluster.kill(nodes[1])  # the worker node: its raylet and its actor, no grace
        code = job.wait(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
        log.close()
    text = (tmp_path / "job.log").read_text()
    if code != 0 and resume:  # resumable jobs may stop; the same command again finishes the rest
        code = subprocess.run(command, env=cluster.env, cwd=REPO, capture_output=True, text=True).returncode
    assert code == 0, text[-3000:]
    print(
        f"{'resume' if resume else 'streaming'}: {ROWS} rows, scoring actors per node {actors}, "
        f"the job ended {time.monotonic() - killed_at:.1f} s "
        f"after the kill, {time.monotonic() - started:.1f} s in all"
    )
    got = pq.read_table(out, columns=["id", "score", "error"])
    assert got.num_rows == ROWS
    assert sorted(got.column("id").to_pylist()) == sorted(ids)  # every row once: none missing, none twice
    assert got.column("error").null_count == ROWS
