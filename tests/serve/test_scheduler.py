"""The replica scheduler on the real tiny ONNX scorer: least remaining work first, aging, dropped work, score cache."""

import asyncio
import time

import numpy as np
import pytest

from rerank_core.backends.onnx import OnnxScorer
from rerank_core.tiny_model import tiny_model_dir
from serve.config import BatchConfig
from serve.scheduler import DeadlineExceeded, Job, Limits, Scheduler, Take, plan_step
from serve.score_cache import ScoreCache

ONE_BUDGET = BatchConfig(batch_wait_timeout_s=0, call_target_s=0)  # every call one token budget: many calls


@pytest.fixture(scope="module")
def scorer():
    return OnnxScorer.open(tiny_model_dir(), token_budget=128, intra_op_threads=1)


def pairs(query: str, n: int, words: int = 12) -> list[tuple[str, str]]:
    return [(query, " ".join(f"w{(7 * i + j) % 50}" for j in range(words)) + f" doc {i}") for i in range(n)]


def job(scorer, pairs_, admitted: float) -> Job:
    prepared = scorer.prepare(pairs_)
    rows = sorted(range(len(prepared)), key=lambda r: -int(prepared.costs[r]))
    cost = int(prepared.costs.sum())
    z = np.zeros(len(prepared), np.float32)
    return Job(prepared, None, None, admitted, z, z.copy(), rows, cost, len(rows), admitted)


def budget(tokens: int, chunk: int | None = None) -> Limits:
    return Limits(whole=tokens, step=tokens, chunk=chunk)


def test_plan_step_serves_the_least_remaining_work_first_and_fills_the_budget(scorer):
    bulk = job(scorer, pairs("bulk query", 50), admitted=0.0)
    small = job(scorer, pairs("small query", 2), admitted=0.5)
    step = plan_step([bulk, small], now=1.0, limits=budget(256), max_requests=8, aging_s=2.0)
    assert step[0] == Take(small, small.pending)  # all of it, first
    assert step[1].job is bulk and step[1].rows  # the rest of the budget goes to the bulk request
    used = sum(int(take.job.prepared.costs[take.rows].sum()) for take in step)
    assert 256 - 60 < used <= 256
    assert plan_step([bulk, small], now=1.0, limits=budget(256), max_requests=1, aging_s=2.0) == [
        Take(small, small.pending)
    ]


def test_while_small_requests_arrive_a_small_requests_call_takes_other_requests_only_whole(scorer):
    bulk = job(scorer, pairs("bulk query", 50), admitted=0.0)
    small = job(scorer, pairs("small query", 2), admitted=0.5)
    other = job(scorer, pairs("other query", 3), admitted=0.6)
    limits = Limits(whole=256, step=256, top_up=False)
    step = plan_step([bulk, small, other], now=1.0, limits=limits, max_requests=8, aging_s=2.0)
    assert step == [Take(small, small.pending), Take(other, other.pending)]  # no bulk pairs
    assert plan_step([bulk], now=1.0, limits=limits, max_requests=8, aging_s=2.0)[0].job is bulk  # bulk leads: cut


def test_a_small_request_over_the_budget_is_not_split_nor_topped_up(scorer):
    bulk = job(scorer, pairs("bulk query", 50), admitted=0.0)
    small = job(scorer, pairs("small query", 2), admitted=0.5)
    assert 64 < small.pending_cost <= 128
    step = plan_step([bulk, small], now=1.0, limits=budget(64, chunk=8), max_requests=8, aging_s=2.0)
    assert step == [Take(small, small.pending)]
    step = plan_step([bulk], now=1.0, limits=budget(64), max_requests=8, aging_s=2.0)  # bulk: cut to the budget
    assert sum(int(bulk.prepared.costs[r]) for r in step[0].rows) <= 64 < bulk.pending_cost


def test_aging_moves_a_starved_bulk_request_ahead(scorer):
    bulk = job(scorer, pairs("bulk query", 50), admitted=0.0)
    small = job(scorer, pairs("small query", 2), admitted=100.0)
    assert plan_step([bulk, small], now=100.0, limits=budget(16), max_requests=1, aging_s=2.0)[0].job is bulk
    assert plan_step([bulk, small], now=100.0, limits=budget(16), max_requests=1, aging_s=1000.0)[0].job is small


def test_a_pair_longer_than_the_call_is_cut_or_else_gets_a_call_of_its_own(scorer):
    long = job(scorer, pairs("q", 1, words=400), admitted=0.0)
    assert plan_step([long], now=0.0, limits=budget(16), max_requests=8, aging_s=2.0) == [Take(long, [0])]
    whole = Limits(whole=16, step=40, chunk=8)  # what fits the call is computed ahead
    assert plan_step([long], now=0.0, limits=whole, max_requests=8, aging_s=2.0) == [Take(long, [], cut=(0, 40))]


def test_one_pair_at_a_time_is_partial_and_it_is_finished_first(scorer):
    first = job(scorer, pairs("first", 3, words=200), admitted=0.0)
    second = job(scorer, pairs("second", 2, words=200), admitted=0.0)
    limits = Limits(whole=16, step=64, chunk=8)
    (take,) = plan_step([first], now=0.0, limits=limits, max_requests=8, aging_s=2.0)
    pair = take.cut[0]
    first.advanced(pair, 64, state="kv", now=0.0)
    assert first.pending[0] == pair and first.cost(pair) == int(first.prepared.costs[pair]) - 64
    assert second.pending_cost < first.pending_cost  # the other job ranks first, but cannot start a second partial
    (again,) = plan_step([first, second], now=0.0, limits=limits, max_requests=8, aging_s=2.0)
    assert again == Take(first, [], cut=(pair, 64))
    part = first.take([pair], now=1.0)
    assert part.prefilled == {0: "kv"} and first.partial is None


def test_a_small_request_is_answered_while_a_bulk_one_is_cut_across_calls(scorer):
    bulk_pairs, small_pairs = pairs("what is bulk?", 120), pairs("what is small?", 4)
    expected_bulk, expected_small = scorer.score(bulk_pairs), scorer.score(small_pairs)

    async def main():
        scheduler = Scheduler(scorer, ONE_BUDGET, cache_bytes=0)
        done = []

        async def run(name, pairs_):
            scored = await scheduler.score(scorer.prepare(pairs_))
            done.append(name)
            return scored

        bulk = asyncio.create_task(run("bulk", bulk_pairs))
        while scheduler.stats["calls"] < 3:  # the bulk request is in progress
            await asyncio.sleep(0.001)
        small = await run("small", small_pairs)
        bulk = await bulk
        return done, small, bulk, scheduler.stats

    done, small, bulk, stats = asyncio.run(main())
    assert done == ["small", "bulk"]
    assert small.shared_with == 1 and stats["calls"] > 10  # over the budget: a call of its own
    np.testing.assert_allclose(small.output.scores, expected_small, atol=1e-6)
    np.testing.assert_allclose(bulk.output.scores, expected_bulk, atol=1e-6)
    assert stats["pairs_scored"] == 124


def test_long_pairs_are_computed_ahead_in_short_calls_while_small_requests_arrive(scorer):
    """A model slower than `call_target_s` (here: every model) cuts long pairs into calls of `chunk_tokens` once a
    small request has come: the next one waits for one short call, not for a long pair; every score stays the
    library's. Without small requests, calls stay whole."""
    long_pairs, small_pairs = pairs("what is long?", 3, words=300), pairs("what is small?", 2)
    expected_long, expected_small = scorer.score(long_pairs), scorer.score(small_pairs)
    assert scorer.prepare(long_pairs).costs.min() > 4 * scorer.chunk_tokens

    async def main(config):
        scheduler = Scheduler(scorer, config, cache_bytes=0)
        first = await scheduler.score(scorer.prepare(small_pairs))
        long = asyncio.create_task(scheduler.score(scorer.prepare(long_pairs)))
        while scheduler.stats["calls"] < 3:  # the first long pair is partly computed
            await asyncio.sleep(0.001)
        small = await scheduler.score(scorer.prepare(small_pairs[::-1]))
        calls_for_small = scheduler.stats["calls"]
        long = await long
        return first, small, long, calls_for_small, scheduler.stats

    first, small, long, calls_for_small, stats = asyncio.run(main(ONE_BUDGET))
    assert calls_for_small < stats["calls"] - 3  # the long request went on after the small one's answer
    assert stats["calls"] >= 2 + 3 * 4  # each long pair over ≥ 4 calls
    np.testing.assert_allclose(long.output.scores, expected_long, atol=1e-6)
    np.testing.assert_allclose(first.output.scores, expected_small, atol=1e-6)
    np.testing.assert_allclose(small.output.scores, expected_small[::-1], atol=1e-6)
    *_, stats = asyncio.run(main(ONE_BUDGET.model_copy(update={"interactive_window_s": 0})))
    assert stats["calls"] <= 2 + 3 + 1  # never cut: the long pairs whole, one a call


def test_a_scorer_scoring_pairs_whole_keeps_bulk_calls_short_while_small_requests_arrive(tiny_export):
    """A GPU graph scores pairs whole (no pieces computed ahead), in calls of a large budget. Once its rate is known
    and a small request has come, bulk work goes in calls of about `call_target_s` (here far under the budget), a
    bulk request no longer taken whole; before that, and without the window, a bulk request is one call. Every score
    stays the library's."""
    whole_pairs = OnnxScorer.open(tiny_export, graph_variant="cuda", token_budget=100_000, intra_op_threads=1)
    assert whole_pairs.chunk_tokens is None
    bulk_pairs, small_pairs = pairs("what is bulk?", 400), pairs("what is small?", 1)
    expected = whole_pairs.score(bulk_pairs)
    assert whole_pairs.prepare(bulk_pairs).costs.sum() > 40_000 and whole_pairs.prepare(small_pairs).costs.sum() < 150

    async def main(config):
        scheduler = Scheduler(whole_pairs, config, cache_bytes=0)
        calls = []
        for request in (bulk_pairs, bulk_pairs[::-1], small_pairs, bulk_pairs):
            before = scheduler.stats["calls"]
            scored = await scheduler.score(whole_pairs.prepare(request))
            calls.append(scheduler.stats["calls"] - before)
        return calls, scored

    config = BatchConfig(batch_wait_timeout_s=0, call_target_s=0.005)
    calls, scored = asyncio.run(main(config))
    assert calls[:3] == [1, 1, 1]  # no small request yet: the rate unknown, then known; the small one whole
    assert calls[3] >= 4  # the bulk request after it: short calls
    np.testing.assert_allclose(scored.output.scores, expected, atol=1e-6)
    calls, _ = asyncio.run(main(config.model_copy(update={"interactive_window_s": 0})))
    assert calls == [1, 1, 1, 1]


def test_a_stream_of_small_requests_does_not_starve_a_bulk_one(scorer):
    async def main():
        scheduler = Scheduler(scorer, BatchConfig(batch_wait_timeout_s=0, call_target_s=0, aging_s=0.05), 0)
        bulk = asyncio.create_task(scheduler.score(scorer.prepare(pairs("bulk", 40))))
        smalls = 0
        while not bulk.done():
            await asyncio.gather(*(scheduler.score(scorer.prepare(pairs(f"s{smalls}-{k}", 2))) for k in range(3)))
            smalls += 1
            assert smalls < 500, "the bulk request starved"
        return (await bulk).output.scores

    assert asyncio.run(main()).shape == (40,)


def test_a_cancelled_request_leaves_the_queue_and_others_go_on(scorer):
    async def main():
        scheduler = Scheduler(scorer, ONE_BUDGET, cache_bytes=0)
        bulk = asyncio.create_task(scheduler.score(scorer.prepare(pairs("abandoned", 200))))
        while scheduler.stats["calls"] < 2:
            await asyncio.sleep(0.001)
        bulk.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bulk
        after = await scheduler.score(scorer.prepare(pairs("next", 3)))
        await asyncio.sleep(0.05)
        return scheduler.stats, after

    stats, after = asyncio.run(main())
    assert stats["pairs_dropped"] > 100
    assert stats["pairs_scored"] + stats["pairs_dropped"] == 203
    assert after.output.scores.shape == (3,)


def test_a_request_past_its_deadline_is_dropped(scorer):
    async def main():
        scheduler = Scheduler(scorer, ONE_BUDGET, cache_bytes=0)
        with pytest.raises(DeadlineExceeded, match="0.05 s"):
            await scheduler.score(scorer.prepare(pairs("slow", 300)), timeout_s=0.05)
        return scheduler.stats

    assert asyncio.run(main())["pairs_dropped"] > 0


def test_a_repeated_request_comes_from_the_cache_with_the_same_scores(scorer):
    async def main():
        scheduler = Scheduler(scorer, ONE_BUDGET, cache_bytes=1 << 20)
        first = await scheduler.score(scorer.prepare(pairs("again", 30)))
        started = time.perf_counter()
        second = await scheduler.score(scorer.prepare(pairs("again", 30)))
        other_instruction = await scheduler.score(scorer.prepare(pairs("again", 30), instruction="Find code"))
        return first, second, other_instruction, scheduler.stats, time.perf_counter() - started

    first, second, other, stats, _ = asyncio.run(main())
    assert first.cached == 0 and second.cached == 30 and other.cached == 0
    np.testing.assert_array_equal(second.output.scores, first.output.scores)
    np.testing.assert_array_equal(second.output.tokens, first.output.tokens)
    assert stats["cache_hits"] == 30 and stats["pairs_scored"] == 60


def test_the_score_cache_is_bounded_in_bytes_and_drops_the_least_recently_used():
    entry = ScoreCache.entry_bytes(b"k" * 16)
    cache = ScoreCache(10 * entry)
    for i in range(10):
        cache.put(i.to_bytes(16, "little"), float(i), 0.0)
    assert cache.get((0).to_bytes(16, "little")) == (0.0, 0.0)  # now the most recently used
    for i in range(10, 15):
        cache.put(i.to_bytes(16, "little"), float(i), 0.0)
    assert len(cache) == 10 and cache.bytes <= 10 * entry
    assert cache.get((1).to_bytes(16, "little")) is None and cache.get((0).to_bytes(16, "little")) is not None
