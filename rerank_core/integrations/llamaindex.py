"""A LlamaIndex node postprocessor (as `SentenceTransformerRerank` is) backed by a local Qwen3 reranker or a
qwen-rerank endpoint: the `top_n` most relevant nodes, best first, each scored with its relevance in 0..1."""

from __future__ import annotations

from typing import Any

from ..api import Reranker
from .source import reranker_for

try:
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CBEventType, EventPayload
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the LlamaIndex integration needs the llamaindex extra: pip install 'qwen-rerank[llamaindex]'"
    ) from exc


class QwenRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes: the `top_n` most relevant to the query (None: all), best first, `score` the relevance;
    each node's text is what it embeds (`MetadataMode.EMBED`), as LlamaIndex's own rerankers read it.

    Example:
        >>> reranker = QwenRerank(model="builtin:tiny-qwen3-reranker", top_n=3)
        >>> # index.as_query_engine(similarity_top_k=10, node_postprocessors=[reranker])
    """

    top_n: int | None = Field(default=3, description="Nodes to keep, best first (None: all).")
    instruction: str | None = Field(default=None, description="The task instruction (None: the model's).")
    keep_retrieval_score: bool = Field(default=False, description="Keep the retriever's score as retrieval_score.")
    _reranker: Reranker = PrivateAttr()

    def __init__(
        self,
        model: str | Reranker | None = None,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        top_n: int | None = 3,
        instruction: str | None = None,
        keep_retrieval_score: bool = False,
        **options: Any,
    ):
        super().__init__(top_n=top_n, instruction=instruction, keep_retrieval_score=keep_retrieval_score)
        self._reranker = reranker_for(model, endpoint, api_key, **options)

    @classmethod
    def class_name(cls) -> str:
        """The name LlamaIndex serializes this postprocessor under."""
        return "QwenRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("QwenRerank needs the query: call postprocess_nodes(nodes, query_str=...)")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        payload = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self._reranker.scorer.model_name,
            EventPayload.QUERY_STR: query_bundle.query_str,
            EventPayload.TOP_K: self.top_n,
        }
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:
            (result,) = self._reranker.rerank(
                query_bundle.query_str, texts, top_k=self.top_n, instruction=self.instruction
            )
            kept = []
            for r in result.documents:
                node = nodes[r.index].node
                if self.keep_retrieval_score:
                    node.metadata["retrieval_score"] = nodes[r.index].score
                kept.append(NodeWithScore(node=node, score=r.relevance_score))
            event.on_end(payload={EventPayload.NODES: kept})
        return kept
