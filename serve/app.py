"""Ray Serve deployment: one Scorer per replica, concurrent requests merged by @serve.batch, two HTTP protocols."""

# No `from __future__ import annotations` here: Serve's ingress must see the route annotations as real classes,
# or FastAPI takes the request bodies for query parameters.
import asyncio
import hmac
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from rerank_core.config import BatchConfig, ServeAppConfig, load_reranker
from rerank_core.errors import ConfigError, UpstreamError
from rerank_core.schemas import (
    DashScopeError,
    DashScopeOutput,
    DashScopeRequest,
    DashScopeResponse,
    RerankRequest,
    RerankResponse,
    RerankResult,
    TextDocument,
    Usage,
)
from rerank_core.scorer import group_by_instruction, top_indices

log = logging.getLogger("ray.serve")

DASHSCOPE_ROUTE = "/api/v1/services/rerank/text-rerank/text-rerank"
BATCH_HEADER = "x-batch-requests"  # how many requests shared this request's model call
_DASHSCOPE_CODES = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "Throttling",
    502: "BadGateway",
    503: "ServiceUnavailable",
}

app = FastAPI(
    title="qwen-rerank",
    description="Qwen3-Reranker endpoint: Cohere/Jina `/v1/rerank` and DashScope TextReRank protocols.",
)


class ApiError(Exception):
    """An error answered to the client: HTTP status, the field at fault, and a message naming the limit."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def _error_response(request: Request, error: ApiError) -> JSONResponse:
    text = f"{error.field}: {error.message}" if error.field else error.message
    if request.url.path.endswith(DASHSCOPE_ROUTE):
        code = _DASHSCOPE_CODES.get(error.status, "InternalError")
        body = DashScopeError(code=code, message=text, request_id=uuid.uuid4().hex).model_dump()
    else:
        body = {"message": text, "field": error.field}
    return JSONResponse(status_code=error.status, content=body)


def _location(loc: tuple) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _error_response(request, exc)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":  # loc is a byte position here, not a field
        error = first.get("ctx", {}).get("error", "")
        return _error_response(request, ApiError(400, "body", f"not valid JSON ({error})"))
    field = _location(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return _error_response(request, ApiError(400, field, message))


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI answers an unreadable body (invalid UTF-8, nesting too deep for the JSON parser) this way.
    field = "body" if exc.status_code == 400 else None
    return _error_response(request, ApiError(exc.status_code, field, str(exc.detail)))


@app.exception_handler(UpstreamError)
async def _upstream_error(request: Request, exc: UpstreamError) -> JSONResponse:
    # A remote backend (DashScope) failed after its retries: say so, keep its status where it means overload.
    status = exc.status if exc.status in (429, 503) else 502
    return _error_response(request, ApiError(status, None, f"upstream reranker failed: {exc.code}: {exc.message}"))


@app.middleware("http")
async def _limit_body(request: Request, call_next):
    limit = getattr(request.app.state, "max_body_bytes", None)
    if limit and request.method == "POST":
        declared = request.headers.get("content-length")
        try:
            size = int(declared) if declared is not None else len(await request.body())
        except ValueError:
            return _error_response(request, ApiError(400, "content-length", "not an integer"))
        if size > limit:
            return _error_response(request, ApiError(400, "body", f"{size} bytes exceeds max_body_bytes={limit}"))
    return await call_next(request)


@dataclass(frozen=True)
class _Job:
    """One request's pairs and its instruction (None: the model's default)."""

    pairs: list[tuple[str, str]]
    instruction: str | None


@dataclass(frozen=True)
class _Scored:
    scores: np.ndarray
    tokens: int
    batch_requests: int


@serve.deployment(
    name="Reranker",
    max_ongoing_requests=64,
    max_queued_requests=256,
    ray_actor_options={"num_cpus": 1},
    health_check_period_s=10,
)
@serve.ingress(app)
class RerankDeployment:
    """One replica: loads the model once, scores merged batches of concurrent requests."""

    def __init__(self, args: dict[str, Any]):
        self.cfg = ServeAppConfig.from_dict(args, source="serve application args")
        self._api_key = None
        if self.cfg.api_key_env:
            self._api_key = os.environ.get(self.cfg.api_key_env)
            if not self._api_key:
                raise ConfigError(f"api_key_env: environment variable {self.cfg.api_key_env} is not set in the replica")
        self.reranker = load_reranker(self.cfg.model)
        self.model_name = self.reranker.scorer.model_name
        app.state.max_body_bytes = self.cfg.max_body_bytes
        self.reconfigure(self.cfg.batch.model_dump())

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply Serve's user_config live: batch size and wait time."""
        batch = BatchConfig.from_dict(user_config, source="user_config")
        self._score.set_max_batch_size(batch.max_batch_size)
        self._score.set_batch_wait_timeout_s(batch.batch_wait_timeout_s)
        log.info("batching: max_batch_size=%d wait=%.4fs", batch.max_batch_size, batch.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _score(self, jobs: list[_Job]) -> list[_Scored]:
        results: list[_Scored | None] = [None] * len(jobs)
        for instruction, members in group_by_instruction([job.instruction for job in jobs]).items():
            pairs = [pair for i in members for pair in jobs[i].pairs]
            # ONNX Runtime releases the GIL: scoring off the event loop lets the next batch gather meanwhile.
            out = await asyncio.to_thread(self.reranker.scorer.score_detailed, pairs, instruction=instruction)
            start = 0
            for i in members:
                end = start + len(jobs[i].pairs)
                results[i] = _Scored(out.scores[start:end], int(out.tokens[start:end].sum()), len(jobs))
                start = end
        return results

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key.encode()):
            raise ApiError(401, "authorization", "missing or invalid API key (Authorization: Bearer <key>)")

    async def _rank(
        self,
        query: str,
        documents: list[str],
        instruction: str | None,
        top_n: int | None,
        return_documents: bool,
        response: Response,
    ) -> tuple[list[RerankResult], int]:
        if len(documents) > self.cfg.max_documents:
            raise ApiError(400, "documents", f"{len(documents)} documents exceeds max_documents={self.cfg.max_documents}")
        scored = await self._score(_Job([(query, d) for d in documents], instruction))
        response.headers[BATCH_HEADER] = str(scored.batch_requests)
        results = [
            RerankResult(
                index=int(i),
                relevance_score=float(scored.scores[i]),
                document=TextDocument(text=documents[i]) if return_documents else None,
            )
            for i in top_indices(scored.scores, top_n)
        ]
        return results, scored.tokens

    @app.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True)
    @app.post("/v2/rerank", response_model=RerankResponse, response_model_exclude_none=True)
    async def rerank(self, body: RerankRequest, request: Request, response: Response) -> RerankResponse:
        """Cohere/Jina/vLLM rerank: results sorted by relevance, best first."""
        self._authorize(request)
        results, tokens = await self._rank(
            body.query, body.texts(), body.instruction, body.top_n, body.return_documents, response
        )
        return RerankResponse(id=uuid.uuid4().hex, model=self.model_name, results=results, usage=Usage(total_tokens=tokens))

    @app.post(DASHSCOPE_ROUTE, response_model=DashScopeResponse, response_model_exclude_none=True)
    async def dashscope(self, body: DashScopeRequest, request: Request, response: Response) -> DashScopeResponse:
        """DashScope TextReRank protocol, so the dashscope SDK and zvec's QwenReRanker work unchanged."""
        self._authorize(request)
        params = body.parameters
        results, tokens = await self._rank(
            body.input.query, body.input.documents, params.instruct, params.top_n, params.return_documents, response
        )
        return DashScopeResponse(
            output=DashScopeOutput(results=results), usage=Usage(total_tokens=tokens), request_id=uuid.uuid4().hex
        )

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        """200 once the model is loaded (a replica only takes traffic after its constructor finished)."""
        return {"status": "ok", "model": self.model_name, "device": getattr(self.reranker.scorer, "device", "remote")}

    def check_health(self) -> None:
        """Serve's replica health check: the scorer must still be there."""
        if self.reranker is None:
            raise RuntimeError("no scorer loaded")


def build_app(args: dict[str, Any], deployment_options: dict[str, Any] | None = None) -> serve.Application:
    """The Serve application for `args` (ServeAppConfig); the import_path target of configs/serve.yaml."""
    ServeAppConfig.from_dict(args, source="serve application args")  # fail here, not inside a replica
    deployment = RerankDeployment.options(**deployment_options) if deployment_options else RerankDeployment
    return deployment.bind(args)
