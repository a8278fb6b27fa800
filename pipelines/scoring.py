"""The map_batches callable: one model per actor; scores an Arrow batch, flags bad rows, never drops one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from rerank_core.config import ColumnsConfig, ModelConfig, load_reranker
from rerank_core.formatting import format_query, is_formatted_query
from rerank_core.scorer import ScoreOutput, top_indices

SCORE, ERROR, TRUNCATED = "score", "error", "truncated_tokens"
SCORES, RANKING = "scores", "ranking"


def row_problem(query: Any, document: Any, field: str = "document") -> str | None:
    """Why a (query, document) row cannot be scored, or None if it can."""
    for name, value in (("query", query), (field, document)):
        if value is None:
            return f"{name} is null"
        if not isinstance(value, str):
            return f"{name} is not a string ({type(value).__name__})"
        if not value.strip():
            return f"{name} is empty"
    return None


class BatchScorer:
    """Ray Data callable class: loads the model once per actor, then scores one Arrow batch per call."""

    def __init__(self, model: dict, layout: str, columns: dict, top_k: int | None = None):
        self.reranker = load_reranker(ModelConfig.model_validate(model))
        self.layout, self.columns, self.top_k = layout, ColumnsConfig.model_validate(columns), top_k

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Return `batch` with the result columns added; output rows = input rows, checked."""
        out = self._pairs(batch) if self.layout == "pairs" else self._grouped(batch)
        if out.num_rows != batch.num_rows:
            raise AssertionError(f"scoring changed the row count: {batch.num_rows} in, {out.num_rows} out")
        return out

    def _formatted_queries(self, batch: pa.Table, queries: list) -> list:
        """Queries with each row's own instruction applied; rows without one get the model's default later."""
        column = self.columns.instruction
        if not column:
            return queries
        instructions = batch.column(column).to_pylist()
        return [
            format_query(q, i) if isinstance(q, str) and isinstance(i, str) and not is_formatted_query(q) else q
            for q, i in zip(queries, instructions)
        ]

    def _score(self, pairs: list[tuple[str, str]]) -> tuple[ScoreOutput | None, list[str | None]]:
        """Score all pairs; if the call fails, score them one by one so only the bad rows are flagged."""
        try:
            return self.reranker.scorer.score_detailed(pairs), [None] * len(pairs)
        except Exception:  # noqa: BLE001 - any failure of a row must become that row's error, not the job's
            scores, tokens, cut, errors = [], [], [], []
            for pair in pairs:
                try:
                    one = self.reranker.scorer.score_detailed([pair])
                    scores.append(one.scores[0]), tokens.append(one.tokens[0]), cut.append(one.truncated[0])
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001
                    scores.append(np.nan), tokens.append(0), cut.append(0)
                    errors.append(f"scoring failed: {type(exc).__name__}: {exc}"[:500])
            out = ScoreOutput(np.asarray(scores, np.float32), np.asarray(tokens, np.int64), np.asarray(cut, np.int64))
            return out, errors

    def _pairs(self, batch: pa.Table) -> pa.Table:
        queries = batch.column(self.columns.query).to_pylist()
        documents = batch.column(self.columns.document).to_pylist()
        errors = [row_problem(q, d) for q, d in zip(queries, documents)]
        good = [i for i, e in enumerate(errors) if e is None]
        formatted = self._formatted_queries(batch, queries)
        scores: list[float | None] = [None] * len(errors)
        truncated = [0] * len(errors)
        if good:
            out, failures = self._score([(formatted[i], documents[i]) for i in good])
            for k, i in enumerate(good):
                if failures[k] is not None:
                    errors[i] = failures[k]
                    continue
                scores[i], truncated[i] = float(out.scores[k]), int(out.truncated[k])
        return (
            batch.append_column(SCORE, pa.array(scores, pa.float32()))
            .append_column(ERROR, pa.array(errors, pa.string()))
            .append_column(TRUNCATED, pa.array(truncated, pa.int32()))
        )

    def _group_problem(self, query: Any, docs: Any) -> str | None:
        problem = row_problem(query, "-")
        if problem is None and not isinstance(docs, list):
            problem = f"{self.columns.documents} is not a list"
        if problem is None:
            bad = [j for j, d in enumerate(docs) if row_problem(query, d) is not None]
            if bad:
                problem = f"{self.columns.documents} items {bad[:10]} are null, empty or not strings"
        return problem

    def _grouped(self, batch: pa.Table) -> pa.Table:
        queries = batch.column(self.columns.query).to_pylist()
        candidates = batch.column(self.columns.documents).to_pylist()
        formatted = self._formatted_queries(batch, queries)
        errors = [self._group_problem(q, docs) for q, docs in zip(queries, candidates)]
        spans: dict[int, tuple[int, int]] = {}
        flat: list[tuple[str, str]] = []
        for row, docs in enumerate(candidates):
            if errors[row] is None:
                spans[row] = (len(flat), len(flat) + len(docs))
                flat += [(formatted[row], d) for d in docs]
        out, failures = self._score(flat) if flat else (None, [])
        scores_col: list[list[float] | None] = [None] * len(queries)
        ranking_col: list[list[int] | None] = [None] * len(queries)
        for row, (start, end) in spans.items():
            failed = next((f for f in failures[start:end] if f is not None), None)
            if failed is not None:
                errors[row] = failed
                continue
            row_scores = out.scores[start:end] if out is not None else np.zeros(0, np.float32)
            scores_col[row] = [float(x) for x in row_scores]
            ranking_col[row] = [int(i) for i in top_indices(row_scores, self.top_k)]
        return (
            batch.append_column(SCORES, pa.array(scores_col, pa.list_(pa.float32())))
            .append_column(RANKING, pa.array(ranking_col, pa.list_(pa.int32())))
            .append_column(ERROR, pa.array(errors, pa.string()))
        )
