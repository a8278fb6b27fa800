"""The rerank dialects as thin adapters: each maps its request to one RankCall and the ranking back to its answer,
and renders errors in its own shape. The scoring itself is the deployment's, the same for all of them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rerank_core.config import LongDocuments

from .schemas import (
    CompatibleRerankRequest,
    CompatibleRerankResponse,
    DashScopeOutput,
    DashScopeRequest,
    DashScopeResponse,
    InfinityRerankRequest,
    InfinityRerankResponse,
    InfinityRerankResult,
    RerankRequest,
    RerankResponse,
    RerankResult,
    TeiRank,
    TeiRerankRequest,
    TextDocument,
    TokenUsage,
    Usage,
    VllmScoreData,
    VllmScoreRequest,
    VllmScoreResponse,
)

COHERE_ROUTES = ("/v1/rerank", "/v2/rerank")
DASHSCOPE_ROUTE = "/api/v1/services/rerank/text-rerank/text-rerank"
COMPATIBLE_ROUTE = "/compatible-api/v1/reranks"
TEI_ROUTE = "/rerank"  # Infinity's dialect too, told apart by the body
SCORE_ROUTES = ("/score", "/v1/score")


BATCH_HEADER = "x-batch-requests"  # how many requests (this one included) had pairs in this request's model calls
TRUNCATED_HEADER = "x-truncated-documents"  # how many of this request's documents were cut to max_length
CACHED_HEADER = "x-cached-documents"  # how many of this request's documents were answered from the score cache
TIMEOUT_HEADER = "x-request-timeout"  # request header: seconds after which to answer 504 and drop the rest


class ApiError(Exception):
    """An error answered to the client: HTTP status, the field at fault, and a message naming the limit."""

    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def __reduce__(self):  # pickled with its arguments: a model replica's error reaches the gateway as it was raised
        return type(self), (self.status, self.field, self.message)


@dataclass(frozen=True)
class RankCall:
    """What any dialect's request asks of the model."""

    pairs: list[tuple[str, str]]
    instruction: str | None = None
    top_n: int | None = None
    sort: bool = True  # best first; vLLM's score API keeps input order
    truncation: str = "right"  # "right", "left", or "error": refuse over-long pairs (TEI without `truncate`)
    long_documents: LongDocuments | None = None  # None: the model's


@dataclass(frozen=True)
class Ranked:
    """The answer to a RankCall: which pairs to return in which order, their scores and logits, tokens used."""

    order: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    tokens: int


# ---- errors, one shape per dialect ----


def _text(field: str | None, message: str) -> str:
    return f"{field}: {message}" if field else message


_DASHSCOPE_CODES = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "InvalidParameter",
    429: "Throttling",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "RequestTimeOut",
}
_OPENAI_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    413: "BadRequestError",
    429: "RateLimitError",
    502: "InternalServerError",
    503: "ServiceUnavailableError",
    504: "TimeoutError",
}
_COMPATIBLE_CODES = {
    400: "invalid_parameter_error",
    401: "invalid_api_key",
    413: "invalid_parameter_error",
    429: "throttling",
    503: "service_unavailable",
    504: "request_timeout",
}
_TEI_TYPES = {401: "unauthorized", 413: "validation", 422: "validation", 429: "overloaded", 503: "overloaded"}


def cohere_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """Cohere/Jina style: {message, field}."""
    return status, {"message": _text(field, message), "field": field}


def dashscope_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """DashScope's native style: {code, message, request_id}."""
    code = _DASHSCOPE_CODES.get(status, "InternalError")
    return status, {"code": code, "message": _text(field, message), "request_id": uuid.uuid4().hex}


def openai_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """vLLM's and Infinity's style: {error: {message, type, param, code}}."""
    kind = _OPENAI_TYPES.get(status, "InternalServerError")
    return status, {"error": {"message": _text(field, message), "type": kind, "param": field, "code": status}}


def compatible_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """DashScope's OpenAI-compatible style: {error: {message, type, param, code}, request_id}."""
    error = {
        "message": _text(field, message),
        "type": "invalid_request_error",
        "param": field,
        "code": _COMPATIBLE_CODES.get(status, "internal_error"),
    }
    return status, {"error": error, "request_id": uuid.uuid4().hex}


def tei_error(status: int, field: str | None, message: str) -> tuple[int, dict]:
    """Text Embeddings Inference's style: {error, error_type}; input it cannot take is a 422."""
    status = 422 if status == 400 else status
    return status, {"error": _text(field, message), "error_type": _TEI_TYPES.get(status, "backend")}


ErrorStyle = Callable[[int, "str | None", str], "tuple[int, dict]"]
_ROUTE_STYLES: dict[str, ErrorStyle] = {
    **dict.fromkeys(COHERE_ROUTES, cohere_error),
    DASHSCOPE_ROUTE: dashscope_error,
    COMPATIBLE_ROUTE: compatible_error,
    TEI_ROUTE: tei_error,
    **dict.fromkeys(SCORE_ROUTES, openai_error),
}


def error_style(path: str) -> ErrorStyle:
    """The error shape of the route `path` ends with (longest match; Cohere's for unknown paths)."""
    for route in sorted(_ROUTE_STYLES, key=len, reverse=True):
        if path.endswith(route):
            return _ROUTE_STYLES[route]
    return cohere_error


# ---- Cohere / Jina / vLLM's rerank: POST /v1/rerank, /v2/rerank ----


def cohere_call(body: RerankRequest) -> RankCall:
    """The RankCall of a Cohere-style request."""
    return RankCall(
        [(body.query, d) for d in body.texts()], body.instruction, body.top_n, long_documents=body.long_documents
    )


def cohere_answer(body: RerankRequest, ranked: Ranked, model: str) -> RerankResponse:
    """Cohere's answer: results best first, documents as {text} objects when asked for."""
    texts = body.texts()
    return RerankResponse(
        id=uuid.uuid4().hex,
        model=model,
        results=_results(ranked, texts, body.return_documents),
        usage=Usage(total_tokens=ranked.tokens),
    )


def _results(ranked: Ranked, texts: list[str], with_documents: bool) -> list[RerankResult]:
    return [
        RerankResult(
            index=int(i),
            relevance_score=float(ranked.scores[i]),
            document=TextDocument(text=texts[i]) if with_documents else None,
        )
        for i in ranked.order
    ]


# ---- DashScope TextReRank, native and OpenAI-compatible ----


def dashscope_call(body: DashScopeRequest) -> RankCall:
    """The RankCall of a native DashScope request."""
    params = body.parameters
    return RankCall([(body.input.query, d) for d in body.input.documents], params.instruct, params.top_n)


def dashscope_answer(body: DashScopeRequest, ranked: Ranked) -> DashScopeResponse:
    """DashScope's native answer: {output: {results}, usage, request_id}."""
    results = _results(ranked, body.input.documents, body.parameters.return_documents)
    return DashScopeResponse(
        output=DashScopeOutput(results=results), usage=Usage(total_tokens=ranked.tokens), request_id=uuid.uuid4().hex
    )


def compatible_call(body: CompatibleRerankRequest) -> RankCall:
    """The RankCall of a DashScope OpenAI-compatible request."""
    return RankCall([(body.query, d) for d in body.documents], body.instruct, body.top_n)


def compatible_answer(body: CompatibleRerankRequest, ranked: Ranked, model: str) -> CompatibleRerankResponse:
    """DashScope's OpenAI-compatible answer: {id, object: list, model, results, usage}."""
    return CompatibleRerankResponse(
        id=uuid.uuid4().hex,
        model=model,
        results=_results(ranked, body.documents, body.return_documents),
        usage=Usage(total_tokens=ranked.tokens),
    )


# ---- Text Embeddings Inference and Infinity: POST /rerank ----


def tei_call(body: TeiRerankRequest) -> RankCall:
    """The RankCall of a TEI request: without `truncate`, over-long pairs are refused, as TEI does; TEI's truncation
    semantics hold whatever the model's long_documents mode."""
    truncation = body.truncation_direction.lower() if body.truncate else "error"
    return RankCall([(body.query, t) for t in body.texts], truncation=truncation, long_documents=LongDocuments())


def tei_answer(body: TeiRerankRequest, ranked: Ranked) -> list[TeiRank]:
    """TEI's answer: a list of {index, score, text?} best first; raw_scores gives the logit l_yes − l_no."""
    values = ranked.logits if body.raw_scores else ranked.scores
    return [
        TeiRank(index=int(i), score=float(values[i]), text=body.texts[i] if body.return_text else None)
        for i in ranked.order
    ]


def infinity_call(body: InfinityRerankRequest) -> RankCall:
    """The RankCall of an Infinity request."""
    return RankCall([(body.query, d) for d in body.documents], top_n=body.top_n)


def infinity_answer(body: InfinityRerankRequest, ranked: Ranked, model: str) -> InfinityRerankResponse:
    """Infinity's answer: results best first, documents as plain strings; raw_scores gives the logit."""
    values = ranked.logits if body.raw_scores else ranked.scores
    results = [
        InfinityRerankResult(
            relevance_score=float(values[i]),
            index=int(i),
            document=body.documents[i] if body.return_documents else None,
        )
        for i in ranked.order
    ]
    return InfinityRerankResponse(
        results=results,
        model=model,
        id=uuid.uuid4().hex,
        created=int(time.time()),
        usage=TokenUsage(prompt_tokens=ranked.tokens, total_tokens=ranked.tokens),
    )


# ---- vLLM's score API: POST /score, /v1/score ----


def vllm_call(body: VllmScoreRequest) -> RankCall:
    """Pairs as vLLM forms them: one text_1 against every text_2 (1:1, 1:N), or item by item (N:N); input order."""
    first = [body.text_1] if isinstance(body.text_1, str) else body.text_1
    second = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    if len(first) == 1:
        first = first * len(second)
    elif len(first) != len(second):
        raise ApiError(400, "text_1", f"input lengths must be 1:1, 1:N or N:N; got {len(first)} and {len(second)}")
    for i, text in enumerate(first):
        if not text.strip():
            raise ApiError(400, f"text_1[{i}]" if isinstance(body.text_1, list) else "text_1", "must not be empty")
    return RankCall(list(zip(first, second)), sort=False)


def vllm_answer(ranked: Ranked, model: str) -> VllmScoreResponse:
    """vLLM's answer: one {index, object: score, score} per pair, in input order."""
    data = [VllmScoreData(index=int(i), score=float(ranked.scores[i])) for i in ranked.order]
    usage = TokenUsage(prompt_tokens=ranked.tokens, total_tokens=ranked.tokens, completion_tokens=0)
    return VllmScoreResponse(
        id=f"score-{uuid.uuid4().hex}", created=int(time.time()), model=model, data=data, usage=usage
    )
