"""Requests of 40 screenshots each, all at once, on one replica of the built-in tiny Qwen3-VL model: the replica's
peak RSS and the time to answer them all, with its image budget (`images.max_image_tokens_in_flight`) at the
default and off, side by side. Each request's images are distinct, so no feature is shared between requests.

Run: python bench/image_budget.py [--requests 6] [--images 40]
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cpu_description, print_table
from bench.mixed_traffic import screenshot
from bench.serve import deploy
from bench.soak import peak_rss, replica_pid
from serve.config import ImageLimits

MODEL = "builtin:tiny-qwen3-vl-reranker"
MIB = 1024 * 1024


def send(url: str, bodies: list[dict], statuses: list[int]) -> None:
    """Post every body at once to /v1/rerank; their statuses into `statuses`."""

    def one(body: dict) -> int:
        return httpx.post(f"{url}/v1/rerank", json=body, timeout=1800).status_code

    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses.extend(pool.map(one, bodies))


def main() -> None:
    """Per budget: deploy, send every request at once, record the replica's RSS before and its peak; print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--images", type=int, default=40, help="screenshots per request (DashScope's cap)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8798)
    args = parser.parse_args()
    from rerank_core import Reranker

    tokens = Reranker.from_pretrained(MODEL).scorer.image_tokens  # made and exported once, before Ray starts
    pool = [screenshot(tag) for tag in range(args.requests * args.images)]
    bodies = [
        {"query": "which dashboard shows the sales?", "documents": [{"image": i} for i in pool[k :: args.requests]]}
        for k in range(args.requests)
    ]
    encoded = [base64.b64decode(image["image"].split(",", 1)[1]) for image in bodies[0]["documents"]]
    per_request = tokens([("q", {"image": image}) for image in encoded])  # as the gateway passes them: bytes

    import ray
    from ray import serve

    default = ImageLimits().max_image_tokens_in_flight
    rows = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for label, budget in ((f"default ({default:,} tokens)", default), ("off (10⁹ tokens)", 10**9)):
            images = {"max_images_per_request": args.images, "max_image_tokens_in_flight": budget}
            max_tokens = 2 * per_request + 100_000
            url = deploy(MODEL, "f32", 32, 0.005, args.threads, args.port, None, max_tokens, {"images": images})
            pid, statuses = replica_pid("Reranker"), []
            send_all = partial(send, url, bodies, statuses)
            start = time.monotonic()
            before, peak = peak_rss(pid, send_all)
            seconds = time.monotonic() - start
            answered = statuses.count(200)
            rows.append([label, f"{answered}/{len(bodies)}", before / MIB, peak / MIB, (peak - before) / MIB, seconds])
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    print_table(
        f"{args.requests} requests of {args.images} distinct 1280 × 720 screenshots at once ({per_request:,} image "
        f"tokens each), one replica of {MODEL} (f32, {args.threads} ORT threads); {cpu_description()}",
        [
            "image budget",
            "answered 200",
            "replica RSS before MiB",
            "peak MiB",
            "peak − before MiB",
            "all answered in s",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
