"""Bulk throughput through a replica's scheduler against whole requests in one scorer call each (what whole-request
batching did), in process, alternated in one run: bulk alone, and as while small requests arrive (bulk work in short
calls, long pairs computed ahead in pieces).

Run: python bench/scheduler.py [--shape tiny|0.6b] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import bench_model, print_table
from bench.mixed_traffic import SHAPES, Texts
from serve.config import BatchConfig
from serve.scheduler import Scheduler


def whole_requests(scorer, requests: list) -> float:
    """Seconds to score each request in one `score_prepared` call, one after the other."""
    start = time.perf_counter()
    for pairs in requests:
        scorer.score_prepared([scorer.prepare(pairs)])
    return time.perf_counter() - start


def scheduled(scorer, requests: list, clients: int, short_calls: bool) -> tuple[float, dict]:
    """Seconds to score the requests through a scheduler, `clients` at a time; its stats. With `short_calls`, one
    small request comes first and keeps the scheduler in its interactive mode throughout."""

    async def main():
        scheduler = Scheduler(scorer, BatchConfig(interactive_window_s=1e9 if short_calls else 0), cache_bytes=0)
        if short_calls:
            await scheduler.score(scorer.prepare(requests[0][:2]))

        async def client(mine):
            for pairs in mine:
                await scheduler.score(scorer.prepare(pairs))

        start = time.perf_counter()
        await asyncio.gather(*(client(requests[k::clients]) for k in range(clients)))
        return time.perf_counter() - start, scheduler.stats

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--requests", type=int, help="bulk requests per measurement (default: 20 tiny, 2 at 0.6B)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from rerank_core.backends.onnx import OnnxScorer

    docs, words = SHAPES[args.shape][2:]
    if args.shape == "tiny":
        from rerank_core.tiny_model import tiny_model_dir

        model, dtype, n = tiny_model_dir(), "f32", args.requests or 20
    else:
        model, dtype, n = bench_model(), args.dtype, args.requests or 2
    scorer = OnnxScorer.open(model, dtype=dtype, intra_op_threads=args.threads)
    texts = Texts(3)
    requests = [[(q["query"], d) for d in q["documents"]] for q in (texts.request(docs, words) for _ in range(n))]
    whole_requests(scorer, requests[:1])  # warm-up
    rows = []
    for r in range(args.rounds):
        whole_s = whole_requests(scorer, requests)
        sched_s, stats = scheduled(scorer, requests, clients=2, short_calls=False)
        short_s, short = scheduled(scorer, requests, clients=2, short_calls=True)
        pairs = n * docs
        rows.append(
            [r, pairs / whole_s, pairs / sched_s, whole_s / sched_s, stats["calls"], pairs / short_s, whole_s / short_s]
        )
        rows[-1].append(short["calls"] - 1)
    print_table(
        f"Bulk pairs/s in process — {model.name} {dtype}, {n} requests of {docs} docs × {words} words, "
        f"{args.threads} threads, BatchConfig defaults",
        [
            "round",
            "whole requests",
            "scheduler (2 clients)",
            "÷ whole",
            "calls",
            "scheduler, short calls",
            "÷ whole",
            "calls",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
