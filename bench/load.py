"""Load benchmark: find the saturating concurrency, then run at 2× for a bounded time; count every request.

Shows that overload is answered quickly (503) and nothing is lost or hangs, and reports the replicas' peak RSS.
Run: python bench/load.py [--seconds 20] [--model builtin:tiny-qwen3-reranker]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import mixed_pairs, print_table

TIMEOUT_S = 30.0


def run(url: str, concurrency: int, seconds: float, requests: list[dict]) -> dict:
    """Closed loop for `seconds`; every request ends as ok, rejected (429/503), failed (other), or hung (timeout)."""
    counts = {"sent": 0, "ok": 0, "rejected": 0, "failed": 0, "hung": 0}
    reject_latency: list[float] = []
    ok_latency: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        """One closed-loop client."""
        i = k
        with httpx.Client(timeout=TIMEOUT_S) as http:
            while time.monotonic() < deadline:
                body = requests[i % len(requests)]
                i += concurrency
                start = time.monotonic()
                try:
                    status = http.post(f"{url}/v1/rerank", json=body).status_code
                except httpx.TimeoutException:
                    status = "hung"
                except httpx.TransportError:
                    status = "failed"
                took = time.monotonic() - start
                with lock:
                    counts["sent"] += 1
                    if status == 200:
                        counts["ok"] += 1
                        ok_latency.append(took)
                    elif status in (429, 503):
                        counts["rejected"] += 1
                        reject_latency.append(took)
                    elif status == "hung":
                        counts["hung"] += 1
                    else:
                        counts["failed"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    counts["ok_per_s"] = counts["ok"] / elapsed
    counts["p99_ok_ms"] = 1000 * sorted(ok_latency)[int(0.99 * (len(ok_latency) - 1))] if ok_latency else float("nan")
    counts["max_reject_ms"] = 1000 * max(reject_latency) if reject_latency else float("nan")
    return counts


def replica_peak_rss_gib(app: str) -> float:
    """Largest VmHWM among this machine's Serve replica processes of `app` (Linux /proc)."""
    peak = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if f"ServeReplica:{app}" not in (proc / "cmdline").read_text():
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 2**20)
        except OSError:
            continue
    return peak


def main() -> None:
    """Deploy, sweep concurrency, then overload at 2× saturation and print the totals."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="builtin:tiny-qwen3-reranker")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=8798)
    args = parser.parse_args()

    import ray
    from ray import serve

    from serve.app import build_app
    from serve.launcher import wait_healthy

    pairs = mixed_pairs(400, min_words=10, max_words=120)
    requests = [{"query": pairs[i][0], "documents": [d for _, d in pairs[i : i + 8]]} for i in range(0, 400, 8)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        options = {
            "num_replicas": 1,
            "max_ongoing_requests": 8,
            "max_queued_requests": 2,
            "ray_actor_options": {"num_cpus": 1},
            "user_config": {"max_batch_size": 8, "batch_wait_timeout_s": 0.005},
        }
        app_args = {"model": {"model": args.model, "device": "cpu", "intra_op_threads": 2}}
        serve.run(build_app(app_args, options), name="load", route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{args.port}"
        wait_healthy(url)
        sweep = []
        for c in (1, 2, 4, 8, 16):
            r = run(url, c, args.seconds / 4, requests)
            sweep.append([c, r["ok_per_s"], r["p99_ok_ms"], r["rejected"]])
        best = max(r[1] for r in sweep)
        saturating = next(c for c, rate, _, _ in sweep if rate >= 0.9 * best)
        print_table("Sweep (short runs)", ["concurrency", "ok req/s", "p99 ok ms", "rejected"], sweep)
        overload = 2 * saturating
        r = run(url, overload, args.seconds, requests)
        print_table(
            f"Overload: {overload} clients (2× the saturating {saturating}) for {args.seconds:.0f} s; "
            "max_ongoing_requests=8, max_queued_requests=2, client timeout 30 s",
            [
                "sent",
                "ok",
                "rejected (503/429)",
                "failed",
                "hung",
                "ok req/s",
                "p99 ok ms",
                "slowest rejection ms",
                "replica peak RSS GiB",
            ],
            [
                [
                    r["sent"],
                    r["ok"],
                    r["rejected"],
                    r["failed"],
                    r["hung"],
                    r["ok_per_s"],
                    r["p99_ok_ms"],
                    r["max_reject_ms"],
                    replica_peak_rss_gib("load"),
                ]
            ],
        )
        assert r["sent"] == r["ok"] + r["rejected"] + r["failed"] + r["hung"]
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
