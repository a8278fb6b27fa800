"""zvec reranker backed by a local Qwen3 reranker (or a qwen-rerank endpoint): a drop-in for zvec's QwenReRanker."""

from __future__ import annotations

from typing import Any

from ..api import Reranker
from .source import reranker_for

try:
    from zvec import Doc, Query
    from zvec.extension.rerank_function import RerankFunction
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the zvec integration needs the zvec extra: pip install 'qwen-rerank[zvec]'") from exc


class QwenReRanker(RerankFunction):
    """zvec RerankFunction with QwenReRanker's shape, scoring locally (air-gapped, no API key) or on our endpoint.

    Example:
        >>> reranker = QwenReRanker(query="machine learning", rerank_field="content",
        ...                         model="builtin:tiny-qwen3-reranker")
        >>> # collection.query([q1, q2], topk=10, reranker=reranker)  — or rerank_query() for one query
    """

    def __init__(
        self,
        query: str | None = None,
        rerank_field: str | None = None,
        topn: int = 10,
        *,
        model: str | Reranker | None = None,
        endpoint: str | None = None,
        api_key: str | None = None,
        instruction: str | None = None,
        **options: Any,
    ):
        if not query:
            raise ValueError("Query is required for QwenReRanker")
        if not rerank_field:
            raise ValueError("rerank_field is required for QwenReRanker")
        self._reranker = reranker_for(model, endpoint, api_key, **options)
        self._query, self._rerank_field, self.topn, self.instruction = query, rerank_field, topn, instruction

    @property
    def query(self) -> str:
        """Query text the documents are ranked against."""
        return self._query

    @property
    def rerank_field(self) -> str:
        """Document field used as the text to rank."""
        return self._rerank_field

    def rerank(self, query_results: Any, topn: int | None = None, *, fields: Any = None) -> list[Doc]:
        """Merge per-query results (list of lists, or the older dict form), dedupe by id, score, sort, cut.

        At most the reranker's own `topn` come back; a `topn` passed in (zvec 0.8 passes the query's topk, which
        only sets how many candidates were fetched) can lower that, never raise it. Documents whose rerank_field
        is empty or missing are skipped; nothing left raises ValueError. Returns copies of the documents with
        `score` set to the relevance in 0..1, best first.
        """
        if not query_results:
            return []
        if isinstance(query_results, dict):
            query_results = list(query_results.values())
        seen: dict[str, Doc] = {}
        texts: list[str] = []
        for docs in query_results:
            for doc in docs:
                if doc is None or doc.id in seen:
                    continue
                value = doc.field(self._rerank_field)
                text = str(value).strip() if value is not None else ""
                if text:
                    seen[doc.id] = doc
                    texts.append(text)
        if not texts:
            raise ValueError("No documents to rerank")
        limit = min(topn, self.topn) if topn else self.topn
        (result,) = self._reranker.rerank(self._query, texts, top_k=limit, instruction=self.instruction)
        kept = list(seen.values())
        return [kept[d.index]._replace(score=d.relevance_score) for d in result.documents]


def rerank_query(
    collection: Any,
    query: Query,
    reranker: QwenReRanker,
    *,
    topk: int = 10,
    candidates: int = 50,
    **query_kwargs: Any,
) -> list[Doc]:
    """Single-query search, reranked: zvec 0.8 skips a Python reranker for one query, so fetch `candidates` and rerank.

    Returns at most min(topk, reranker.topn) documents, the same rule as `QwenReRanker.rerank`. `query_kwargs` go to
    `collection.query` (filter, output_fields, …); output_fields must include the rerank field.
    """
    docs = collection.query(query, topk=max(candidates, topk), **query_kwargs)
    return reranker.rerank([docs], topk) if docs else []
