"""A Haystack ranker component (as `TransformersSimilarityRanker` was) backed by a local Qwen3 reranker or a
qwen-rerank endpoint: the `top_k` most relevant documents, best first, `score` the relevance in 0..1."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..api import Reranker
from .source import reranker_for

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.utils import Secret, deserialize_secrets_inplace
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Haystack integration needs the haystack extra: pip install 'qwen-rerank[haystack]'") from exc


@component
class QwenRanker:
    """Rank documents by relevance to a query: the `top_k` best (None: all), those under `score_threshold` dropped,
    each a copy with `score` set; a document is read as its `meta_fields_to_embed` values and its content.

    Example:
        >>> ranker = QwenRanker(model="builtin:tiny-qwen3-reranker", top_k=3)
        >>> # pipeline.add_component("ranker", ranker); pipeline.connect("retriever", "ranker")
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        endpoint: str | None = None,
        api_key: Secret | None = None,
        top_k: int | None = 10,
        instruction: str | None = None,
        score_threshold: float | None = None,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        **options: Any,
    ):
        if (model is None) == (endpoint is None):
            raise ValueError("give exactly one of model= (local model) or endpoint= (qwen-rerank URL)")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        self.model, self.endpoint, self.api_key, self.options = model, endpoint, api_key, options
        self.top_k, self.instruction, self.score_threshold = top_k, instruction, score_threshold
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self._reranker: Reranker | None = None

    def warm_up(self) -> None:
        """Load the model (or connect to the endpoint) once; `run` does it if the pipeline has not."""
        if self._reranker is None:
            key = self.api_key.resolve_value() if self.api_key else None
            self._reranker = reranker_for(self.model, self.endpoint, key, **self.options)

    def to_dict(self) -> dict[str, Any]:
        """The component as Haystack serializes pipelines (an API key only as an environment variable's name)."""
        return default_to_dict(
            self,
            model=self.model,
            endpoint=self.endpoint,
            api_key=self.api_key.to_dict() if self.api_key else None,
            top_k=self.top_k,
            instruction=self.instruction,
            score_threshold=self.score_threshold,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
            **self.options,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QwenRanker:
        """The component `to_dict` described."""
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
        return default_from_dict(cls, data)

    def _text(self, document: Document) -> str:
        meta = [str(document.meta[f]) for f in self.meta_fields_to_embed if document.meta.get(f) is not None]
        return self.embedding_separator.join([*meta, document.content or ""])

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """The documents most relevant to `query`, best first, each with its relevance as `score`; `top_k` and
        `score_threshold` override the component's for this run."""
        if not documents:
            return {"documents": []}
        self.warm_up()
        top_k = self.top_k if top_k is None else top_k
        threshold = self.score_threshold if score_threshold is None else score_threshold
        (result,) = self._reranker.rerank(
            query, [self._text(d) for d in documents], top_k=top_k, instruction=self.instruction
        )
        ranked = [
            replace(documents[r.index], score=r.relevance_score)
            for r in result.documents
            if threshold is None or r.relevance_score >= threshold
        ]
        return {"documents": ranked}
