"""The host path's ceiling, measured without a GPU: the real Serve app (proxy, gateway, model replica with its
scheduler and tokenization) under bounded loopback load, with the model call replaced by a STAND-IN that waits what
the GPU took per token and returns logits of 0. The stand-in lives only here (the app takes it from code; no config
can name it), and every table says so: its scores mean nothing, its rates say what the host sustains.

The wait: what our f16 GPU graph took on an H200, 5.3 ms a call and 3.9 µs per token of the padded batch (the two
explain its 65,536-token and 16,384-token rows in docs/gpu.md: 855 pairs/s of ~300-token pairs at the first), or
`--seconds-per-token 0 --seconds-per-call 0` (a model that takes no time: the host alone). Requests: bulk (200
documents of ~300 tokens, Qwen's real vocabulary) from closed-loop clients, and small ones (8–20 documents) alone and
beside the bulk load — different documents each time, so the score cache answers none of them. The model replica
runs the GPU graph's layout and GPU call sizes.

Run: python bench/host_path.py [--seconds-per-token 3.9e-6,0] [--seconds-per-call 5.3e-3,0] [--bulk-requests 24]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import WORDS, cpu_description, percentile, print_table
from bench.serve import closed_loop

GPU_SECONDS_PER_TOKEN = 3.9e-6  # H200, f16 GPU graph, per token of the padded batch (layouts.GPU_CALL_OVERHEAD_TOKENS)
GPU_SECONDS_PER_CALL = 5.3e-3
PORT = 8797


class StandInSession:
    """Stands in for the GPU graph's session: waits `seconds_per_call` + `seconds_per_token` × the padded batch's
    tokens, returns logits of 0. Inputs and outputs are the real graph's, so the layout, scheduler and tokenization
    run unchanged."""

    def __init__(self, real, seconds_per_token: float, seconds_per_call: float):
        self.real, self.seconds_per_token, self.seconds_per_call = real, seconds_per_token, seconds_per_call

    def get_inputs(self):
        """The real graph's inputs."""
        return self.real.get_inputs()

    def get_outputs(self):
        """The real graph's outputs."""
        return self.real.get_outputs()

    def get_providers(self) -> list[str]:
        """Says what it is wherever a provider is shown."""
        return ["STAND-IN (waits, scores nothing)"]

    def run(self, names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Wait the GPU's time for the call's padded batch; the logit of every row is 0."""
        time.sleep(self.seconds_per_call + feed["input_ids"].size * self.seconds_per_token)
        return [np.zeros(len(feed["input_ids"]), np.float32)]


def stand_in_replica(seconds_per_token: float, seconds_per_call: float):
    """The model deployment with its session replaced by the stand-in (defined here so Ray ships it by value)."""
    from ray import serve

    from serve.replica import Reranker

    class StandInReranker(Reranker.func_or_class):
        """A model replica whose model calls are a stand-in wait."""

        def __init__(self, args):
            super().__init__(args)
            self.scorer.replace_session(StandInSession(self.scorer.session, seconds_per_token, seconds_per_call))

    return serve.deployment(StandInReranker, name="Reranker")


def documents(n: int, words: int, rng: random.Random) -> list[str]:
    """`n` documents of `words` words each (≈1.3 Qwen tokens a word), each different."""
    return [f"{rng.randint(0, 10**9)} " + " ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(n)]


def deploy(model: Path, seconds_per_token: float, seconds_per_call: float, call_target_s: float, port: int) -> str:
    """The app with the stand-in replica, GPU layout and call sizes, on local Serve; its URL once healthy."""
    from ray import serve

    from serve.app import build_app
    from serve.launcher import wait_healthy

    args = {
        "model": {
            "model": str(model),
            "dtype": "f32",
            "device": "cpu",
            "graph_variant": "cuda",  # the GPU graph's layout (right padding, no K/V), run by the stand-in
            "token_budget": 65536,
            "max_rows_per_call": 256,
            "intra_op_threads": 1,
        },
        "max_documents": 1000,
        "max_tokens_per_request": 1_000_000,
        "batch": {"call_target_s": call_target_s},
    }
    options = {"num_replicas": 1, "max_ongoing_requests": 64, "max_queued_requests": 512}
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(
        build_app(args, options, replica=stand_in_replica(seconds_per_token, seconds_per_call)),
        name="host",
        route_prefix="/",
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, timeout_s=300)
    return url


def measure(url: str, args, rng: random.Random) -> list[list]:
    """Rows: bulk alone, small alone, small beside bulk."""
    query = "what do these documents say about the weather and the market?"

    def requests(count: int, sizes: tuple[int, int]) -> list[dict]:
        """`count` requests of new documents (no answer can come from the score cache)."""
        return [{"query": query, "documents": documents(rng.randint(*sizes), args.words, rng)} for _ in range(count)]

    bulk, small = (200, 200), (8, 20)
    closed_loop(url, requests(2, bulk), 2)  # warm-up: connections, first calls
    rows = []
    alone = closed_loop(url, requests(args.bulk_requests, bulk), args.clients)
    rows.append(["bulk (200 docs) alone", args.clients, alone])
    small_alone = closed_loop(url, requests(args.small_requests, small), 1)
    rows.append(["small (8–20 docs) alone", 1, small_alone])
    beside: dict = {}
    more_bulk = requests(args.bulk_requests, bulk)
    load = threading.Thread(target=lambda: beside.update(closed_loop(url, more_bulk, args.clients)))
    load.start()
    time.sleep(0.5)  # the bulk load is running
    small_beside = closed_loop(url, requests(args.small_requests, small), 1)
    load.join()
    rows.append(["bulk beside small", args.clients, beside])
    rows.append(["small beside bulk", 1, small_beside])
    return rows


def main() -> None:
    """Deploy per stand-in wait, load it, print one table."""
    import ray
    from ray import serve

    from bench.gpu.checks import parity_model
    from serve.config import BatchConfig

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds-per-token", default=f"{GPU_SECONDS_PER_TOKEN:.3g},0", help="one run each")
    parser.add_argument("--seconds-per-call", default=f"{GPU_SECONDS_PER_CALL:.3g},0", help="one per run")
    parser.add_argument("--bulk-requests", type=int, default=24, help="bulk requests per row (200 documents each)")
    parser.add_argument("--small-requests", type=int, default=60)
    parser.add_argument("--call-target-s", type=float, default=BatchConfig().call_target_s, help="the scheduler's")
    parser.add_argument("--clients", type=int, default=4, help="closed-loop bulk clients")
    parser.add_argument("--words", type=int, default=220, help="words per document (~300 tokens with the template)")
    args = parser.parse_args()

    _, model = parity_model(smoke=False)  # Qwen's real vocabulary, with the GPU graph
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    table = []
    try:
        per_call = [float(w) for w in args.seconds_per_call.split(",")]
        for wait, call in zip((float(w) for w in args.seconds_per_token.split(",")), per_call, strict=True):
            url = deploy(model, wait, call, args.call_target_s, PORT)
            for label, clients, result in measure(url, args, random.Random(0)):
                lat = result["latencies"]
                table.append(
                    [
                        f"{call * 1e3:.1f} ms + {wait * 1e6:.2f} µs/token" if wait or call else "0 (host only)",
                        label,
                        clients,
                        result["pairs_s"],
                        result["pairs_s"] / os.cpu_count(),
                        statistics.median(lat) if lat else float("nan"),
                        percentile(lat, 95),
                        percentile(lat, 99),
                        result["errors"],
                    ]
                )
                print(f"  {table[-1][0]}, {label}: {result['pairs_s']:.0f} pairs/s", flush=True)
            serve.delete("host")
    finally:
        serve.shutdown()
        ray.shutdown()
    print_table(
        f"Host path with a STAND-IN model call (waits the GPU's time per call and token, scores nothing) — ~300-token "
        f"pairs, call_target_s {args.call_target_s:g}, "
        f"one model replica, GPU call sizes; {cpu_description()}",
        ["stand-in wait", "load", "clients", "pairs/s", "pairs/s per host core", "p50 s", "p95 s", "p99 s"]
        + ["errors"],
        table,
    )


if __name__ == "__main__":
    main()
