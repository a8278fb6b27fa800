"""The rerank dialects as thin adapters: each maps its request to one RankCall and the ranking back to its answer
(errors in each one's shape: serve/errors.py). The scoring itself is the deployment's, the same for all of them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from rerank_core.config import LongDocuments
from rerank_core.content import Side

from .documents import document_texts, side_of
from .errors import ApiError
from .schemas import (
    CompatibleRerankRequest,
    CompatibleRerankResponse,
    DashScopeOutput,
    DashScopeRequest,
    DashScopeResponse,
    InfinityRerankRequest,
    InfinityRerankResponse,
    MixedbreadRerankRequest,
    MixedbreadRerankResponse,
    MixedbreadResult,
    NimRanking,
    NimRankingRequest,
    NimRankingResponse,
    PlainResult,
    RankOptions,
    RerankRequest,
    RerankResponse,
    RerankResult,
    TeiRank,
    TeiRerankRequest,
    TokenUsage,
    Usage,
    VllmRerankRequest,
    VllmScoreData,
    VllmScoreRequest,
    VllmScoreResponse,
    VoyageRerankRequest,
    VoyageRerankResponse,
)

BATCH_HEADER = "x-batch-requests"  # how many requests (this one included) had pairs in this request's model calls
TRUNCATED_HEADER = "x-truncated-documents"  # how many of this request's documents were cut to max_length
CACHED_HEADER = "x-cached-documents"  # how many of this request's documents were answered from the score cache
TIMEOUT_HEADER = "x-request-timeout"  # request header: seconds after which to answer 504 and drop the rest


@dataclass(frozen=True)
class Refusal:
    """How a dialect refuses documents over the model's window instead of cutting them (TEI without `truncate`,
    NIM's `truncate: NONE`, Voyage's `truncation: false`)."""

    status: int
    field: str  # the documents' field, indexed in the error
    hint: str  # what to send to have them cut instead


@dataclass(frozen=True)
class RankCall:
    """What any dialect's request asks of the model."""

    pairs: list[tuple[Side, Side]]
    instruction: str | None = None
    top_n: int | None = None
    sort: bool = True  # best first; vLLM's score API keeps input order
    truncation: str = "right"  # which end of a document over the window is cut: "right" or "left"
    refuse_long: Refusal | None = None  # refuse documents over the window instead of cutting them
    long_documents: LongDocuments | None = None  # None: the model's
    score_threshold: float | None = None  # results below it are dropped, after top_n
    threshold_on_logits: bool = False  # the answer carries logits: the threshold is one
    max_tokens_per_doc: int | None = None  # each document cut after this many of its tokens first
    fields: tuple[str, str] = ("query", "documents")  # the request's names of the two sides, for errors
    model: str | None = None  # the model the request names (routing: serve/routing.py)


@dataclass(frozen=True)
class Ranked:
    """The answer to a RankCall: which pairs to return in which order, their scores and logits, tokens used."""

    order: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    tokens: int


def _call(body: RankOptions, pairs: list[tuple[str, str]], **options: Any) -> RankCall:
    """A RankCall with the options every dialect takes (model, instruction, score_threshold, max_tokens_per_doc)."""
    return RankCall(
        pairs,
        instruction=body.instruction,
        score_threshold=body.score_threshold,
        max_tokens_per_doc=body.max_tokens_per_doc,
        **{"model": getattr(body, "model", None), **options},
    )


def _pairs(query: Side, documents: list[Side]) -> list[tuple[Side, Side]]:
    return [(query, d) for d in documents]


def _sides(query: object, documents: list, fields: tuple[str, str] = ("query", "documents")) -> list[tuple[Side, Side]]:
    """Pairs of a query and documents each given as text or content (serve/documents.py: side_of)."""
    return _pairs(side_of(query, fields[0]), [side_of(d, f"{fields[1]}[{i}]") for i, d in enumerate(documents)])


def _as_sent(document: object) -> dict:
    """A document as an answer echoes it: {text} for a text, an object as it was sent."""
    if isinstance(document, str):
        return {"text": document}
    if isinstance(document, list):  # SGLang's content parts
        return {"content": document}
    return document if isinstance(document, dict) else document.model_dump()


# ---- Cohere / Jina / vLLM's rerank: POST /v1/rerank, /v2/rerank ----

COHERE_RANK_FIELDS = ("text",)  # what Cohere ranks an object document on when rank_fields is not given


def is_voyage(data: object) -> bool:
    """Whether a body sent to /v1/rerank is Voyage's: it has `top_k` or `truncation` (fields Cohere's lacks) and no
    `top_n`."""
    return isinstance(data, dict) and ("top_k" in data or "truncation" in data) and "top_n" not in data


def cohere_texts(body: RerankRequest) -> list[str]:
    """The documents' texts: objects on rank_fields (default `text`)."""
    return document_texts(body.documents, body.rank_fields or COHERE_RANK_FIELDS, "documents")


def cohere_call(body: RerankRequest, takes_images: bool = False) -> RankCall:
    """The RankCall of a Cohere-style request; on a model that reads images, an object's `image` is one (Jina's
    multimodal documents), elsewhere just a field."""
    documents = document_texts(body.documents, body.rank_fields or COHERE_RANK_FIELDS, "documents", takes_images)
    return _call(body, _pairs(body.query, documents), top_n=body.top_n, long_documents=body.long_documents)


def vllm_rerank_call(body: VllmRerankRequest) -> RankCall:
    """The RankCall of a vLLM or SGLang rerank request with content parts: one `{"content"}` object is one document."""
    documents = body.documents if isinstance(body.documents, list) else [body.documents]
    query = body.query if isinstance(body.query, str | list) else body.query.model_dump()
    items = [d if isinstance(d, str | list) else d.model_dump() for d in documents]
    return _call(body, _sides(query, items), top_n=body.top_n)


def vllm_rerank_answer(body: VllmRerankRequest, ranked: Ranked, model: str) -> RerankResponse:
    """vLLM's rerank answer (Cohere's shape): results best first, each document as it was sent."""
    documents = body.documents if isinstance(body.documents, list) else [body.documents]
    results = [
        RerankResult(
            index=int(i),
            relevance_score=float(ranked.scores[i]),
            document=_as_sent(documents[i]) if body.return_documents else None,
        )
        for i in ranked.order
    ]
    return RerankResponse(id=uuid.uuid4().hex, model=model, results=results, usage=Usage(total_tokens=ranked.tokens))


def cohere_answer(body: RerankRequest, ranked: Ranked, model: str) -> RerankResponse:
    """Cohere's answer: results best first, documents when asked for ({text}, or the object as it was sent)."""
    documents = [{"text": d} if isinstance(d, str) else d for d in body.documents]
    results = [
        RerankResult(
            index=int(i),
            relevance_score=float(ranked.scores[i]),
            document=documents[i] if body.return_documents else None,
        )
        for i in ranked.order
    ]
    return RerankResponse(id=uuid.uuid4().hex, model=model, results=results, usage=Usage(total_tokens=ranked.tokens))


def voyage_call(body: VoyageRerankRequest) -> RankCall:
    """The RankCall of a Voyage request: `truncation: false` refuses documents over the window."""
    refusal = None if body.truncation else Refusal(400, "documents", "send truncation: true to cut them")
    return _call(body, _pairs(body.query, body.documents), top_n=body.top_k, refuse_long=refusal)


def voyage_answer(body: VoyageRerankRequest, ranked: Ranked, model: str) -> VoyageRerankResponse:
    """Voyage's answer: {object: list, data: [{index, relevance_score, document?}], model, usage} best first."""
    data = [
        PlainResult(
            index=int(i),
            relevance_score=float(ranked.scores[i]),
            document=body.documents[i] if body.return_documents else None,
        )
        for i in ranked.order
    ]
    return VoyageRerankResponse(data=data, model=model, usage=Usage(total_tokens=ranked.tokens))


def _results(ranked: Ranked, documents: list, with_documents: bool) -> list[RerankResult]:
    return [
        RerankResult(
            index=int(i),
            relevance_score=float(ranked.scores[i]),
            document=_as_sent(documents[i]) if with_documents else None,
        )
        for i in ranked.order
    ]


# ---- DashScope TextReRank, native and OpenAI-compatible ----


def dashscope_call(body: DashScopeRequest) -> RankCall:
    """The RankCall of a native DashScope request (our options sit in `parameters`, beside `instruct`)."""
    params = body.parameters
    return _call(params, _sides(body.input.query, body.input.documents), top_n=params.top_n, model=body.model)


def dashscope_answer(body: DashScopeRequest, ranked: Ranked, model: str) -> DashScopeResponse:
    """DashScope's native answer: {output: {results}, usage, request_id, model}."""
    results = _results(ranked, body.input.documents, body.parameters.return_documents)
    return DashScopeResponse(
        output=DashScopeOutput(results=results),
        usage=Usage(total_tokens=ranked.tokens),
        request_id=uuid.uuid4().hex,
        model=model,
    )


def compatible_call(body: CompatibleRerankRequest) -> RankCall:
    """The RankCall of a DashScope OpenAI-compatible request."""
    return _call(body, _pairs(body.query, body.documents), top_n=body.top_n)


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
    """The RankCall of a TEI request: without `truncate`, over-long pairs are refused (413), as TEI does; TEI's
    truncation semantics hold whatever the model's long_documents mode."""
    refusal = None if body.truncate else Refusal(413, "texts", "send truncate: true to cut them")
    return _call(
        body,
        _pairs(body.query, body.texts),
        truncation=body.truncation_direction.lower(),
        refuse_long=refusal,
        long_documents=LongDocuments(),
        threshold_on_logits=body.raw_scores,
    )


def tei_answer(body: TeiRerankRequest, ranked: Ranked) -> list[TeiRank]:
    """TEI's answer: a list of {index, score, text?} best first; raw_scores gives the logit l_yes − l_no."""
    values = ranked.logits if body.raw_scores else ranked.scores
    return [
        TeiRank(index=int(i), score=float(values[i]), text=body.texts[i] if body.return_text else None)
        for i in ranked.order
    ]


def infinity_call(body: InfinityRerankRequest) -> RankCall:
    """The RankCall of an Infinity request."""
    return _call(body, _pairs(body.query, body.documents), top_n=body.top_n, threshold_on_logits=body.raw_scores)


def infinity_answer(body: InfinityRerankRequest, ranked: Ranked, model: str) -> InfinityRerankResponse:
    """Infinity's answer: results best first, documents as plain strings; raw_scores gives the logit."""
    values = ranked.logits if body.raw_scores else ranked.scores
    results = [
        PlainResult(
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
    first, second = _items(body.text_1, "text_1"), _items(body.text_2, "text_2")
    if len(first) == 1:
        first = first * len(second)
    elif len(first) != len(second):
        raise ApiError(400, "text_1", f"input lengths must be 1:1, 1:N or N:N; got {len(first)} and {len(second)}")
    for i, text in enumerate(first):
        if isinstance(text, str) and not text.strip():
            raise ApiError(400, f"text_1[{i}]" if isinstance(body.text_1, list) else "text_1", "must not be empty")
    return _call(body, list(zip(first, second)), sort=False, fields=("text_1", "text_2"))


def _items(value: object, field: str) -> list[Side]:
    """One side of a score request as a list: a text, texts, or one `{"content": [parts]}` item."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    return [side_of(value.model_dump(), field)]


def vllm_answer(ranked: Ranked, model: str) -> VllmScoreResponse:
    """vLLM's answer: one {index, object: score, score} per pair, in input order."""
    data = [VllmScoreData(index=int(i), score=float(ranked.scores[i])) for i in ranked.order]
    usage = TokenUsage(prompt_tokens=ranked.tokens, total_tokens=ranked.tokens, completion_tokens=0)
    return VllmScoreResponse(
        id=f"score-{uuid.uuid4().hex}", created=int(time.time()), model=model, data=data, usage=usage
    )


# ---- NVIDIA NIM: POST /v1/ranking ----


def nim_call(body: NimRankingRequest) -> RankCall:
    """The RankCall of a NIM request: `truncate: NONE` (NIM's default) refuses passages over the window."""
    refusal = Refusal(400, "passages", "send truncate: END to cut them") if body.truncate == "NONE" else None
    pairs = _pairs(body.query.text, [p.text for p in body.passages])
    return _call(body, pairs, refuse_long=refusal, threshold_on_logits=True)


def nim_answer(ranked: Ranked, model: str) -> NimRankingResponse:
    """NIM's answer: {rankings: [{index, logit}]} best first, the logit l_yes − l_no."""
    rankings = [NimRanking(index=int(i), logit=float(ranked.logits[i])) for i in ranked.order]
    return NimRankingResponse(rankings=rankings, model=model, usage=Usage(total_tokens=ranked.tokens))


# ---- Mixedbread: POST /v1/reranking ----


def mixedbread_call(body: MixedbreadRerankRequest) -> RankCall:
    """The RankCall of a Mixedbread request: objects ranked on rank_fields (default: every field)."""
    texts = document_texts(body.input, body.rank_fields, "input")
    return _call(body, _pairs(body.query, texts), top_n=body.top_k)


def mixedbread_answer(body: MixedbreadRerankRequest, ranked: Ranked, model: str) -> MixedbreadRerankResponse:
    """Mixedbread's answer: {data: [{index, score, input?}], model, usage, top_k, return_input} best first."""
    data = [
        MixedbreadResult(
            index=int(i), score=float(ranked.scores[i]), input=body.input[i] if body.return_input else None
        )
        for i in ranked.order
    ]
    return MixedbreadRerankResponse(
        usage=TokenUsage(prompt_tokens=ranked.tokens, total_tokens=ranked.tokens, completion_tokens=0),
        model=model,
        data=data,
        top_k=body.top_k or len(body.input),
        return_input=body.return_input,
    )
