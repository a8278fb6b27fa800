"""The `Reranker` facade: EmbedAnything's Reranker API (a superset of it) over any Scorer backend."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .backends.endpoint import EndpointScorer
from .backends.onnx import OnnxScorer
from .config import LocalOptions, LongDocumentsSetting, ModelConfig
from .content import Content, Pair, check_text, named_by_input
from .device import resolve_device
from .dtypes import Dtype
from .errors import InvalidInputError
from .export.cache import cached_export
from .locate import Checkpoint, locate_model
from .model_files.folder import ModelFolder
from .scorer import Scorer, top_indices


@dataclass(frozen=True)
class DocumentRank:
    """One ranked document as it was given (text, or {"text", "image"} content), its relevance in 0..1, 1-based
    rank, and position in the input list; scored in windows (long_documents mode chunk), `window` is the (start,
    end) character span of the window that decided."""

    document: str | dict | Content
    relevance_score: float
    rank: int
    index: int
    window: tuple[int, int] | None = None


@dataclass(frozen=True)
class RerankerResult:
    """The ranking of the documents for one query, best first."""

    query: str | dict | Content
    documents: list[DocumentRank]


Side = str | dict | Content  # text, {"text": …, "image": …}, or Content


def _queries(query: Side | Sequence[Side]) -> list[Side]:
    queries = [query] if isinstance(query, (str, dict, Content)) else list(query)
    for i, q in enumerate(queries):
        if not isinstance(q, (dict, Content)):
            check_text(q, f"query[{i}]", allow_empty=False)
    return queries


def _documents(documents: Sequence[Side]) -> list[Side]:
    if isinstance(documents, (str, dict)) or not isinstance(documents, Sequence):
        raise InvalidInputError("documents", "must be a list of documents (strings or {text, image} objects)")
    for i, d in enumerate(documents):
        if not isinstance(d, (dict, Content)):
            check_text(d, f"documents[{i}]", allow_empty=True)
    return list(documents)


class Reranker:
    """Scores and ranks documents for queries with a local reranker (ONNX) or a hosted service.

    Example:
        >>> from rerank_core import Reranker
        >>> reranker = Reranker.from_pretrained("builtin:tiny-qwen3-reranker")
        >>> result = reranker.rerank("What is machine learning?", ["ML learns from data.", "Pizza."], top_k=1)[0]
        >>> len(result.documents), result.documents[0].rank
        (1, 1)
    """

    def __init__(self, scorer: Scorer):
        self.scorer = scorer

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike,
        revision: str | None = None,
        dtype: Dtype | str | None = None,
        path_in_repo: str | None = None,
        **options,
    ) -> Reranker:
        """Load a reranker from a folder, `builtin:NAME`, or a Hub repo id (cached, offline-aware).

        The model may be an ONNX export or a PyTorch checkpoint such as the official Qwen/Qwen3-Reranker-0.6B,
        which is exported to ONNX once into the export cache (`export_cache_dir`, $QWEN_RERANK_CACHE, or
        ~/.cache/qwen-rerank/exports) and loaded from there afterwards. `dtype` None takes the graph that suits
        the device (f32 on a CPU, f16 on a GPU). `options` are the fields of `rerank_core.config.LocalOptions`
        (device, share_prefix, token_budget, max_rows_per_call, max_length, intra_op_threads, cache_dir, …); an
        unknown one raises ConfigError naming it.
        """
        paths = {k: os.fspath(options[k]) for k in ("cache_dir", "export_cache_dir") if options.get(k) is not None}
        local = LocalOptions.from_kwargs(
            **{**options, **paths}, revision=revision, path_in_repo=path_in_repo, dtype=dtype
        )
        return cls.load(model_id, local)

    @classmethod
    def load(cls, model_id: str | os.PathLike, options: LocalOptions) -> Reranker:
        """Load a local reranker with options already validated (what configs and the CLI build): resolution says
        what to load, a checkpoint is exported (once, into the export cache), the scorer opens the export."""
        found = locate_model(model_id, options, resolve_device(options.device))
        if isinstance(found, Checkpoint):
            export = cached_export(
                found.path,
                name=found.name,
                dtype=found.dtype,
                cache_dir=options.export_cache_dir,
                gpu_layout=found.gpu_layout,
            )
            found = ModelFolder.read(export, name=found.name)
        return cls(OnnxScorer(found, options))

    @classmethod
    def from_dashscope(
        cls,
        model: str = "gte-rerank-v2",
        api_key: str | None = None,
        base_url: str | None = None,
        instruction: str | None = None,
        **options,
    ) -> Reranker:
        """Use DashScope's hosted rerankers (gte-rerank-v2, qwen3-rerank); key from the argument or DASHSCOPE_API_KEY.

        Raises ValueError when no key is found. `options`: timeout_s, max_retries, max_concurrency, max_documents,
        max_tokens.
        """
        from .backends.dashscope import DashScopeScorer

        return cls(DashScopeScorer(model, api_key=api_key, base_url=base_url, instruction=instruction, **options))

    @classmethod
    def from_endpoint(cls, url: str, *, api_key: str | None = None, **options) -> Reranker:
        """Use a running qwen-rerank Serve endpoint; `options`: timeout_s, max_retries, max_documents, instruction."""
        return cls(EndpointScorer(url, api_key=api_key, **options))

    def score_pairs(
        self, pairs: Sequence[Pair], instruction: str | None = None, long_documents: LongDocumentsSetting = None
    ) -> np.ndarray:
        """Relevance in 0..1 of each (query, document) pair, float32, in input order.

        `long_documents` overrides the model's for this call: "chunk", "truncate", or a dict of LongDocuments fields.
        """
        return self.scorer.score(pairs, instruction=instruction, long_documents=long_documents)

    def compute_scores(
        self,
        query: Side | Sequence[Side],
        documents: Sequence[Side],
        batch_size: int | None = None,
        long_documents: LongDocumentsSetting = None,
    ) -> list[list[float]]:
        """Scores as [query][document] in input order; `batch_size` caps rows per model call for this call only."""
        queries, docs = _queries(query), _documents(documents)
        return self._grid(queries, docs, None, batch_size, long_documents).scores.tolist()

    def rerank(
        self,
        query: Side | Sequence[Side],
        documents: Sequence[Side],
        top_k: int | None = None,
        instruction: str | None = None,
        batch_size: int | None = None,
        long_documents: LongDocumentsSetting = None,
    ) -> list[RerankerResult]:
        """One result per query: documents sorted by relevance (best first, rank 1-based), at most `top_k`."""
        queries, docs = _queries(query), _documents(documents)
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise InvalidInputError("top_k", f"must be an integer ≥ 1, got {top_k!r}", limit="≥ 1")
        grid = self._grid(queries, docs, instruction, batch_size, long_documents)
        results = []
        for k, (q, row) in enumerate(zip(queries, grid.scores)):
            ranked = [
                DocumentRank(docs[i], float(row[i]), r + 1, int(i), grid.window(k, int(i)))
                for r, i in enumerate(top_indices(row, top_k))
            ]
            results.append(RerankerResult(query=q, documents=ranked))
        return results

    def _grid(
        self,
        queries: list[str],
        docs: list[str],
        instruction: str | None,
        batch_size: int | None,
        long_documents: LongDocumentsSetting,
    ) -> _Grid:
        """Scores of every query × document in one scorer call, shaped [query, document]."""
        if batch_size is not None and batch_size < 1:
            raise InvalidInputError("batch_size", f"must be ≥ 1, got {batch_size}", limit="≥ 1")
        pairs = [(q, d) for q in queries for d in docs]
        if not pairs:
            return _Grid(np.zeros((len(queries), len(docs)), np.float32), None)
        try:
            out = self.scorer.score_detailed(
                pairs, instruction=instruction, batch_size=batch_size, long_documents=long_documents
            )
        except InvalidInputError as exc:
            raise named_by_input(exc, len(queries), len(docs)) from None
        windows = None if out.windows is None else out.windows.reshape(len(queries), len(docs), 2)
        return _Grid(np.asarray(out.scores, dtype=np.float32).reshape(len(queries), len(docs)), windows)


@dataclass(frozen=True)
class _Grid:
    scores: np.ndarray  # [query, document]
    windows: np.ndarray | None  # [query, document, 2] character spans of the deciding windows (chunk mode)

    def window(self, query: int, document: int) -> tuple[int, int] | None:
        """The deciding window's (start, end) characters, or None where documents were truncated."""
        if self.windows is None:
            return None
        start, end = self.windows[query, document]
        return int(start), int(end)


def load_reranker(cfg: ModelConfig) -> Reranker:
    """Build the Reranker a ModelConfig describes (what Serve replicas and offline actors load)."""
    if cfg.backend == "dashscope":
        return Reranker.from_dashscope(
            model=cfg.model,
            api_key=os.environ.get(cfg.api_key_env),
            base_url=cfg.base_url,
            instruction=cfg.instruction,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
        )
    return Reranker.load(cfg.model, LocalOptions.part_of(cfg))
