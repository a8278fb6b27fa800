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

`--shape vl`: the built-in tiny Qwen3-VL model's replica (its real tokenizer, image intake, decoding, resizing and
encoding ahead) with its decoder AND its vision encoder standing in for Qwen3-VL-Reranker-2B's on that GPU: the
decoder waits 3.2× the text wait per token (the 2B decoder's multiply-adds per token over the 0.6B's, 1.41 G / 0.44 G),
the encoder what the scheduler charges an image (rerank_core/families/qwen3_vl/costs.py at the 2B shape: 1,253 tokens
for a 1280 × 720 screenshot) at that rate — estimates scaled from a measured text row, not measurements of a VL
model. Requests: small text ones (8–20 documents) alone and beside closed-loop bulk requests of 40 distinct 1280 × 720
screenshots each (Jina's image objects, PNG data URIs made before the timed phases).

Run: python bench/host_path.py [--seconds-per-token 3.9e-6,0] [--seconds-per-call 5.3e-3,0] [--bulk-requests 24]
     python bench/host_path.py --shape vl [--bulk-requests 8] [--bulk-clients 2]
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
VL_DECODER_SCALE = 3.2  # Qwen3-VL-2B's decoder multiply-adds per token over Qwen3-Reranker-0.6B's (1.41 G / 0.44 G)
PORT = 8797


class StandInSession:
    """Stands in for the GPU graph's session: waits `seconds_per_call` + `seconds_per_token` × the padded batch's
    tokens, returns logits of 0. Inputs and outputs are the real graph's, so the layout, scheduler and tokenization
    run unchanged."""

    def __init__(self, real, seconds_per_token: float, seconds_per_call: float):
        self.real, self.seconds_per_token, self.seconds_per_call = real, seconds_per_token, seconds_per_call
        # A past-K/V graph's outputs named as its inputs without "past_": their shapes, [batch, heads, past, dim].
        inputs = real.get_inputs()
        self._kv_shapes = {i.name.removeprefix("past_"): i.shape for i in inputs if i.name.startswith("past_")}

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
        """Wait the GPU's time for the call's padded batch; the logit of every row is 0 (a past-K/V graph's new K/V
        too)."""
        ids = feed["input_ids"]
        time.sleep(self.seconds_per_call + ids.size * self.seconds_per_token)
        kv = self._kv_shapes
        return [
            np.zeros((ids.shape[0], kv[name][1], ids.shape[1], kv[name][3]), np.float32)
            if name in kv
            else np.zeros(len(ids), np.float32)
            for name in names
        ]


class VisionStandIn(StandInSession):
    """Stands in for a vision encoder's session: waits `seconds_per_token` × what the scheduler charges each image
    (`cost`), returns features of 0 in the real graph's widths."""

    def __init__(self, real, cost, seconds_per_token: float):
        super().__init__(real, seconds_per_token, 0.0)
        self.cost = cost

    def run(self, names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Wait the encoder's time for the call's images; every feature is 0."""
        spans = np.diff(feed["cu_seqlens"])
        time.sleep(sum(self.cost.of_image(int(n)) for n in spans) * self.seconds_per_token)
        tokens = len(feed["pixel_values"]) // 4
        features, deepstack = (o.shape for o in self.real.get_outputs())
        return [
            np.zeros((tokens, features[-1]), np.float32),
            np.zeros((deepstack[0], tokens, deepstack[-1]), np.float32),
        ]


def stand_in_replica(seconds_per_token: float, seconds_per_call: float, vision_cost=None):
    """The model deployment with its session replaced by the stand-in (defined here so Ray ships it by value); with
    `vision_cost` (a VL model) its vision encoder too, and the scheduler charges images that cost."""
    from ray import serve

    from serve.replica import Reranker

    class StandInReranker(Reranker.func_or_class):
        """A model replica whose model calls are a stand-in wait."""

        def __init__(self, args, name=None):
            super().__init__(args, name)
            scorer = self.scorer
            scorer.replace_session(StandInSession(scorer.session, seconds_per_token, seconds_per_call))
            if vision_cost is not None:
                scorer.layout.vision = VisionStandIn(scorer.layout.vision, vision_cost, seconds_per_token)
                scorer.layout.vision_cost = vision_cost

    return serve.deployment(StandInReranker, name="Reranker")


def documents(n: int, words: int, rng: random.Random) -> list[str]:
    """`n` documents of `words` words each (≈1.3 Qwen tokens a word), each different."""
    return [f"{rng.randint(0, 10**9)} " + " ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(n)]


def deploy(
    model: str, seconds_per_token: float, seconds_per_call: float, call_target_s: float, port: int, vision_cost=None
) -> str:
    """The app with the stand-in replica, GPU call sizes (a text model: the GPU graph's layout), on local Serve; its
    URL once healthy."""
    from ray import serve

    from serve.app import build_app
    from serve.launcher import wait_healthy

    # A text model runs the GPU graph's layout (right padding, no K/V); Qwen3-VL has only its past-K/V layout.
    layout = {} if vision_cost is not None else {"graph_variant": "cuda"}
    args = {
        "model": {
            "model": model,
            "dtype": "f32",
            "device": "cpu",
            **layout,
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
        build_app(args, options, replica=stand_in_replica(seconds_per_token, seconds_per_call, vision_cost)),
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


def measure_vl(url: str, args, rng: random.Random) -> list[list]:
    """Rows: small text requests alone; screenshot bulk alone; small beside screenshot bulk."""
    from bench.mixed_traffic import SCREENSHOTS, screenshot

    query = "which dashboard shows the quarterly revenue?"
    tags = iter(range(10**6))

    def bulk(count: int) -> list[dict]:
        """`count` requests of 40 screenshots never sent before (made now, before their phase is timed)."""
        return [
            {"query": query, "documents": [{"image": screenshot(next(tags))} for _ in range(SCREENSHOTS)]}
            for _ in range(count)
        ]

    def small(count: int) -> list[dict]:
        return [{"query": query, "documents": documents(rng.randint(8, 20), args.words, rng)} for _ in range(count)]

    closed_loop(url, bulk(1) + small(3), 1)  # warm-up: connections, first calls, the encoder's first image
    rows = []
    alone = closed_loop(url, small(args.small_requests), 1)
    rows.append(["small (8–20 docs) alone", 1, alone])
    bulk_alone = closed_loop(url, bulk(args.bulk_requests), args.bulk_clients)
    rows.append([f"bulk ({SCREENSHOTS} screenshots) alone", args.bulk_clients, bulk_alone])
    beside: dict = {}
    more_bulk, small_requests = bulk(args.bulk_requests), small(args.small_requests)
    load = threading.Thread(target=lambda: beside.update(closed_loop(url, more_bulk, args.bulk_clients)))
    load.start()
    time.sleep(2.0)  # the bulk load is running: its first images decoded and encoded
    small_beside = closed_loop(url, small_requests, 1)
    load.join()
    rows.append([f"bulk ({SCREENSHOTS} screenshots) beside small", args.bulk_clients, beside])
    rows.append([f"small beside {SCREENSHOTS}-screenshot bulk", 1, small_beside])
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
    parser.add_argument("--bulk-requests", type=int, help="bulk requests per row (default: 24 of 200 documents; vl: 8)")
    parser.add_argument("--small-requests", type=int, default=60)
    parser.add_argument("--call-target-s", type=float, default=BatchConfig().call_target_s, help="the scheduler's")
    parser.add_argument("--clients", type=int, default=4, help="closed-loop bulk clients (vl: --bulk-clients)")
    parser.add_argument("--bulk-clients", type=int, default=2, help="closed-loop screenshot-bulk clients (vl)")
    parser.add_argument("--words", type=int, default=220, help="words per document (~300 tokens with the template)")
    parser.add_argument("--shape", choices=("text", "vl"), default="text")
    args = parser.parse_args()

    vision_cost, scale = None, 1.0
    if args.shape == "vl":
        from rerank_core import Reranker
        from rerank_core.families.qwen3_vl.costs import VisionCost
        from rerank_core.tiny_vl_model import FULL_SIZE_TEXT, FULL_SIZE_VISION

        model = "builtin:tiny-qwen3-vl-reranker"
        Reranker.from_pretrained(model)  # made and exported once, before Ray starts
        vision_cost = VisionCost.of_config({"text_config": FULL_SIZE_TEXT, "vision_config": FULL_SIZE_VISION})
        scale, run_rows = VL_DECODER_SCALE, measure_vl
        args.bulk_requests = args.bulk_requests or 8
    else:
        model, run_rows = str(parity_model(smoke=False)[1]), measure  # Qwen's real vocabulary, with the GPU graph
        args.bulk_requests = args.bulk_requests or 24
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    table = []
    try:
        per_call = [float(w) for w in args.seconds_per_call.split(",")]
        for wait, call in zip((scale * float(w) for w in args.seconds_per_token.split(",")), per_call, strict=True):
            url = deploy(model, wait, call, args.call_target_s, PORT, vision_cost)
            for label, clients, result in run_rows(url, args, random.Random(0)):
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
    pairs = (
        "~300-token pairs"
        if vision_cost is None
        else "Qwen3-VL-2B's decoder and encoder estimated from the text rate (see the docstring), the tiny VL host path"
    )
    print_table(
        f"Host path with a STAND-IN model call (waits the GPU's time per call and token, scores nothing) — {pairs}, "
        f"call_target_s {args.call_target_s:g}, "
        f"one model replica, GPU call sizes; {cpu_description()}",
        ["stand-in wait", "load", "clients", "pairs/s", "pairs/s per host core", "p50 s", "p95 s", "p99 s"]
        + ["errors"],
        table,
    )


if __name__ == "__main__":
    main()
