"""Mixed traffic on one replica: small interactive requests alone, under bulk load, right after abandoned bulk
requests; bulk throughput; a repeated request; the endpoint's scores against the library's. `--shape vl` serves the
built-in tiny Qwen3-VL model and adds a row of small text requests beside bulk requests of 40 screenshots each.

Run: python bench/mixed_traffic.py [--shape tiny|vl|0.6b] [--seconds 30] [--image-budget TOKENS]
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import contextlib

from bench.common import WORDS, bench_model, percentile, print_table
from bench.serve import deploy

# (documents per small request, words per small document, documents per bulk request, words per bulk document)
SHAPES = {"tiny": (8, 12, 100, 50), "vl": (8, 12, 100, 50), "0.6b": (8, 12, 40, 100)}
SCREENSHOTS = 40  # per image-bulk request (DashScope's cap), 1280 × 720 each: 880 image tokens at Qwen3-VL's budget
# Screenshots made before the timed phases (encoding them during it would load the 2 cores the server runs on); a
# request takes the next 40, so an image comes back only after the whole pool was sent.
SCREENSHOT_POOL = 600
_pool: list[str] = []
_pool_lock = threading.Lock()
_pool_next = 0


def screenshot(tag: int) -> str:
    """A distinct 1280 × 720 'screenshot' (panels and a tag that makes its bytes unique) as a PNG data URI."""
    import base64
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (1280, 720), "white")
    draw = ImageDraw.Draw(image)
    for k in range(6):
        draw.rectangle((40 + 200 * k, 80, 200 + 200 * k, 80 + 60 * (k + 2)), fill=(30 * k, 120, 255 - 30 * k))
    draw.text((40, 20), f"dashboard {tag}", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Texts:
    """Distinct random documents (never repeated, so no answer can come from a cache unless asked)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def words(self, n: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(n))

    def request(self, docs: int, words: int) -> dict:
        return {"query": self.words(6) + "?", "documents": [self.words(words) for _ in range(docs)]}

    def screenshots(self, docs: int, words: int) -> dict:
        """A bulk request of the pool's next SCREENSHOTS images (Jina's image objects), whatever the shape says."""
        global _pool_next
        with _pool_lock:
            start, _pool_next = _pool_next, (_pool_next + SCREENSHOTS) % len(_pool)
        images = [_pool[(start + k) % len(_pool)] for k in range(SCREENSHOTS)]
        return {"query": self.words(6) + "?", "documents": [{"image": image} for image in images]}


def small_client(url: str, seconds: float, shape: tuple, seed: int, count: int = 0) -> list[float]:
    """One closed-loop client of small requests for `seconds` (or `count` requests); their latencies in seconds."""
    texts, latencies = Texts(seed), []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=600) as http:
        while time.monotonic() < deadline or len(latencies) < count:
            body = texts.request(shape[0], shape[1])
            start = time.monotonic()
            http.post(f"{url}/v1/rerank", json=body).raise_for_status()
            latencies.append(time.monotonic() - start)
    return latencies


def bulk_clients(
    url: str, n: int, stop: threading.Event, shape: tuple, done: list, seed: int, images: bool = False
) -> list[threading.Thread]:
    """`n` closed-loop bulk clients until `stop` (of screenshots with `images`); each answered request appends
    (pairs, seconds) to `done`."""

    def client(k: int) -> None:
        texts = Texts(seed + k)
        with httpx.Client(timeout=600) as http:
            while not stop.is_set():
                body = (texts.screenshots if images else texts.request)(shape[2], shape[3])
                start = time.monotonic()
                http.post(f"{url}/v1/rerank", json=body).raise_for_status()
                done.append((len(body["documents"]), time.monotonic() - start, time.monotonic()))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    return threads


def after_abandoned(url: str, rounds: int, shape: tuple) -> list[float]:
    """Latencies of the 5 small requests sent right after 6 bulk requests whose clients gave up after 0.1 s."""
    texts, latencies = Texts(7), []
    for r in range(rounds):
        for _ in range(6):
            with contextlib.suppress(httpx.TimeoutException):
                httpx.post(f"{url}/v1/rerank", json=texts.request(shape[2], shape[3]), timeout=0.1)
        latencies += small_client(url, 0, shape, seed=300 + r, count=5)
    return latencies


def main() -> None:
    """Deploy one replica and run every phase against it; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each timed phase")
    parser.add_argument("--bulk-clients", type=int, default=2)
    parser.add_argument(
        "--bulk-warmup", type=float, default=12.0, help="seconds of bulk load before it is measured (> the 10 s window)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--token-budget", type=int, help="tokens per model call (default: the device's)")
    parser.add_argument(
        "--image-budget", type=int, help="the replica's images.max_image_tokens_in_flight (default: the app's)"
    )
    parser.add_argument("--port", type=int, default=8797)
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    if args.shape == "tiny":
        from rerank_core.tiny_model import tiny_model_dir

        model, dtype = tiny_model_dir(), "f32"
    elif args.shape == "vl":
        from rerank_core import Reranker

        model, dtype = "builtin:tiny-qwen3-vl-reranker", "f32"
        Reranker.from_pretrained(model)  # made and exported once, before Ray starts
        _pool.extend(screenshot(tag) for tag in range(SCREENSHOT_POOL))
    else:
        model, dtype = bench_model(), args.dtype

    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        max_tokens = 2 * SCREENSHOTS * 1024 if args.shape == "vl" else None  # 40 screenshots fit one request
        images = {"images": {"max_image_tokens_in_flight": args.image_budget}} if args.image_budget else None
        url = deploy(model, dtype, 32, 0.005, args.threads, args.port, args.token_budget, max_tokens, images)
        small_client(url, 2, shape, seed=99)  # warm-up
        alone = small_client(url, args.seconds, shape, seed=1)

        bulk_alone = []
        for k, (seconds, record) in enumerate(((args.bulk_warmup, []), (args.seconds, bulk_alone))):  # warm-up first
            stop, t0 = threading.Event(), time.monotonic()
            threads = bulk_clients(url, args.bulk_clients, stop, shape, record, seed=1000 + 100 * k)
            time.sleep(seconds)
            stop.set()
            for t in threads:
                t.join()
        bulk_rate = sum(p for p, _, _ in bulk_alone) / (max(end for _, _, end in bulk_alone) - t0)

        stop, bulk_mixed, t1 = threading.Event(), [], time.monotonic()
        threads = bulk_clients(url, args.bulk_clients, stop, shape, bulk_mixed, seed=2000)
        time.sleep(2)
        loaded = small_client(url, args.seconds, shape, seed=2)
        stop.set()
        for t in threads:
            t.join()

        image_mixed, image_bulk, t2 = [], [], time.monotonic()
        if args.shape == "vl":
            stop = threading.Event()
            threads = bulk_clients(url, args.bulk_clients, stop, shape, image_bulk, seed=4000, images=True)
            time.sleep(args.bulk_warmup)
            image_mixed = small_client(url, args.seconds, shape, seed=4)
            stop.set()
            for t in threads:
                t.join()

        time.sleep(2)
        abandoned = after_abandoned(url, 3, shape)
        time.sleep(2)

        texts, fresh, repeat, same_repeat = Texts(5), [], [], True
        with httpx.Client(timeout=600) as http:  # one connection, as the clients above: the cache's time, not TCP's
            for _ in range(5):  # medians of 5: one request's time on a shared CPU is noisy
                body = texts.request(shape[0], shape[1])
                start = time.monotonic()
                first = http.post(f"{url}/v1/rerank", json=body).json()
                fresh.append(time.monotonic() - start)
                start = time.monotonic()
                again = http.post(f"{url}/v1/rerank", json=body).json()
                repeat.append(time.monotonic() - start)
                same_repeat &= [r["relevance_score"] for r in first["results"]] == [
                    r["relevance_score"] for r in again["results"]
                ]
        fresh_s, repeat_s = float(np.median(fresh)), float(np.median(repeat))

        check = texts.request(shape[2], shape[3])
        served = httpx.post(f"{url}/v1/rerank", json=check, timeout=600).json()["results"]
    finally:
        serve.shutdown()
        ray.shutdown()

    from rerank_core import Reranker

    library = Reranker.from_pretrained(model, dtype=dtype).scorer.score(
        [(check["query"], d) for d in check["documents"]]
    )
    served_scores = np.array([r["relevance_score"] for r in sorted(served, key=lambda r: r["index"])])

    p95_alone = percentile(alone, 95)

    def row(traffic: str, latencies: list[float]) -> list:
        p95 = percentile(latencies, 95)
        return [
            traffic,
            len(latencies),
            1000 * percentile(latencies, 50),
            1000 * p95,
            1000 * max(latencies),
            p95 / p95_alone,
        ]

    rows = [row("small alone", alone), row(f"small under {args.bulk_clients} bulk clients", loaded)]
    if image_mixed:
        label = f"small under {args.bulk_clients} bulk clients of {SCREENSHOTS} screenshots (pool {len(_pool)})"
        rows.append(row(label, image_mixed))
    rows.append(row("5 small right after 6 abandoned bulk requests (×3)", abandoned))
    print_table(
        f"Small requests ({shape[0]} docs × {shape[1]} words) — {Path(model).name} {dtype}, bulk {shape[2]} docs × "
        f"{shape[3]} words, {args.threads} ORT threads, token budget {args.token_budget or 'default'}, image budget "
        f"{args.image_budget or 'default'}",
        ["traffic", "requests", "p50 ms", "p95 ms", "max ms", "p95 ÷ alone"],
        rows,
    )
    mixed_rate = sum(p for p, _, _ in bulk_mixed) / (max(end for _, _, end in bulk_mixed) - t1) if bulk_mixed else 0.0
    image_rate = sum(p for p, _, _ in image_bulk) / (max(e for _, _, e in image_bulk) - t2) if image_bulk else "—"
    print_table(
        "Bulk, repeat, exactness",
        [
            "bulk pairs/s alone",
            "bulk pairs/s with small traffic",
            "screenshot pairs/s with small traffic",
            "fresh ms (median of 5)",
            "repeat ms (median)",
            "fresh ÷ repeat",
            "repeat identical",
            "max |served − library|",
        ],
        [
            [
                bulk_rate,
                mixed_rate,
                image_rate,
                1000 * fresh_s,
                1000 * repeat_s,
                fresh_s / repeat_s,
                same_repeat,
                float(np.abs(served_scores - library).max()),
            ]
        ],
    )


if __name__ == "__main__":
    main()
