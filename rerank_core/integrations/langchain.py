"""LangChain rerankers backed by a local Qwen3 reranker (or a qwen-rerank endpoint): a `BaseCrossEncoder` for
LangChain's `CrossEncoderReranker`, and a `BaseDocumentCompressor` (as `CohereRerank` is) that keeps the top
documents with their relevance in `metadata["relevance_score"]`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..api import Reranker
from .source import reranker_for

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.cross_encoders import BaseCrossEncoder
    from langchain_core.documents import BaseDocumentCompressor, Document
    from pydantic import ConfigDict, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the LangChain integration needs the langchain extra: pip install 'qwen-rerank[langchain]'"
    ) from exc


class QwenCrossEncoder(BaseCrossEncoder):
    """`score(pairs)` for LangChain's `CrossEncoderReranker`: relevance in 0..1 of each (query, document) pair.

    Example:
        >>> from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        >>> compressor = CrossEncoderReranker(model=QwenCrossEncoder(model="builtin:tiny-qwen3-reranker"), top_n=3)
    """

    def __init__(
        self,
        model: str | Reranker | None = None,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        instruction: str | None = None,
        **options: Any,
    ):
        self.reranker = reranker_for(model, endpoint, api_key, **options)
        self.instruction = instruction

    def score(self, text_pairs: list[tuple[str, str]]) -> list[float]:
        """Relevance of each (query, document) pair, in input order."""
        if not text_pairs:
            return []
        return self.reranker.score_pairs(list(text_pairs), instruction=self.instruction).tolist()


class QwenReranker(BaseDocumentCompressor):
    """A LangChain document compressor: the `top_n` most relevant documents, best first, each a copy with its
    relevance (0..1) in `metadata["relevance_score"]`; None keeps them all.

    Example:
        >>> from langchain_classic.retrievers import ContextualCompressionRetriever
        >>> reranker = QwenReranker(model="builtin:tiny-qwen3-reranker", top_n=3)
        >>> # ContextualCompressionRetriever(base_compressor=reranker, base_retriever=retriever).invoke("query")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    top_n: int | None = 3
    instruction: str | None = None
    _reranker: Reranker = PrivateAttr()

    def __init__(
        self,
        model: str | Reranker | None = None,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        top_n: int | None = 3,
        instruction: str | None = None,
        **options: Any,
    ):
        super().__init__(top_n=top_n, instruction=instruction)
        self._reranker = reranker_for(model, endpoint, api_key, **options)

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The `top_n` documents most relevant to `query`, best first, with their relevance in metadata."""
        if not documents:
            return []
        (result,) = self._reranker.rerank(
            query, [d.page_content for d in documents], top_k=self.top_n, instruction=self.instruction
        )
        return [
            Document(
                page_content=documents[r.index].page_content,
                metadata={**documents[r.index].metadata, "relevance_score": r.relevance_score},
                id=documents[r.index].id,
            )
            for r in result.documents
        ]
