"""Ray Serve application: the gateway deployment speaks every rerank dialect (serve/protocols.py) over HTTP and hands
each request to a model replica (serve/replica.py) through a handle — retried on a live replica when the one scoring it
is lost with its node, answered 503 in the dialect's error shape when none is left."""

# No `from __future__ import annotations` here: Serve's ingress must see the route annotations as real classes,
# or FastAPI takes the request bodies for query parameters.
import asyncio
import hmac
import json
import logging
import os
import re
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from rerank_core.errors import ConfigError, ImageRefusedError, InvalidInputError, UpstreamError

from . import protocols as p
from .body_limit import BodyLimit
from .config import GATEWAY, REPLICA_LOSS_RETRIES, RETRY_AFTER_S, ServeAppConfig
from .documents import is_multimodal_part_list
from .errors import ApiError, detail_error, error_style, openai_error
from .images import has_images, take_images
from .metrics import CountRequests, GatewayMetrics
from .protocols import BATCH_HEADER, CACHED_HEADER, TIMEOUT_HEADER, TRUNCATED_HEADER
from .replica import Reply, Reranker
from .routes import (
    COHERE_ROUTES,
    COMPATIBLE_ROUTE,
    DASHSCOPE_ROUTE,
    MIXEDBREAD_ROUTE,
    MODELS_ROUTE,
    NIM_ROUTE,
    SCORE_ROUTES,
    TEI_ROUTE,
)
from .routing import ModelRouter, Route
from .schemas import (
    CompatibleRerankRequest,
    CompatibleRerankResponse,
    DashScopeRequest,
    DashScopeResponse,
    InfinityRerankRequest,
    InfinityRerankResponse,
    MixedbreadRerankRequest,
    MixedbreadRerankResponse,
    ModelCard,
    ModelList,
    NimRankingRequest,
    NimRankingResponse,
    RerankRequest,
    RerankResponse,
    TeiRank,
    TeiRerankRequest,
    VllmRerankRequest,
    VllmScoreRequest,
    VllmScoreResponse,
    VoyageRerankRequest,
    VoyageRerankResponse,
)

log = logging.getLogger("ray.serve")

app = FastAPI(
    title="qwen-rerank",
    description="Qwen3-Reranker endpoint speaking Cohere/Jina and Voyage (/v1/rerank, /v2/rerank), DashScope "
    "TextReRank (native and OpenAI-compatible), Text Embeddings Inference and Infinity (/rerank), vLLM's score API "
    "(/score), NVIDIA NIM (/v1/ranking) and Mixedbread (/v1/reranking).",
)
app.add_middleware(
    BodyLimit,
    max_body_bytes=lambda: getattr(app.state, "max_body_bytes", None),
    max_buffered_bytes=lambda: getattr(app.state, "max_buffered_body_bytes", None),
)
app.add_middleware(CountRequests, metrics=lambda: getattr(app.state, "metrics", None))


def _error_response(request: Request, error: ApiError) -> JSONResponse:
    style = getattr(request.state, "error_style", None) or error_style(request.url.path)
    status, body = style(error.status, error.field, error.message)
    headers = {"retry-after": str(RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(status_code=status, content=body, headers=headers)


# Pydantic's names of a union's branches in an error's location: types, not fields of the request.
_BRANCH = re.compile(r"^(str|int|float|bool|dict|list|none)$|^[A-Z]|[\[\],]")


def _location(loc: tuple) -> str:
    out = ""
    for part in (x for x in loc if x != "body" and not (isinstance(x, str) and _BRANCH.search(x))):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _first_error(errors: list[dict]) -> ApiError:
    first = errors[0]
    if first.get("type") == "json_invalid":  # loc is a byte position here, not a field
        return ApiError(400, "body", f"not valid JSON ({first.get('ctx', {}).get('error', '')})")
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return ApiError(400, _location(tuple(first.get("loc", ()))), message)


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _error_response(request, exc)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error_response(request, _first_error(exc.errors()))


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # FastAPI answers an unreadable body (invalid UTF-8, nesting too deep for the JSON parser) this way.
    field = "body" if exc.status_code == 400 else None
    return _error_response(request, ApiError(exc.status_code, field, str(exc.detail)))


@app.exception_handler(InvalidInputError)
async def _invalid_input(request: Request, exc: InvalidInputError) -> JSONResponse:
    return _error_response(request, ApiError(400, exc.field, str(exc).removeprefix(f"{exc.field}: ")))


@app.exception_handler(UpstreamError)
async def _upstream_error(request: Request, exc: UpstreamError) -> JSONResponse:
    # A remote backend (DashScope) failed after its retries: say so, keep its status where it means overload.
    status = exc.status if exc.status in (429, 503) else 502
    return _error_response(request, ApiError(status, None, f"upstream reranker failed: {exc.code}: {exc.message}"))


def _parse(model: type[BaseModel], data: Any) -> Any:
    """Validate a body already read as JSON; a 400 naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc.errors()) from None


async def _json(request: Request) -> Any:
    """The request body read as JSON; a 400 when it is not."""
    try:
        return json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or nesting too deep to parse
        raise ApiError(400, "body", f"not valid JSON ({exc})") from None


def _has_content_parts(data: Any) -> bool:
    """Whether a rerank body is vLLM's or SGLang's multimodal shape: its query, its documents or one document given
    as content parts."""
    if not isinstance(data, dict) or "texts" in data:
        return False
    documents = data.get("documents")
    items = documents if isinstance(documents, list) else [documents]
    return any(is_multimodal_part_list(side) for side in [data.get("query"), *items])


def _one_of(*models: type[BaseModel]) -> dict:
    """OpenAPI's request body of a route that takes any of `models`, told apart by their fields."""
    schemas = [m.model_json_schema() for m in models]
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": schemas}}}}}


@serve.deployment(**GATEWAY)
@serve.ingress(app)
class Gateway:
    """The HTTP face of the app: authorizes, parses each dialect, and asks a model replica for the ranking."""

    def __init__(self, rerankers: dict[str, DeploymentHandle], args: dict[str, Any]):
        self.cfg = ServeAppConfig.from_dict(args, source="serve application args")
        self._api_key = None
        if self.cfg.api_key_env:
            self._api_key = os.environ.get(self.cfg.api_key_env)
            if not self._api_key:
                raise ConfigError(f"api_key_env: environment variable {self.cfg.api_key_env} is not set in the gateway")
        self.router = ModelRouter(self.cfg, rerankers)
        app.state.max_body_bytes = self.cfg.max_body_bytes
        app.state.max_buffered_body_bytes = self.cfg.max_buffered_body_bytes
        self.metrics = app.state.metrics = GatewayMetrics()
        self._started = int(time.time())

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
                raise ApiError(400, TIMEOUT_HEADER, f"must be a positive number of seconds, got {header[:40]!r}")
            limits.append(seconds)
        return min(limits) if limits else None

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key.encode()):
            raise ApiError(401, "authorization", "missing or invalid API key (Authorization: Bearer <key>)")

    async def _rank(self, call: p.RankCall, request: Request, response: Response) -> Reply:
        """Every dialect's way to the model: authorization, the document limit (before anything is sent to a replica),
        the deadline, a replica's ranking, the headers."""
        self._authorize(request)
        route = self.router.pick(call.model)
        request.state.model = route.name  # for the request counter (serve/metrics.py)
        if len(call.pairs) > self.cfg.max_documents:
            raise ApiError(
                400, "documents", f"{len(call.pairs)} documents exceeds max_documents={self.cfg.max_documents}"
            )
        try:
            if has_images(call):
                call = await self._images_taken(route, call)
            reply = await self._ask_replica(route, call, self._timeout(request))
        except ImageRefusedError as exc:  # by the gateway's intake or the replica's
            self.metrics.image_refusals.inc(tags={"model": route.name, "reason": exc.reason})
            raise
        response.headers[BATCH_HEADER] = str(reply.shared_with)
        response.headers[CACHED_HEADER] = str(reply.cached)
        response.headers[TRUNCATED_HEADER] = str(reply.truncated)
        return reply

    @staticmethod
    async def _takes_images(route: Route) -> bool:
        """Whether the route's model reads images (asked of one of its replicas once)."""
        if route.takes_images is None:
            route.takes_images = bool((await route.handle.info.remote()).get("images"))
        return route.takes_images

    async def _images_taken(self, route: Route, call: p.RankCall) -> p.RankCall:
        """The call's images checked and as encoded bytes (serve/images.py), off the event loop; a 400 on a model
        that reads text only."""
        if not await self._takes_images(route):
            raise ApiError(400, call.fields[1], f"{route.name} takes text only, not images")
        return await asyncio.to_thread(take_images, call, route.image_policy, self.cfg.images)

    async def _ask_replica(self, route: Route, call: p.RankCall, timeout_s: float | None) -> Reply:
        """A model replica's Reply; asked again of a live replica when the one scoring it dies (scoring has no side
        effects), up to REPLICA_LOSS_RETRIES times within the deadline."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for attempt in range(1, REPLICA_LOSS_RETRIES + 2):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ApiError(504, TIMEOUT_HEADER, f"not scored within {timeout_s:.3g} s (a replica was lost)")
            try:
                return await route.handle.rank.remote(call, left)
            except RayTaskError as exc:  # the replica answered with an error of its own: the client's to read
                raise exc.cause from None
            except BackPressureError:
                message = f"every {route.name} replica's queue is full (max_queued_requests); retry"
                raise ApiError(503, None, message) from None
            except RayActorError as exc:  # the replica died before answering: its node was lost, or it was killed
                log.warning(
                    "a %s replica was lost while scoring a request (attempt %d): %s",
                    route.name,
                    attempt,
                    type(exc).__name__,
                )
                await asyncio.sleep(0.1 * attempt)  # the router drops a dead replica within moments
        lost = f"the {route.name} replica scoring this request was lost {REPLICA_LOSS_RETRIES + 1} times; retry"
        raise ApiError(503, None, lost)

    @app.post(
        COHERE_ROUTES[0],
        response_model=RerankResponse | VoyageRerankResponse,
        response_model_exclude_none=True,
        openapi_extra=_one_of(RerankRequest, VoyageRerankRequest, VllmRerankRequest),
    )
    @app.post(
        COHERE_ROUTES[1],
        response_model=RerankResponse | VoyageRerankResponse,
        response_model_exclude_none=True,
        openapi_extra=_one_of(RerankRequest, VoyageRerankRequest, VllmRerankRequest),
    )
    async def rerank(self, request: Request, response: Response):
        """Cohere / Jina / vLLM rerank, results best first; Voyage's when the body has `top_k` or `truncation` and
        no `top_n`."""
        data = await _json(request)
        if p.is_voyage(data):
            request.state.error_style = detail_error
            voyage = _parse(VoyageRerankRequest, data)
            reply = await self._rank(p.voyage_call(voyage), request, response)
            return p.voyage_answer(voyage, reply.ranked, reply.model)
        if _has_content_parts(data):
            return await self._vllm_rerank(data, request, response)
        body = _parse(RerankRequest, data)
        self._authorize(request)  # before the model's name is looked up: a 404 lists the served models
        takes_images = await self._takes_images(self.router.pick(body.model))
        reply = await self._rank(p.cohere_call(body, takes_images), request, response)
        return p.cohere_answer(body, reply.ranked, reply.model)

    async def _vllm_rerank(self, data: Any, request: Request, response: Response) -> RerankResponse:
        """vLLM's or SGLang's rerank with content parts (errors in the route's shape)."""
        body = _parse(VllmRerankRequest, data)
        reply = await self._rank(p.vllm_rerank_call(body), request, response)
        return p.vllm_rerank_answer(body, reply.ranked, reply.model)

    @app.post(DASHSCOPE_ROUTE, response_model=DashScopeResponse, response_model_exclude_none=True)
    async def dashscope(self, body: DashScopeRequest, request: Request, response: Response) -> DashScopeResponse:
        """DashScope TextReRank protocol, so the dashscope SDK and zvec's QwenReRanker work unchanged."""
        reply = await self._rank(p.dashscope_call(body), request, response)
        return p.dashscope_answer(body, reply.ranked, reply.model)

    @app.post(COMPATIBLE_ROUTE, response_model=CompatibleRerankResponse, response_model_exclude_none=True)
    async def compatible(self, body: CompatibleRerankRequest, request: Request, response: Response):
        """DashScope's OpenAI-compatible rerank (`/compatible-api/v1/reranks`)."""
        reply = await self._rank(p.compatible_call(body), request, response)
        return p.compatible_answer(body, reply.ranked, reply.model)

    @app.post(
        TEI_ROUTE,
        response_model=list[TeiRank] | InfinityRerankResponse | RerankResponse,
        response_model_exclude_none=True,
        openapi_extra=_one_of(TeiRerankRequest, InfinityRerankRequest, VllmRerankRequest),
    )
    async def rerank_tei_or_infinity(self, request: Request, response: Response):
        """Text Embeddings Inference's rerank when the body has `texts`; vLLM's or SGLang's when a side is content
        parts; else Infinity's (`documents` of texts)."""
        data = await _json(request)
        if _has_content_parts(data):
            request.state.error_style = openai_error  # {error: {message, …}} as Infinity's, not TEI's
            return await self._vllm_rerank(data, request, response)
        if isinstance(data, dict) and "documents" in data and "texts" not in data:
            request.state.error_style = openai_error
            body = _parse(InfinityRerankRequest, data)
            reply = await self._rank(p.infinity_call(body), request, response)
            return p.infinity_answer(body, reply.ranked, reply.model)
        body = _parse(TeiRerankRequest, data)
        reply = await self._rank(p.tei_call(body), request, response)
        return p.tei_answer(body, reply.ranked)

    @app.post(NIM_ROUTE, response_model=NimRankingResponse)
    async def nim(self, body: NimRankingRequest, request: Request, response: Response) -> NimRankingResponse:
        """NVIDIA NIM's reranking API: passages best first with their logits."""
        reply = await self._rank(p.nim_call(body), request, response)
        return p.nim_answer(reply.ranked, reply.model)

    @app.post(MIXEDBREAD_ROUTE, response_model=MixedbreadRerankResponse)
    async def mixedbread(self, body: MixedbreadRerankRequest, request: Request, response: Response):
        """Mixedbread's rerank: texts or objects (ranked on `rank_fields`), best first."""
        reply = await self._rank(p.mixedbread_call(body), request, response)
        return p.mixedbread_answer(body, reply.ranked, reply.model)

    @app.get(MODELS_ROUTE, response_model=ModelList)
    async def models(self, request: Request) -> ModelList:
        """The models this endpoint serves, the default first, then each alias (its `root` the model's name), as
        OpenAI lists models (NIM clients look here for the name to send)."""
        self._authorize(request)
        names = [(name, route.name) for route in self.router.routes for name in (route.name, *route.served.aliases)]
        return ModelList(data=[ModelCard(id=name, created=self._started, root=root) for name, root in names])

    @app.post(SCORE_ROUTES[0], response_model=VllmScoreResponse, response_model_exclude_none=True)
    @app.post(SCORE_ROUTES[1], response_model=VllmScoreResponse, response_model_exclude_none=True)
    async def score(self, body: VllmScoreRequest, request: Request, response: Response) -> VllmScoreResponse:
        """vLLM's score API: text_1 against text_2 (1:1, 1:N or N:N), scores in input order."""
        reply = await self._rank(p.vllm_call(body), request, response)
        return p.vllm_answer(reply.ranked, reply.model)

    @app.get("/health")
    async def health(self) -> dict[str, Any]:
        """200 once a replica of every model is loaded (a replica only takes traffic after its constructor
        finished): the default model's name, device and whether it reads images, and `models`, each one's."""
        infos = await asyncio.gather(*(route.handle.info.remote() for route in self.router.routes))
        return {
            "status": "ok",
            **infos[0],
            "models": {route.name: info for route, info in zip(self.router.routes, infos)},
        }


def build_app(
    args: dict[str, Any],
    deployment_options: dict[str, Any] | None = None,
    gateway_options: dict[str, Any] | None = None,
    *,
    replica: serve.Deployment = Reranker,
    options_by_deployment: dict[str, dict[str, Any]] | None = None,
) -> serve.Application:
    """The Serve application for `args` (ServeAppConfig): the gateway in front of one Reranker deployment per
    model; the import_path target of configs/serve.yaml. `deployment_options` go to every model's deployment, then
    `options_by_deployment` (by deployment name) over them. The gateway runs in the default model's runtime_env (where
    api_key_env is set) unless `gateway_options` give it one. `replica` replaces the model deployment from code only
    (the host-path bench's stand-in); a config cannot name it."""
    cfg = ServeAppConfig.from_dict(args, source="serve application args")  # fail here, not inside a replica
    args = cfg.resolved()  # every process reads the names decided here
    options = {
        served.name: {**(deployment_options or {}), **(options_by_deployment or {}).get(served.deployment, {})}
        for served in cfg.served()
    }
    rerankers = {
        served.name: replica.options(name=served.deployment, **options[served.name]).bind(args, served.name)
        for served in cfg.served()
    }
    gateway = {**GATEWAY, **(gateway_options or {})}
    actor = dict(gateway["ray_actor_options"])
    runtime_env = (options[cfg.served()[0].name].get("ray_actor_options") or {}).get("runtime_env")
    if runtime_env and "runtime_env" not in actor:
        actor["runtime_env"] = runtime_env
    gateway["ray_actor_options"] = actor
    return Gateway.options(**gateway).bind(rerankers, args)
