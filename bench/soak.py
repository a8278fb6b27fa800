"""Soak: mixed load (small and bulk requests in every dialect) on one replica for a long spell; the replica's RSS
after ÷ after warm-up, small-request p95 of the last minute ÷ the first, errors; then the replica's peak RSS while it
scores the largest request the limits admit.

Run: python bench/soak.py [--minutes 15] [--warmup-minutes 2] [--shape tiny|0.6b]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import WORDS, bench_model, percentile, print_table
from bench.serve import deploy


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def dialect_request(rng: random.Random, docs: int, doc_words: int) -> tuple[str, dict]:
    """A request of `docs` documents in one of the dialects the endpoint speaks, picked at random: (path, body)."""
    query, documents = words(rng, 6) + "?", [words(rng, doc_words) for _ in range(docs)]
    if rng.random() < 0.1:  # a repeated query and documents: some answers come from the score cache
        rng_fixed = random.Random(docs)
        query, documents = "a repeated query?", [words(rng_fixed, doc_words) for _ in range(docs)]
    return rng.choice(
        [
            ("/v1/rerank", {"query": query, "documents": documents, "top_n": 3}),
            ("/v2/rerank", {"query": query, "documents": documents, "return_documents": True}),
            (
                "/api/v1/services/rerank/text-rerank/text-rerank",
                {"model": "qwen3-rerank", "input": {"query": query, "documents": documents}},
            ),
            ("/compatible-api/v1/reranks", {"model": "qwen3-rerank", "query": query, "documents": documents}),
            ("/rerank", {"query": query, "texts": documents, "truncate": True}),
            ("/rerank", {"query": query, "documents": documents}),
            ("/score", {"text_1": query, "text_2": documents}),
        ]
    )


class Load:
    """Closed-loop clients until stopped: `small` clients of 8-document requests, `bulk` of 60-document ones; small
    latencies with their end times, errors by cause."""

    def __init__(self, url: str, small: int, bulk: int, doc_words: int):
        self.url, self.stop = url, threading.Event()
        self.small_latencies: list[tuple[float, float]] = []  # (end time, seconds)
        self.requests, self.errors = 0, {}
        self._lock = threading.Lock()
        kinds = [(8, k) for k in range(small)] + [(60, 100 + k) for k in range(bulk)]
        self.threads = [threading.Thread(target=self._client, args=(d, s, doc_words), daemon=True) for d, s in kinds]
        for t in self.threads:
            t.start()

    def _client(self, docs: int, seed: int, doc_words: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=120) as http:
            while not self.stop.is_set():
                path, body = dialect_request(rng, docs, doc_words)
                start = time.monotonic()
                try:
                    reply = http.post(self.url + path, json=body)
                    error = None if reply.status_code == 200 else f"HTTP {reply.status_code}"
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                end = time.monotonic()
                with self._lock:
                    self.requests += 1
                    if error:
                        self.errors[error] = self.errors.get(error, 0) + 1
                    elif docs == 8:
                        self.small_latencies.append((end, end - start))

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def p95(self, since: float, until: float) -> float:
        values = [s for end, s in self.small_latencies if since <= end < until]
        return percentile(values, 95)


def replica_pid(deployment: str) -> int:
    """The process id of the deployment's one replica: Ray titles its worker `ray::ServeReplica:<app>:<deployment>`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
            if cmdline.startswith(b"ray::ServeReplica:") and f":{deployment}".encode() in cmdline:
                found.append(int(proc.name))
        except OSError:  # the process ended meanwhile
            continue
    (pid,) = found
    return pid


def rss(pid: int) -> int:
    """Resident memory of a process in bytes (Linux /proc)."""
    resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss(pid: int, work) -> tuple[float, float]:
    """RSS before `work()` and its peak while it runs (sampled every 20 ms), bytes."""
    before, peak, done = rss(pid), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return before, peak[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=["tiny", "0.6b"], default="tiny")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--warmup-minutes", type=float, default=3.0, help="load before RSS and p95 are taken")
    parser.add_argument("--small-clients", type=int, default=3)
    parser.add_argument("--bulk-clients", type=int, default=1)
    parser.add_argument("--port", type=int, default=8798)
    args = parser.parse_args()
    if args.shape == "tiny":
        from rerank_core.tiny_model import tiny_model_dir

        model, dtype, doc_words = tiny_model_dir(), "f32", 40
    else:
        model, dtype, doc_words = bench_model(), "int8", 60

    import ray
    from ray import serve

    from serve.config import MAX_BODY_BYTES, MAX_TOKENS_PER_REQUEST, SCORE_CACHE_BYTES

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        url = deploy(model, dtype, 32, 0.005, 2, args.port)
        replica, gateway = replica_pid("Reranker"), replica_pid("Gateway")
        load = Load(url, args.small_clients, args.bulk_clients, doc_words)
        time.sleep(60 * args.warmup_minutes)
        start, rss_start, samples, gateway_start = time.monotonic(), rss(replica), [], rss(gateway)
        while time.monotonic() - start < 60 * args.minutes:
            time.sleep(10)
            samples.append(rss(replica))
        gateway_end = rss(gateway)
        end = time.monotonic()
        load.finish()
        first, last = load.p95(start, start + 60), load.p95(end - 60, end)
        measured = [s for t, s in load.small_latencies if t >= start]

        # The largest requests the limits admit: as many documents as the token cap lets in, short or at max_length.
        largest = []
        with httpx.Client(timeout=3600) as http:
            for doc_words in (30, 10_000):
                rng = random.Random(1)
                documents = [words(rng, doc_words) for _ in range(1000 if doc_words < 100 else 40)]
                count, replies = len(documents), []
                while True:  # a refused request is refused at admission, before any work: RSS from the first admitted
                    body = {"query": "?", "documents": documents[:count]}
                    before, peak = peak_rss(
                        replica,
                        lambda body=body, replies=replies: replies.append(http.post(url + "/v1/rerank", json=body)),
                    )
                    if replies[-1].status_code == 200:
                        break
                    count = int(count * 0.95)
                tokens = replies[-1].json()["usage"]["total_tokens"]
                largest.append([f"{count} × {doc_words} words", tokens, before / (1 << 20), peak / (1 << 20)])
    finally:
        serve.shutdown()
        ray.shutdown()

    mib = 1 << 20
    print_table(
        f"Soak — {model.name} {dtype}, one replica (2 ORT threads), {args.small_clients} small (8 docs) + "
        f"{args.bulk_clients} bulk (60 docs) closed-loop clients over 7 dialects, {args.minutes:g} min after "
        f"{args.warmup_minutes:g} min of warm-up",
        [
            "requests",
            "errors",
            "small p95 first min ms",
            "last min ms",
            "last ÷ first",
            "small p50 ms",
            "RSS after warm-up MiB",
            "RSS end MiB",
            "max MiB",
            "end ÷ after warm-up",
            "gateway RSS after warm-up → end MiB",
        ],
        [
            [
                load.requests,
                sum(load.errors.values()) or 0,
                1000 * first,
                1000 * last,
                last / first,
                1000 * float(np.median(measured)),
                rss_start / mib,
                samples[-1] / mib,
                max(samples) / mib,
                samples[-1] / rss_start,
                f"{gateway_start / mib:.0f} → {gateway_end / mib:.0f}",
            ]
        ],
    )
    if load.errors:
        print("errors:", load.errors)
    print_table(
        f"Largest admitted requests (token cap {MAX_TOKENS_PER_REQUEST['cpu']} on a CPU, max_documents 1000, body "
        f"≤ {MAX_BODY_BYTES // mib} MiB; score cache ≤ {SCORE_CACHE_BYTES // mib} MiB)",
        ["documents", "tokens", "replica RSS before MiB", "peak MiB"],
        largest,
    )


if __name__ == "__main__":
    main()
