"""DashScope TextReRank backend (gte-rerank-v2, qwen3-rerank, and qwen3-vl-rerank with images) through the dashscope
SDK, behind the Scorer interface."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..content import Content, Image, Pair, estimate_tokens, text_only
from ..errors import InvalidInputError, UpstreamError
from ..retry import RETRYABLE_STATUS, RetryableError, parse_retry_after, with_retries
from ..scorer import Prepared, ScoreOutput, Scorer, score_per_instruction
from .dashscope_images import image_value

try:
    import dashscope
    from dashscope import TextReRank
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the DashScope backend needs the dashscope extra: pip install 'qwen-rerank[dashscope]'") from exc

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com/api/v1"
MAX_DOCUMENTS_PER_REQUEST = 500
MAX_TOKENS_PER_REQUEST = 30_000  # gte-rerank-v2's per-request cap
MAX_TOKENS_PER_DOCUMENT = 4_000  # the service truncates longer documents


@dataclass(frozen=True)
class Limits:
    """A model's documented caps per request: documents (image documents apart), tokens, tokens per document."""

    documents: int = MAX_DOCUMENTS_PER_REQUEST
    image_documents: int = 0
    tokens: int = MAX_TOKENS_PER_REQUEST
    document_tokens: int = MAX_TOKENS_PER_DOCUMENT


# The models that take images, and their caps (Model Studio's text rerank API page: 100 text, 40 image documents,
# 8,000 tokens per item, 120,000 per request).
MULTIMODAL = {"qwen3-vl-rerank": Limits(documents=100, image_documents=40, tokens=120_000, document_tokens=8_000)}


@dataclass(frozen=True)
class _Chunk:
    query: str | dict
    positions: list[int]  # indices into the caller's pairs
    documents: list[str | dict]


def plan_chunks(pairs: Sequence[Pair], limits: Limits, payload: Callable | None = None) -> list[_Chunk]:
    """Group pairs by query and cut each group into requests under the document, image and token caps;
    `payload(side, where)` makes what is sent for a side (None: the text as it is)."""
    payload = payload or (lambda side, where: side)
    groups: dict[object, list[int]] = {}
    for i, (query, _) in enumerate(pairs):
        groups.setdefault(query, []).append(i)
    chunks = []
    for query, positions in groups.items():
        sent_query = payload(query, f"pairs[{positions[0]}].query")
        query_tokens = estimate_tokens(query)
        requests, current, tokens, images = [], [], 0, 0
        for i in positions:
            document = pairs[i][1]
            cost = query_tokens + min(estimate_tokens(document), limits.document_tokens)
            image = int(isinstance(document, Content) and any(isinstance(p, Image) for p in document.parts))
            full = len(current) >= limits.documents or images + image > limits.image_documents
            if current and (full or tokens + cost > limits.tokens):
                requests.append(current)
                current, tokens, images = [], 0, 0
            current.append(i)
            tokens, images = tokens + cost, images + image
        requests.append(current)
        for request in requests:
            documents = [payload(pairs[j][1], f"pairs[{j}].document") for j in request]
            chunks.append(_Chunk(sent_query, request, documents))
    return chunks


class DashScopeScorer(Scorer):
    """Scores pairs with DashScope's hosted rerankers; splits, retries and merges so callers see one call.

    Example:
        >>> scorer = DashScopeScorer(model="gte-rerank-v2", api_key="sk-...")  # doctest: +SKIP
        >>> scorer.score([("what is ML?", "Machine learning is a subset of AI.")])  # doctest: +SKIP
        array([0.83], dtype=float32)
    """

    def __init__(
        self,
        model: str = "gte-rerank-v2",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        instruction: str | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        max_concurrency: int = 4,
        max_documents: int = MAX_DOCUMENTS_PER_REQUEST,
        max_tokens: int | None = None,
    ):
        key = api_key or os.environ.get("DASHSCOPE_API_KEY")
        if not key:
            raise ValueError("DashScope API key is required: pass api_key= or set DASHSCOPE_API_KEY")
        self._api_key = key
        self.model_name = model
        self.multimodal = self.takes_images = model in MULTIMODAL
        self.limits = MULTIMODAL.get(model, Limits())
        self.base_url = (base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.instruction = instruction
        self.timeout_s, self.max_retries, self.max_concurrency = timeout_s, max_retries, max_concurrency
        self.max_documents = min(max_documents, self.limits.documents)
        self.max_tokens = max_tokens or self.limits.tokens  # per request: the model's documented cap by default

    def __repr__(self) -> str:  # the key never appears
        return f"DashScopeScorer(model={self.model_name!r}, base_url={self.base_url!r})"

    def check_pairs(self, pairs: list[Pair]) -> list[Pair]:
        """Text pairs for the text models; for qwen3-vl-rerank each side may also be one image (checked here, before
        anything is sent), not text and images together."""
        if not self.multimodal:
            text_only(pairs, self.model_name)
            return pairs
        for i, pair in enumerate(pairs):
            for name, side in zip(("query", "document"), pair):
                _one_part(side, f"pairs[{i}].{name}", self.model_name)
        return pairs

    def score_prepared(self, items: Sequence[Prepared], *, batch_size: int | None = None) -> list[ScoreOutput]:
        """Score prepared requests; the service takes one instruction per call, so each instruction goes alone."""
        return score_per_instruction(items, lambda pairs, instruction: self._score(pairs, instruction, batch_size))

    def _score(self, pairs: list[Pair], instruction: str | None, batch_size: int | None) -> ScoreOutput:
        """Score pairs in input order: requests per query under the service's caps, sent with bounded concurrency."""
        max_docs = min(batch_size or self.max_documents, self.max_documents)
        limits = Limits(max_docs, self.limits.image_documents, self.max_tokens, self.limits.document_tokens)
        chunks = plan_chunks(pairs, limits, _multimodal_payload if self.multimodal else None)
        scores = np.full(len(pairs), np.nan, dtype=np.float32)
        tokens = np.zeros(len(pairs), dtype=np.int64)
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(chunks)))) as pool:
            replies = list(pool.map(lambda c: self._send(c, instruction), chunks))
        for chunk, (results, used) in zip(chunks, replies):
            for result in results:
                scores[chunk.positions[result["index"]]] = result["relevance_score"]
            tokens[chunk.positions[0]] += used  # usage is per request, not per document
        if np.isnan(scores).any():
            missing = int(np.isnan(scores).sum())
            raise UpstreamError(200, "IncompleteResult", f"the service returned no score for {missing} documents")
        return ScoreOutput(scores=scores, tokens=tokens, truncated=np.zeros(len(pairs), dtype=np.int64))

    def _send(self, chunk: _Chunk, instruction: str | None) -> tuple[list[dict], int]:
        return with_retries(lambda: self._call(chunk, instruction), max_retries=self.max_retries)

    def _call(self, chunk: _Chunk, instruction: str | None) -> tuple[list[dict], int]:
        kwargs = {"instruct": instruction} if instruction is not None else {}
        try:
            reply = TextReRank.call(
                model=self.model_name,
                query=chunk.query,
                documents=chunk.documents,
                top_n=len(chunk.documents),  # every score back, not just the best
                return_documents=False,
                api_key=self._api_key,
                base_address=self.base_url,
                request_timeout=self.timeout_s,
                **kwargs,
            )
        except dashscope.common.error.DashScopeException as exc:
            raise InvalidInputError("documents", str(exc)) from None
        except Exception as exc:  # requests' connection errors and timeouts
            error = UpstreamError(None, type(exc).__name__, f"{self.base_url}: {_scrub(str(exc), self._api_key)}")
            raise RetryableError(error) from None
        status = int(reply.status_code)
        if status != 200:
            message = _scrub(str(reply.message), self._api_key)
            error = UpstreamError(status, str(reply.code or "Unknown"), message, reply.request_id or None)
            if status in RETRYABLE_STATUS:
                headers = {k.lower(): v for k, v in (reply.headers or {}).items()}
                raise RetryableError(error, parse_retry_after(headers.get("retry-after")))
            raise error
        results = [{"index": r["index"], "relevance_score": r["relevance_score"]} for r in reply.output["results"]]
        used = int((reply.usage or {}).get("total_tokens") or 0)
        return results, used


def _multimodal_payload(side: str | Content, where: str) -> str | dict:
    """What qwen3-vl-rerank is sent for a side: a text query as it is, a text document as {"text"}, an image as
    {"image"} (a URL as given; a file, bytes or a PIL image as a base64 data URI)."""
    if isinstance(side, str):
        return side if where.endswith(".query") else {"text": side}
    (part,) = side.parts
    if isinstance(part, Image):
        return {"image": image_value(part.source, where)}
    return part.text if where.endswith(".query") else {"text": part.text}


def _one_part(side: str | Content, where: str, model: str) -> None:
    """Refuse a side DashScope's multimodal reranker cannot take: it takes one text or one image per query and per
    document."""
    if isinstance(side, Content) and len(side.parts) != 1:
        raise InvalidInputError(where, f"{model} takes one text or one image per side, got {len(side.parts)} parts")


def _scrub(text: str, secret: str) -> str:
    """Remove the key from any text that might end up in an exception or a log line."""
    return text.replace(secret, "***") if secret else text
