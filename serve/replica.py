"""The model deployment: one Scorer per replica, whose scheduler cuts the pairs of concurrent requests into shared model
calls; the gateway (serve/app.py) hands it each request's RankCall through a deployment handle."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from rerank_core.api import load_reranker
from rerank_core.content import named_by_input
from rerank_core.errors import ConfigError, DeviceMemoryError, InvalidInputError
from rerank_core.scorer import Prepared, top_indices

from . import protocols as p
from .config import DEPLOYMENT, BatchConfig, ServeAppConfig
from .errors import ApiError
from .image_budget import ImageBudget
from .metrics import ReplicaMetrics
from .scheduler import DeadlineExceeded, Scheduler

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class Reply:
    """A replica's answer to one RankCall: the ranking, and what the response headers say of how it was made."""

    ranked: p.Ranked
    model: str
    shared_with: int  # requests with pairs in this request's model calls, this one included
    cached: int  # documents answered from the score cache
    truncated: int  # documents cut to max_length


@serve.deployment(**DEPLOYMENT, ray_actor_options={"num_cpus": 1})
class Reranker:
    """One replica: loads the model once; its scheduler scores the pairs of concurrent requests of every dialect."""

    def __init__(self, args: dict[str, Any], name: str | None = None):
        self.cfg = ServeAppConfig.from_dict(args, source="serve application args")
        served = self.cfg.served()
        served = next((s for s in served if s.name == name), None) if name else served[0]
        if served is None:
            raise ConfigError(f"no served model is named {name!r}")
        # A replica takes images as the gateway passes them (bytes, URLs within the model's policy), never paths.
        model = served.model.model_copy(
            update={"images": served.model.images.model_copy(update={"allow_paths": False})}
        )
        self.scorer = load_reranker(model).scorer
        self.model_name = served.name
        self.max_tokens = self.cfg.max_tokens(self.scorer.device, served)
        self.metrics = ReplicaMetrics(self.model_name)
        self.scheduler = Scheduler(self.scorer, self.cfg.batch, self.cfg.score_cache_bytes, self.metrics)
        self.image_budget = ImageBudget(self.cfg.images.max_image_tokens_in_flight)
        self.reconfigure(self.cfg.batch.model_dump())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply Serve's user_config live: requests per call, wait time, call size, aging."""
        batch = BatchConfig.from_dict(user_config, source="user_config")
        self.scheduler.configure(batch)
        log.info(
            "%s scheduler: max_batch_size=%d wait=%.4fs call_target=%.3fs interactive_window=%.1fs aging=%.1fs "
            "call_tokens=%s chunk_tokens=%s",
            self.model_name,
            batch.max_batch_size,
            batch.batch_wait_timeout_s,
            batch.call_target_s,
            batch.interactive_window_s,
            batch.aging_s,
            self.scorer.call_tokens,
            self.scorer.chunk_tokens,
        )

    def info(self) -> dict[str, str | bool]:
        """The model this replica serves, the device it runs on, whether it reads images."""
        return {"model": self.model_name, "device": self.scorer.device, "images": self.scorer.takes_images}

    async def rank(self, call: p.RankCall, timeout_s: float | None) -> Reply:
        """The one scoring path of every dialect: token limits (images' from their headers, before any is decoded),
        the replica's image budget, tokenization, the scheduler, ranking, metrics."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            image_tokens = await asyncio.to_thread(self._image_tokens, call) if self.scorer.takes_images else 0
            if image_tokens:
                await self._wait_for_images(image_tokens, timeout_s)
            try:
                left = None if deadline is None else max(deadline - time.monotonic(), 1e-3)
                return await self._rank(call, left)
            finally:
                self.image_budget.release(image_tokens)
        except InvalidInputError as exc:  # named as the request names its sides: documents[3].image[0]
            raise named_by_input(exc, 1, len(call.pairs), call.fields) from None

    async def _wait_for_images(self, tokens: int, timeout_s: float | None) -> None:
        """Hold `tokens` of the image budget, waiting for earlier requests' images within the deadline."""
        try:
            if await asyncio.wait_for(self.image_budget.acquire(tokens), timeout_s):
                self.metrics.image_budget_waits.inc()
        except TimeoutError:
            raise ApiError(504, p.TIMEOUT_HEADER, f"not scored within {timeout_s:.3g} s (waiting for images)") from None

    async def _rank(self, call: p.RankCall, timeout_s: float | None) -> Reply:
        """rank's work once the request's images may be decoded."""
        prepared = await asyncio.to_thread(self._prepare, call)
        cut = int(np.count_nonzero(prepared.truncated))
        if call.refuse_long is not None and cut:
            raise self._refusal(call.refuse_long, prepared, cut)
        if prepared.total_tokens > self.max_tokens:
            raise ApiError(
                400,
                "documents",
                f"the request has {prepared.total_tokens} tokens after truncation, "
                f"over max_tokens_per_request={self.max_tokens}",
            )
        try:
            scored = await self.scheduler.score(prepared, timeout_s)
        except DeadlineExceeded as exc:
            raise ApiError(504, p.TIMEOUT_HEADER, str(exc)) from None
        except DeviceMemoryError as exc:  # retryable: the replica goes on serving
            self.metrics.device_memory_errors.inc()
            raise ApiError(503, None, str(exc)) from None
        out = scored.output
        self.metrics.pairs.inc(len(call.pairs))
        self.metrics.tokens.inc(out.total_tokens)
        if cut:
            self.metrics.truncated.inc(cut)
        order = top_indices(out.scores, call.top_n) if call.sort else np.arange(len(call.pairs))
        if call.score_threshold is not None:
            values = out.logits if call.threshold_on_logits else out.scores
            order = order[values[order] >= call.score_threshold]
        ranked = p.Ranked(order=order, scores=out.scores, logits=out.logits, tokens=out.total_tokens)
        return Reply(ranked, self.model_name, scored.shared_with, scored.cached, cut)

    def _image_tokens(self, call: p.RankCall) -> int:
        """The tokens of the call's images the image budget holds for it — read from their headers, a URL's counted
        as the most an image can take until it is fetched — once those headers tell fit the request's limit."""
        held = self.scorer.image_tokens(call.pairs, at_most=True)
        # What the headers tell is at most `held`: read them again only when the limit may be passed.
        told = self.scorer.image_tokens(call.pairs) if held > self.max_tokens else held
        if told > self.max_tokens:
            raise ApiError(
                400,
                call.fields[1],
                f"the request's images take {told} tokens, over max_tokens_per_request={self.max_tokens}",
            )
        return held

    def _prepare(self, call: p.RankCall) -> Prepared:
        """The call's pairs tokenized, their images decoded and encoded ahead."""
        prepared = self.scorer.prepare(
            call.pairs,
            instruction=call.instruction,
            truncation=call.truncation,
            long_documents=call.long_documents,
            max_tokens_per_doc=call.max_tokens_per_doc,
        )
        try:  # images encoded here, beside the model calls: a small request never waits behind a vision encoder
            self.scorer.precompute(prepared)
        except Exception as exc:  # the model calls encode what is missing, and report their own errors
            log.warning("encoding ahead failed (%s: %s); left to the model calls", type(exc).__name__, exc)
        return self.scorer.with_pending_work(prepared)

    def _refusal(self, refusal: p.Refusal, prepared: Prepared, cut: int) -> ApiError:
        """The error naming the first document over the window, its tokens and the limit."""
        first = int(np.flatnonzero(prepared.truncated)[0])
        tokens = int(prepared.tokens[first] + prepared.truncated[first])
        limit = getattr(getattr(self.scorer, "tokenizer", None), "max_length", "max_length")
        return ApiError(
            refusal.status,
            f"{refusal.field}[{first}]",
            f"{tokens} tokens with the query and prompt, over the model's {limit}"
            f" ({cut} of the request's documents are); {refusal.hint}",
        )
