"""Ray Serve deployment: one Scorer per replica, whose scheduler cuts concurrent requests into shared model calls, every
rerank dialect (serve/protocols.py) answered through the same `_rank` path."""

# No `from __future__ import annotations` here: Serve's ingress must see the route annotations as real classes,
# or FastAPI takes the request bodies for query parameters.
import asyncio
import hmac
import json
import logging
import os
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from rerank_core.config import load_reranker
from rerank_core.errors import ConfigError, InvalidInputError, UpstreamError
from rerank_core.scorer import top_indices

from . import protocols as p
from .body_limit import BodyLimit
from .config import DEPLOYMENT, BatchConfig, ServeAppConfig
from .metrics import CountRequests, ReplicaMetrics
from .scheduler import DeadlineExceeded, Scheduler
from .schemas import (
    CompatibleRerankRequest,
    CompatibleRerankResponse,
    DashScopeRequest,
    DashScopeResponse,
    InfinityRerankRequest,
    InfinityRerankResponse,
    RerankRequest,
    RerankResponse,
    TeiRank,
    TeiRerankRequest,
    VllmScoreRequest,
    VllmScoreResponse,
)

log = logging.getLogger("ray.serve")

BATCH_HEADER = "x-batch-requests"  # how many requests (this one included) had pairs in this request's model calls
TRUNCATED_HEADER = "x-truncated-documents"  # how many of this request's documents were cut to max_length
CACHED_HEADER = "x-cached-documents"  # how many of this request's documents were answered from the score cache
TIMEOUT_HEADER = "x-request-timeout"  # request header: seconds after which to answer 504 and drop the rest

app = FastAPI(
    title="qwen-rerank",
    description="Qwen3-Reranker endpoint speaking Cohere/Jina (/v1/rerank, /v2/rerank), DashScope TextReRank (native "
    "and OpenAI-compatible), Text Embeddings Inference and Infinity (/rerank), and vLLM's score API (/score).",
)
app.add_middleware(BodyLimit, max_body_bytes=lambda: getattr(app.state, "max_body_bytes", None))
app.add_middleware(CountRequests, metrics=lambda: getattr(app.state, "metrics", None))


def _error_response(request: Request, error: p.ApiError) -> JSONResponse:
    style = getattr(request.state, "error_style", None) or p.error_style(request.url.path)
    status, body = style(error.status, error.field, error.message)
    return JSONResponse(status_code=status, content=body)


def _location(loc: tuple) -> str:
    out = ""
    for part in (x for x in loc if x != "body"):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _first_error(errors: list[dict]) -> p.ApiError:
    first = errors[0]
    if first.get("type") == "json_invalid":  # loc is a byte position here, not a field
        return p.ApiError(400, "body", f"not valid JSON ({first.get('ctx', {}).get('error', '')})")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return p.ApiError(400, _location(tuple(first.get("loc", ()))), message)


@app.exception_handler(p.ApiError)
async def _api_error(request: Request, exc: p.ApiError) -> JSONResponse:
    return _error_response(request, exc)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error_response(request, _first_error(exc.errors()))


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI answers an unreadable body (invalid UTF-8, nesting too deep for the JSON parser) this way.
    field = "body" if exc.status_code == 400 else None
    return _error_response(request, p.ApiError(exc.status_code, field, str(exc.detail)))


@app.exception_handler(InvalidInputError)
async def _invalid_input(request: Request, exc: InvalidInputError) -> JSONResponse:
    return _error_response(request, p.ApiError(400, exc.field, str(exc).removeprefix(f"{exc.field}: ")))


@app.exception_handler(UpstreamError)
async def _upstream_error(request: Request, exc: UpstreamError) -> JSONResponse:
    # A remote backend (DashScope) failed after its retries: say so, keep its status where it means overload.
    status = exc.status if exc.status in (429, 503) else 502
    return _error_response(request, p.ApiError(status, None, f"upstream reranker failed: {exc.code}: {exc.message}"))


def _parse(model: type[BaseModel], data: Any) -> Any:
    """Validate a body already read as JSON; a 400 naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc.errors()) from None


def _tei_or_infinity_schema() -> dict:
    schemas = [TeiRerankRequest.model_json_schema(), InfinityRerankRequest.model_json_schema()]
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": schemas}}}}}


@serve.deployment(**DEPLOYMENT, ray_actor_options={"num_cpus": 1})
@serve.ingress(app)
class RerankDeployment:
    """One replica: loads the model once; its scheduler scores the pairs of concurrent requests of every dialect."""

    def __init__(self, args: dict[str, Any]):
        self.cfg = ServeAppConfig.from_dict(args, source="serve application args")
        self._api_key = None
        if self.cfg.api_key_env:
            self._api_key = os.environ.get(self.cfg.api_key_env)
            if not self._api_key:
                raise ConfigError(f"api_key_env: environment variable {self.cfg.api_key_env} is not set in the replica")
        self.scorer = load_reranker(self.cfg.model).scorer
        self.model_name = self.scorer.model_name
        self.max_tokens = self.cfg.max_tokens(self.scorer.device)
        self.metrics = ReplicaMetrics()
        app.state.max_body_bytes = self.cfg.max_body_bytes
        app.state.metrics = self.metrics
        self.scheduler = Scheduler(self.scorer, self.cfg.batch, self.cfg.score_cache_bytes, self.metrics)
        self.reconfigure(self.cfg.batch.model_dump())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply Serve's user_config live: requests per call, wait time, call size, aging."""
        batch = BatchConfig.from_dict(user_config, source="user_config")
        self.scheduler.configure(batch)
        log.info(
            "scheduler: max_batch_size=%d wait=%.4fs call_target=%.3fs interactive_window=%.1fs aging=%.1fs "
            "call_tokens=%s chunk_tokens=%s",
            batch.max_batch_size,
            batch.batch_wait_timeout_s,
            batch.call_target_s,
            batch.interactive_window_s,
            batch.aging_s,
            self.scorer.call_tokens,
            self.scorer.chunk_tokens,
        )

    def _timeout(self, request: Request) -> float | None:
        """The request's deadline in seconds: the config's, shortened by an `x-request-timeout` header."""
        limits = [self.cfg.request_timeout_s] if self.cfg.request_timeout_s else []
        header = request.headers.get(TIMEOUT_HEADER)
        if header is not None:
            try:
                seconds = float(header)
            except ValueError:
                seconds = float("nan")
            if not 0 < seconds < float("inf"):
                raise p.ApiError(400, TIMEOUT_HEADER, f"must be a positive number of seconds, got {header[:40]!r}")
            limits.append(seconds)
        return min(limits) if limits else None

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key.encode()):
            raise p.ApiError(401, "authorization", "missing or invalid API key (Authorization: Bearer <key>)")

    async def _rank(self, call: p.RankCall, request: Request, response: Response) -> p.Ranked:
        """The one scoring path of every dialect: limits, tokenization, the scheduler, ranking, metrics."""
        self._authorize(request)
        if len(call.pairs) > self.cfg.max_documents:
            raise p.ApiError(
                400, "documents", f"{len(call.pairs)} documents exceeds max_documents={self.cfg.max_documents}"
            )
        truncation = "right" if call.truncation == "error" else call.truncation
        prepared = await asyncio.to_thread(
            self.scorer.prepare,
            call.pairs,
            instruction=call.instruction,
            truncation=truncation,
            long_documents=call.long_documents,
        )
        cut = int(np.count_nonzero(prepared.truncated))
        if call.truncation == "error" and cut:
            limit = getattr(getattr(self.scorer, "tokenizer", None), "max_length", "max_length")
            raise p.ApiError(
                413,
                "texts",
                f"{cut} texts are longer than the model's {limit} tokens and truncate is "
                "false; send truncate: true to cut them",
            )
        if prepared.total_tokens > self.max_tokens:
            raise p.ApiError(
                400,
                "documents",
                f"the request has {prepared.total_tokens} tokens after truncation, "
                f"over max_tokens_per_request={self.max_tokens}",
            )
        try:
            scored = await self.scheduler.score(prepared, self._timeout(request))
        except DeadlineExceeded as exc:
            raise p.ApiError(504, TIMEOUT_HEADER, str(exc)) from None
        out = scored.output
        response.headers[BATCH_HEADER] = str(scored.shared_with)
        response.headers[CACHED_HEADER] = str(scored.cached)
        response.headers[TRUNCATED_HEADER] = str(cut)
        self.metrics.pairs.inc(len(call.pairs))
        self.metrics.tokens.inc(out.total_tokens)
        if cut:
            self.metrics.truncated.inc(cut)
        order = top_indices(out.scores, call.top_n) if call.sort else np.arange(len(call.pairs))
        return p.Ranked(order=order, scores=out.scores, logits=out.logits, tokens=out.total_tokens)

    @app.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True)
    @app.post("/v2/rerank", response_model=RerankResponse, response_model_exclude_none=True)
    async def rerank(self, body: RerankRequest, request: Request, response: Response) -> RerankResponse:
        """Cohere / Jina / vLLM rerank: results sorted by relevance, best first."""
        return p.cohere_answer(body, await self._rank(p.cohere_call(body), request, response), self.model_name)

    @app.post(p.DASHSCOPE_ROUTE, response_model=DashScopeResponse, response_model_exclude_none=True)
    async def dashscope(self, body: DashScopeRequest, request: Request, response: Response) -> DashScopeResponse:
        """DashScope TextReRank protocol, so the dashscope SDK and zvec's QwenReRanker work unchanged."""
        return p.dashscope_answer(body, await self._rank(p.dashscope_call(body), request, response))

    @app.post(p.COMPATIBLE_ROUTE, response_model=CompatibleRerankResponse, response_model_exclude_none=True)
    async def compatible(self, body: CompatibleRerankRequest, request: Request, response: Response):
        """DashScope's OpenAI-compatible rerank (`/compatible-api/v1/reranks`)."""
        return p.compatible_answer(body, await self._rank(p.compatible_call(body), request, response), self.model_name)

    @app.post(
        p.TEI_ROUTE,
        response_model=list[TeiRank] | InfinityRerankResponse,
        response_model_exclude_none=True,
        openapi_extra=_tei_or_infinity_schema(),
    )
    async def rerank_tei_or_infinity(self, request: Request, response: Response):
        """Text Embeddings Inference's rerank when the body has `texts`, Infinity's when it has `documents`."""
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or nesting too deep to parse
            raise p.ApiError(400, "body", f"not valid JSON ({exc})") from None
        if isinstance(data, dict) and "documents" in data and "texts" not in data:
            request.state.error_style = p.openai_error
            body = _parse(InfinityRerankRequest, data)
            return p.infinity_answer(body, await self._rank(p.infinity_call(body), request, response), self.model_name)
        body = _parse(TeiRerankRequest, data)
        return p.tei_answer(body, await self._rank(p.tei_call(body), request, response))

    @app.post("/score", response_model=VllmScoreResponse, response_model_exclude_none=True)
    @app.post("/v1/score", response_model=VllmScoreResponse, response_model_exclude_none=True)
    async def score(self, body: VllmScoreRequest, request: Request, response: Response) -> VllmScoreResponse:
        """vLLM's score API: text_1 against text_2 (1:1, 1:N or N:N), scores in input order."""
        return p.vllm_answer(await self._rank(p.vllm_call(body), request, response), self.model_name)

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        """200 once the model is loaded (a replica only takes traffic after its constructor finished)."""
        return {"status": "ok", "model": self.model_name, "device": self.scorer.device}


def build_app(args: dict[str, Any], deployment_options: dict[str, Any] | None = None) -> serve.Application:
    """The Serve application for `args` (ServeAppConfig); the import_path target of configs/serve.yaml."""
    ServeAppConfig.from_dict(args, source="serve application args")  # fail here, not inside a replica
    deployment = RerankDeployment.options(**deployment_options) if deployment_options else RerankDeployment
    return deployment.bind(args)
