"""Serve benchmark: closed-loop HTTP load on loopback vs the bare scorer on the same pairs, with batching on and off.

Run: python bench/serve.py [--model DIR] [--dtype int8] [--requests 32] [--concurrency 1,8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_model, mixed_pairs, print_table


def closed_loop(url: str, requests: list[dict | tuple[str, dict, int]], concurrency: int) -> dict:
    """`concurrency` clients each send the next request as soon as the last answered, until all are sent. A request
    is a Cohere body for /v1/rerank, or (route, body, documents) in any dialect."""
    latencies, pairs_done, errors = [], [0], [0]
    lock = threading.Lock()
    queue = list(reversed(requests))

    def client() -> None:
        """One closed-loop client pulling from the shared queue."""
        with httpx.Client(timeout=600) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    item = queue.pop()
                route, body, n = item if isinstance(item, tuple) else ("/v1/rerank", item, len(item["documents"]))
                start = time.monotonic()
                reply = http.post(url + route, json=body)
                took = time.monotonic() - start
                with lock:
                    if reply.status_code == 200:
                        latencies.append(took)
                        pairs_done[0] += n
                    else:
                        errors[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    lat = sorted(latencies)
    return {
        "pairs_s": pairs_done[0] / elapsed,
        "pairs": pairs_done[0],
        "seconds": elapsed,
        "p50": statistics.median(lat) if lat else float("nan"),
        "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
        "requests": len(lat),
        "errors": errors[0],
        "latencies": lat,
    }


def bare_scorer(model: Path, dtype: str, requests: list[dict], threads: int) -> float:
    """Pairs/s of OnnxScorer called in-process on the same requests, one call per request."""
    from rerank_core.backends.onnx import OnnxScorer

    scorer = OnnxScorer.open(model, dtype=dtype, intra_op_threads=threads)
    scorer.score([("warm", "up")])
    start = time.monotonic()
    for body in requests:
        scorer.score([(body["query"], d) for d in body["documents"]])
    return sum(len(b["documents"]) for b in requests) / (time.monotonic() - start)


def deploy(
    model: Path | str,
    dtype: str,
    batch: int,
    wait: float,
    threads: int,
    port: int,
    token_budget: int | None = None,
    max_tokens: int | None = None,
    app_args: dict | None = None,
) -> str:
    """Deploy the benchmark app on local Serve with the given batching (and `app_args` over its args); return its
    URL once healthy."""
    from ray import serve

    from serve.app import build_app
    from serve.launcher import wait_healthy

    args = {
        "model": {
            "model": str(model),
            "dtype": dtype,
            "device": "cpu",
            "intra_op_threads": threads,
            "token_budget": token_budget,
        },
        "max_documents": 1000,
        "max_tokens_per_request": max_tokens,
        **(app_args or {}),
    }
    options = {
        "num_replicas": 1,
        "max_ongoing_requests": 64,
        "max_queued_requests": 512,
        "ray_actor_options": {"num_cpus": 1},
        "user_config": {"max_batch_size": batch, "batch_wait_timeout_s": wait},
    }
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(args, options), name="bench", route_prefix="/", blocking=False)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    return url


def main() -> None:
    """Bare scorer, then Serve with batching on and off, on the same requests; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="export folder (default: the cached 0.6B-shape random model)")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--requests", type=int, default=32, help="requests per row")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--docs-per-request", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    model = args.model or bench_model()
    n = args.docs_per_request
    pairs = mixed_pairs(args.requests * n, min_words=10, max_words=60)
    requests = [{"query": pairs[i][0], "documents": [d for _, d in pairs[i : i + n]]} for i in range(0, len(pairs), n)]

    import ray
    from ray import serve

    bare_before = bare_scorer(model, args.dtype, requests, args.threads)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        for label, batch, wait in (("batching on", 32, 0.01), ("batching off", 1, 0.0)):
            url = deploy(model, args.dtype, batch, wait, args.threads, args.port)
            levels = [int(c) for c in args.concurrency.split(",")]
            closed_loop(url, requests[:2], 1)  # warm-up
            for c in levels if batch > 1 else levels[-1:]:
                r = closed_loop(url, requests, c)
                rows.append(
                    [label, c, r["pairs_s"], None, r["p50"] * 1000, r["p99"] * 1000, r["requests"], r["errors"]]
                )
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    # Measured before and after the Serve rows; the faster of the two is the reference (the harder ratio).
    bare = max(bare_before, bare_scorer(model, args.dtype, requests, args.threads))
    for row in rows:
        row[3] = row[2] / bare
    print_table(
        f"Serve vs bare scorer — {model.name} {args.dtype}, {args.requests} requests × {n} docs per row, "
        f"{args.threads} ORT threads; bare scorer: {bare:.2f} pairs/s",
        ["mode", "concurrency", "pairs/s", "÷ bare scorer", "p50 ms", "p99 ms", "requests", "errors"],
        rows,
    )


if __name__ == "__main__":
    main()
