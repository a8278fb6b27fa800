"""Worker nodes removed under load, on a real three-node Ray cluster on this machine — one drained as Kubernetes removes
a pod, one lost without grace — with Reranker replicas on every node behind the head's proxy and gateway: every
request is answered (none hangs, no connection is dropped), requests whose replica died are answered by a live one,
and replacement replicas serve again."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.processes import ray_actors

pytestmark = pytest.mark.slow
REPLICAS = 3
CLIENTS = 4
PAUSE_S = 0.2  # each client's pause between requests: requests always in flight, the CPU not saturated by them
ANSWER_BOUND_S = 30  # every request's answer comes within this
# Requests in flight on the lost node's replicas are asked again of a live one (by Serve's router, or by the gateway
# when the replica died after taking the request: "asked again" counts those, from the gateway's log).
BODY = {
    "query": "what is machine learning",
    "documents": [f"document {i} on " + "learning and data " * 50 for i in range(120)],
}
# Polls Serve's own view of the deployment from a driver joined to the cluster: "replicas <time> <running>".
WATCH = """
import sys, time, ray
from ray import serve
ray.init(log_to_driver=False)
while True:
    app = serve.status().applications.get("rerank")
    reranker = app.deployments.get("Reranker") if app else None
    running = reranker.replica_states.get("RUNNING", 0) if reranker else 0
    print(f"replicas {time.time():.2f} {running}", flush=True)
    time.sleep(0.25)
"""


def _serve_config(path, port: int) -> None:
    config = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "rerank",
                "route_prefix": "/",
                "import_path": "serve.app:build_app",
                "args": {"model": {"model": "builtin:tiny-qwen3-reranker", "device": "cpu", "intra_op_threads": 1}},
                "deployments": [
                    {
                        "name": "Reranker",
                        "num_replicas": REPLICAS,
                        "ray_actor_options": {"num_cpus": 0.5},  # the head alone can hold all of them
                        "health_check_period_s": 1,
                        "graceful_shutdown_timeout_s": 1,
                    }
                ],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))


def _replica_pids(node) -> list[int]:
    """The Reranker replicas running on `node` (the `ray start` process of one node)."""
    return ray_actors("ServeReplica:rerank:Reranker", under=node.pid)


def test_worker_nodes_drained_or_lost_under_load_drop_no_request(tmp_path, cluster):
    """Under load, one worker node is drained (removed as Kubernetes removes a pod), then the other is lost."""
    drained, lost = cluster.add_worker(2), cluster.add_worker(2)
    nodes = cluster.live_nodes()  # the head and these two
    port = cluster.reserve_port()  # not in a node's worker-port range, where a Ray worker might take it
    _serve_config(tmp_path / "serve.yaml", port)
    url = f"http://127.0.0.1:{port}"
    server_log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    command = [sys.executable, "-m", "rerank_core.cli", "serve", "--config", str(tmp_path / "serve.yaml")]
    server = subprocess.Popen(command, env=cluster.env, stdout=server_log, stderr=subprocess.STDOUT, cwd=REPO)
    watcher = None
    try:
        deadline = time.monotonic() + 240
        while sum(len(_replica_pids(node)) for node in nodes) < REPLICAS or not _answers(url):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        on_drained = _replica_pids(drained)
        assert on_drained, "Serve placed no replica on the first worker node"  # its default strategy spreads them
        watcher = subprocess.Popen(
            [sys.executable, "-c", WATCH], env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        while not watcher.stdout.readline().startswith(b"replicas "):  # it sees the deployment: no dip is missed
            pass
        outcomes, stop, clients = _load(url)
        time.sleep(3)
        drained_at = time.time()
        drain_s = cluster.drain(drained)  # SIGTERM to its `ray start` alone: Serve moves its replicas first
        drained_back_at = _capacity_back(watcher, drained_at, timeout_s=120)
        time.sleep(2)  # the replacements answer under load
        on_lost = _replica_pids(lost)
        assert on_lost, "no replica on the second worker node to lose"
        killed_at = time.time()
        cluster.kill(lost)  # its raylet and the replicas on it, no grace
        back_at = _capacity_back(watcher, killed_at, timeout_s=120)
        time.sleep(2)
        stop.set()
        for thread in clients:
            thread.join(timeout=ANSWER_BOUND_S + 5)
        retried = sum(
            log.read_text(errors="replace").count("a replica was lost while scoring")
            for log in Path(cluster.temp_dir).glob("session_*/logs/serve/replica_rerank_Gateway_*.log")
        )
    finally:
        if watcher is not None:
            watcher.kill()
        server.terminate()
        server.wait(timeout=60)
        server_log.close()
    statuses = [status for status, _, _ in outcomes]
    while_drained = [status for status, _, sent in outcomes if drained_at <= sent < killed_at]
    after_kill = [o for o in outcomes if o[2] >= killed_at]
    counts = {s: statuses.count(s) for s in set(statuses)}
    print(
        f"\nreplicas {REPLICAS}; drained node: {len(on_drained)} replicas, exited {drain_s:.1f} s after SIGTERM, "
        f"{REPLICAS} running again {drained_back_at - drained_at:.1f} s after it, {len(while_drained)} requests "
        f"sent from the drain to the kill; lost node: {len(on_lost)} replicas, {REPLICAS} running again "
        f"{back_at - killed_at:.1f} s after the kill, {len(after_kill)} requests sent after it; {len(outcomes)} "
        f"requests in all: {counts}, {retried} asked again of a live replica; slowest answer "
        f"{max(t for _, t, _ in outcomes):.2f} s"
    )
    assert all(isinstance(s, int) for s in statuses), counts  # an HTTP answer every time: no drop, no hang
    assert all(took < ANSWER_BOUND_S for _, took, _ in outcomes)
    assert set(while_drained) == {200}, counts  # a drained node's replicas leave only once nobody needs them
    assert set(statuses) <= {200, 503}, counts  # 503 (Retry-After) only if every retry met a lost replica
    assert statuses.count(200) >= 0.99 * len(statuses), counts
    assert sum(1 for s, _, _ in after_kill if s == 200) > 0


def _answers(url: str) -> bool:
    try:
        return httpx.post(f"{url}/v1/rerank", json=BODY, timeout=10).status_code == 200
    except httpx.TransportError:
        return False


def _load(url: str) -> tuple[list, threading.Event, list[threading.Thread]]:
    """CLIENTS threads posting BODY, each pausing PAUSE_S between requests, until the event is set; outcomes: (status
    or error name, seconds, sent at)."""
    outcomes, stop = [], threading.Event()

    def client():
        with httpx.Client(timeout=ANSWER_BOUND_S) as http:
            while not stop.is_set():
                sent, start = time.time(), time.monotonic()
                try:
                    reply = http.post(f"{url}/v1/rerank", json=BODY)
                    status = reply.status_code
                    if status == 503:
                        assert reply.headers.get("retry-after") and "message" in reply.json()
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                outcomes.append((status, time.monotonic() - start, sent))
                stop.wait(PAUSE_S)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return outcomes, stop, threads


def _capacity_back(watcher: subprocess.Popen, killed_at: float, timeout_s: float) -> float:
    """When Serve next reports all REPLICAS running after fewer were, as seen by the watcher."""
    seen_fewer = False
    deadline = time.time() + timeout_s
    for line in watcher.stdout:
        if not line.startswith(b"replicas "):  # Ray's own messages
            continue
        at, running = float(line.split()[1]), int(line.split()[2])
        if at < killed_at:
            continue
        seen_fewer = seen_fewer or running < REPLICAS
        if seen_fewer and running == REPLICAS:
            return at
        assert time.time() < deadline, f"only {running} of {REPLICAS} replicas running {timeout_s} s after the kill"
    raise AssertionError("the watcher stopped")
