"""A replica's scheduler: the pairs of every admitted request wait in one queue, each model call is filled up to the
scorer's call budget with the request that has the least work left first (aging keeps bulk requests moving), and a
request is answered as soon as its last pair is scored; pairs nobody waits for any more leave the queue."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rerank_core.scorer import Prepared, ScoreOutput, Scorer

from .config import BatchConfig
from .metrics import ReplicaMetrics, size_label
from .score_cache import ScoreCache

log = logging.getLogger("ray.serve")


class DeadlineExceeded(TimeoutError):
    """A request was not scored within its deadline; its remaining work was dropped."""

    def __init__(self, timeout_s: float):
        super().__init__(f"not scored within {timeout_s:.3g} s; its remaining pairs were dropped")
        self.timeout_s = timeout_s


@dataclass(frozen=True)
class Scored:
    """A request's scores and how they were made: requests that shared its model calls (itself included), pairs
    answered from the score cache."""

    output: ScoreOutput
    shared_with: int
    cached: int


@dataclass
class Partial:
    """A pair computed ahead over calls: the scorer's state of its first tokens and the cost still to compute."""

    pair: int
    state: Any
    remaining: int


@dataclass(eq=False)
class Job:
    """One admitted request in the queue."""

    prepared: Prepared
    keys: list[bytes] | None  # score-cache key of each pair; None when the cache is off
    future: asyncio.Future
    admitted: float
    scores: np.ndarray
    logits: np.ndarray
    pending: list[int]  # pairs waiting for a model call: the partial one first, then costliest first
    pending_cost: int
    unscored: int  # pairs not scored yet, pending or in a call
    waiting_since: float  # last time it got pairs into a call (or was admitted): aging counts from here
    cached: int = 0
    started: float | None = None
    sharers: set[int] = field(default_factory=set)
    partial: Partial | None = None

    def cost(self, pair: int) -> int:
        """What is left to compute of a pending pair."""
        if self.partial is not None and self.partial.pair == pair:
            return self.partial.remaining
        return int(self.prepared.costs[pair])

    def take(self, rows: Sequence[int], now: float) -> Prepared:
        """Move `rows` from the queue into a model call; the part of the request to score (a partial pair's state
        with it)."""
        chosen = set(rows)
        self.pending = [r for r in self.pending if r not in chosen]
        self.pending_cost -= sum(self.cost(r) for r in rows)
        self.waiting_since = now
        part = self.prepared.select(rows)
        if self.partial is not None and self.partial.pair in chosen:
            part = replace(part, prefilled={rows.index(self.partial.pair): self.partial.state})
            self.partial = None
        return part

    def advanced(self, pair: int, tokens: int, state: Any, now: float) -> None:
        """`tokens` more of `pair` were computed ahead into `state`; it goes first in the queue."""
        remaining = self.cost(pair) - tokens
        self.partial = Partial(pair, state, remaining)
        self.pending_cost -= tokens
        self.pending = [pair] + [r for r in self.pending if r != pair]
        self.waiting_since = now


@dataclass(frozen=True)
class Limits:
    """What one model call may hold: a first request whole up to twice `whole` tokens, else `step` tokens in all;
    pairs cut into pieces of at least `chunk` tokens (None: pairs go whole). All None: no limit (a remote service).
    Without `top_up`, a call whose first request goes whole takes others only whole too: a small request's call is
    not made longer by a bulk request's pairs."""

    whole: int | None
    step: int | None
    chunk: int | None = None
    top_up: bool = True


@dataclass
class Take:
    """A job's part of one model call: pairs to score, and tokens of one pair to compute ahead (`cut`)."""

    job: Job
    rows: list[int]
    cut: tuple[int, int] | None = None  # (pair, tokens)


def plan_step(jobs: Sequence[Job], now: float, limits: Limits, max_requests: int, aging_s: float) -> list[Take]:
    """The work of the next model call.

    Jobs go by least remaining cost, divided by (1 + seconds waited / aging_s). The first takes all its pairs if they
    cost at most 2 × `limits.whole` (a small request is never split over calls); then pairs fill the call up to
    `limits.step` tokens — only requests that fit whole when `limits.top_up` is off —, at most `max_requests` jobs. A
    pair that does not fit is cut: what fits of it is computed ahead, and the rest in later calls — one pair at a
    time is partial, which bounds the memory its state holds. Without `limits.chunk` a call that holds nothing yet
    takes one pair whole, however long.
    """
    ready = [job for job in jobs if job.pending]
    ready.sort(key=lambda job: job.pending_cost / (1.0 + (now - job.waiting_since) / aging_s))
    if not ready:
        return []
    first = ready[0]
    if limits.whole is None or first.pending_cost <= 2 * limits.whole:
        step, used = [Take(first, list(first.pending))], first.pending_cost
    else:
        step, used = [], 0
    partial_elsewhere = any(job.partial is not None for job in jobs)
    for job in ready[len(step) :]:
        if len(step) == max_requests or (limits.step is not None and used >= limits.step):
            break
        if step and not limits.top_up:
            if limits.step is None or job.pending_cost <= limits.step - used:
                step.append(Take(job, list(job.pending)))
                used += job.pending_cost
            continue
        take = Take(job, [])
        cheapest = int(job.prepared.costs[job.pending[-1]])  # after the partial pair, pending is costliest first
        for row in job.pending:
            cost, room = job.cost(row), None if limits.step is None else limits.step - used
            if room is None or cost <= room:
                take.rows.append(row)
                used += cost
            elif limits.chunk is not None:
                mine = job.partial is not None and job.partial.pair == row
                if (mine or not partial_elsewhere) and (room >= limits.chunk or not (step or take.rows)):
                    take.cut, used = (row, room), used + room
                    partial_elsewhere = True
                break  # the call is full, or this job's pairs wait for the partial one
            elif not (step or take.rows):
                take.rows.append(row)  # nothing can be cut: one long pair alone
                used += cost
            elif cheapest > room:
                break  # scanning a bulk request's other pairs would find nothing that fits
        if take.rows or take.cut:
            step.append(take)
    return step


class Scheduler:
    """Scores prepared requests of one replica through shared model calls, made one at a time by its own thread.

    The thread plans each call and starts the next as soon as one ends (ONNX Runtime releases the GIL, so requests
    keep arriving meanwhile); the event loop only admits requests and is woken when one is fully scored.
    """

    def __init__(self, scorer: Scorer, config: BatchConfig, cache_bytes: int, metrics: ReplicaMetrics | None = None):
        self.scorer = scorer
        self.config = config
        self.cache = ScoreCache(cache_bytes)
        self.metrics = metrics
        self.stats = {"calls": 0, "pairs_scored": 0, "pairs_dropped": 0, "cache_hits": 0, "cache_misses": 0}
        self._jobs: list[Job] = []
        self._tokens_per_s = 0.0  # cost tokens scored per second, recent calls weighted most
        self._splits_seen = 0  # the scorer's memory_splits already counted
        self._small_seen = -float("inf")  # when the last request that fits one call arrived
        self._lock = threading.Condition()
        threading.Thread(target=self._work, name="rerank-scheduler", daemon=True).start()

    def configure(self, config: BatchConfig) -> None:
        """Apply new batching settings from the next call on."""
        self.config = config

    async def score(self, prepared: Prepared, timeout_s: float | None = None) -> Scored:
        """Scores of one request, answered when its last pair is scored (or at once from the cache).

        Cancelled (its client gone) or past `timeout_s` (DeadlineExceeded), its pairs still queued are dropped.
        """
        keys = self.scorer.cache_keys(prepared) if self.cache.max_bytes else None
        loop = asyncio.get_running_loop()
        with self._lock:
            job = self._admit(prepared, keys, loop.create_future())
            if job.unscored:
                self._jobs.append(job)
                self._lock.notify()
        if job.unscored:
            try:
                await asyncio.wait_for(job.future, timeout_s)
            except TimeoutError:
                self._drop(job, "deadline")
                raise DeadlineExceeded(timeout_s) from None
            except asyncio.CancelledError:
                self._drop(job, "cancelled")
                raise
        self._observe("request_seconds", time.perf_counter() - job.admitted, size=size_label(len(prepared)))
        output = ScoreOutput(job.scores, prepared.tokens, prepared.truncated, job.logits)
        return Scored(output, max(len(job.sharers), 1), job.cached)

    def _admit(self, prepared: Prepared, keys: list[bytes] | None, future: asyncio.Future) -> Job:
        n = len(prepared)
        now = time.perf_counter()
        scores, logits = np.zeros(n, np.float32), np.zeros(n, np.float32)
        pending = []
        for row in range(n):
            hit = self.cache.get(keys[row]) if keys is not None else None
            if hit is None:
                pending.append(row)
            else:
                scores[row], logits[row] = hit
        pending.sort(key=lambda row: -int(prepared.costs[row]))
        cached = n - len(pending)
        self.stats["cache_hits"] += cached
        if keys is not None:
            self.stats["cache_misses"] += len(pending)
            self._observe("cache_hits", cached)
            self._observe("cache_misses", len(pending))
        cost = int(prepared.costs[pending].sum())
        if pending and self._is_small(cost):
            self._small_seen = now
        return Job(prepared, keys, future, now, scores, logits, pending, cost, len(pending), now, cached)

    def _drop(self, job: Job, reason: str) -> None:
        """Take a job nobody waits for out of the queue; its pairs in a call finish, the rest are never scored."""
        with self._lock:
            if job in self._jobs:
                self._jobs.remove(job)
            dropped = len(job.pending)
            job.pending, job.partial = [], None
            self.stats["pairs_dropped"] += dropped
        self._observe("pairs_dropped", dropped, reason=reason)

    def _next_step(self) -> tuple[list[Take], list[Prepared]]:
        """Wait for queued pairs, then take the next call's work out of the queue: its takes, and the part of each
        job's request it scores."""
        with self._lock:
            if not any(job.pending for job in self._jobs):
                while not any(job.pending for job in self._jobs):
                    self._lock.wait()
                if self.config.batch_wait_timeout_s:  # let requests arriving together share the first call
                    self._lock.wait(self.config.batch_wait_timeout_s)
            now = time.perf_counter()
            step = plan_step(self._jobs, now, self._limits(), self.config.max_batch_size, self.config.aging_s)
            members = {id(take.job) for take in step}
            parts = []
            for take in step:
                job = take.job
                if job.started is None:
                    job.started = now
                    self._observe("queue_seconds", now - job.admitted)
                parts.append(job.take(take.rows, now))
                job.sharers |= members
            return step, parts

    def _limits(self) -> Limits:
        """The next call's size: the scorer's budget, or what it scores in `call_target_s` if that is more. While
        small requests arrive (`interactive_window_s`), a model slower than that keeps bulk calls to `call_target_s`
        of work: computing longer pairs ahead in pieces of at least its `chunk_tokens`, or, on a scorer that scores
        pairs whole (a GPU graph), in calls of whole pairs, a bulk request no longer taken whole; and a call that
        takes a small request whole is not topped up with bulk pairs, which would lengthen it."""
        budget, chunk = self.scorer.call_tokens, self.scorer.chunk_tokens
        if budget is None:
            return Limits(None, None)
        target = self._target_tokens()
        interactive = time.perf_counter() - self._small_seen < self.config.interactive_window_s
        if not interactive:
            return Limits(max(budget, target), max(budget, target))
        if chunk is None:  # small requests are seen only once the rate is known, so the short size is too
            short = self._whole_tokens() or budget
            return Limits(short, short, top_up=False)
        if target >= budget:
            return Limits(target, target, chunk, top_up=False)
        return Limits(budget, max(target, chunk), chunk, top_up=False)

    def _target_tokens(self) -> int:
        """Tokens the model scores in `call_target_s` at its recent rate (0 before its first call)."""
        return int(self._tokens_per_s * self.config.call_target_s)

    def _whole_tokens(self) -> int | None:
        """While small requests arrive, a request costing at most twice this goes in one call: the scorer's budget,
        or on one that scores pairs whole, the short call's size — `call_target_s` of work (the measured rate counts
        each call's fixed cost, so calls settle at about `call_target_s` long); None there before the rate is known,
        and for a remote service."""
        budget = self.scorer.call_tokens
        if budget is None or self.scorer.chunk_tokens is not None:
            return budget
        return max(self._target_tokens(), 1) if self._tokens_per_s else None

    def _is_small(self, cost: int) -> bool:
        """Whether a request of this cost is small: it fits one call while small requests arrive."""
        whole = self._whole_tokens()
        return whole is not None and cost <= 2 * whole

    def _work(self) -> None:
        """The scheduler thread: forever plan a call, score it, hand out the scores."""
        while True:
            step, parts = self._next_step()
            started = time.perf_counter()
            try:
                cuts = [(take, self._prefill(take)) for take in step if take.cut]
                scored = [(take, part) for take, part in zip(step, parts) if take.rows]
                outputs = self.scorer.score_prepared([part for _, part in scored])
            except Exception as exc:  # the call failed for every request in it; the others go on
                log.exception("a model call failed for %d requests", len(step))
                self._count_splits()
                with self._lock:
                    for take in step:
                        self._finish(take.job, exc)
                continue
            self._count_splits()
            seconds = time.perf_counter() - started
            tokens = sum(int(part.costs.sum()) for part in parts) + sum(take.cut[1] for take in step if take.cut)
            rate = tokens / max(seconds, 1e-6)
            self._tokens_per_s = rate if not self._tokens_per_s else 0.8 * self._tokens_per_s + 0.2 * rate
            self._observe("call_seconds", seconds)
            self._observe("requests_per_call", len(step))
            with self._lock:
                self.stats["calls"] += 1
                now = time.perf_counter()
                for take, state in cuts:
                    if take.job in self._jobs:  # not dropped meanwhile
                        take.job.advanced(*take.cut, state, now)
                for (take, _), out in zip(scored, outputs):
                    self._deliver(take.job, take.rows, out)

    def _count_splits(self) -> None:
        """Count the calls the scorer split since the last look because the device's memory refused them whole."""
        splits = getattr(self.scorer, "memory_splits", 0)
        if splits > self._splits_seen:
            self._observe("calls_split", splits - self._splits_seen)
            self._splits_seen = splits

    def _prefill(self, take: Take) -> Any:
        """Compute a cut pair's tokens ahead, continuing its state when it is the job's partial pair."""
        pair, tokens = take.cut
        partial = take.job.partial
        state = partial.state if partial is not None and partial.pair == pair else None
        return self.scorer.prefill(take.job.prepared, pair, state, tokens)

    def _deliver(self, job: Job, rows: list[int], out: ScoreOutput) -> None:
        job.scores[rows], job.logits[rows] = out.scores, out.logits
        if job.keys is not None:
            for row, score, logit in zip(rows, out.scores, out.logits):
                self.cache.put(job.keys[row], float(score), float(logit))
        job.unscored -= len(rows)
        self.stats["pairs_scored"] += len(rows)
        if job.unscored == 0:
            self._finish(job, None)

    def _finish(self, job: Job, error: Exception | None) -> None:
        """Take the job out of the queue and wake its request on its event loop."""
        if job in self._jobs:
            self._jobs.remove(job)
        job.pending, job.partial = [], None
        job.future.get_loop().call_soon_threadsafe(_resolve, job.future, error)

    def _observe(self, metric: str, value: float, **tags: str) -> None:
        if self.metrics is not None:
            self.metrics.record(metric, value, tags)


def _resolve(future: asyncio.Future, error: Exception | None) -> None:
    if not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
