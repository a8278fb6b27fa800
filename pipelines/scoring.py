"""The map_batches callable: one model per actor; scores an Arrow batch, flags bad rows, never drops one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from rerank_core.api import load_reranker
from rerank_core.config import ModelConfig
from rerank_core.scorer import ScoreOutput, group_by_instruction, top_indices

from .config import ColumnsConfig
from .images import ImageCellError, grouped_item, side

SCORE, ERROR, TRUNCATED = "score", "error", "truncated_tokens"
SCORES, RANKING = "scores", "ranking"
# With long_documents mode chunk: the character span of the window that gave each score (pairs: per row; grouped:
# lists parallel to `scores`).
WINDOW_START, WINDOW_END = "window_start", "window_end"
WINDOW_STARTS, WINDOW_ENDS = "window_starts", "window_ends"


def row_problem(query: Any, document: Any, field: str = "document") -> str | None:
    """Why a (query, document) row cannot be scored, or None if it can (a side with an image is {"text"?, "image"})."""
    for name, value in (("query", query), (field, document)):
        if value is None:
            return f"{name} is null"
        if isinstance(value, dict):
            continue
        if not isinstance(value, str):
            return f"{name} is not a string ({type(value).__name__})"
        if not value.strip():
            return f"{name} is empty"
    return None


class BatchScorer:
    """Ray Data callable class: loads the model once per actor, then scores one Arrow batch per call."""

    def __init__(self, model: dict, layout: str, columns: dict, top_k: int | None = None):
        config = ModelConfig.model_validate(model)
        self.reranker = load_reranker(config)
        self.image_bytes = config.images.max_bytes
        self.layout, self.columns, self.top_k = layout, ColumnsConfig.model_validate(columns), top_k
        self.windows = config.long_documents.mode == "chunk"

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Return `batch` with the result columns added; output rows = input rows, checked."""
        out = self._pairs(batch) if self.layout == "pairs" else self._grouped(batch)
        if out.num_rows != batch.num_rows:
            raise AssertionError(f"scoring changed the row count: {batch.num_rows} in, {out.num_rows} out")
        return out

    def _instructions(self, batch: pa.Table) -> list[str | None]:
        """Each row's own instruction, or None (the model's default) where there is no column or no value."""
        column = self.columns.instruction
        if not column:
            return [None] * batch.num_rows
        return [i if isinstance(i, str) and i.strip() else None for i in batch.column(column).to_pylist()]

    def _score(self, pairs: list[tuple[str, str]], instructions: list[str | None]) -> tuple[ScoreOutput, list]:
        """Score pairs in shared model calls across instructions; if that fails, retry row by row so only the bad
        rows are flagged."""
        n = len(pairs)
        scores, cut, errors = np.full(n, np.nan, np.float32), np.zeros(n, np.int64), [None] * n
        windows = np.zeros((n, 2), np.int64)
        scorer = self.reranker.scorer
        groups = group_by_instruction(instructions)

        def keep(rows, out: ScoreOutput) -> None:
            scores[rows], cut[rows] = out.scores, out.truncated
            if out.windows is not None:
                windows[rows] = out.windows

        try:
            prepared = [scorer.prepare([pairs[i] for i in rows], instruction=instr) for instr, rows in groups.items()]
            for rows, out in zip(groups.values(), scorer.score_prepared(prepared)):
                keep(rows, out)
        except Exception:
            for instruction, rows in groups.items():
                for i in rows:
                    try:
                        keep([i], scorer.score_detailed([pairs[i]], instruction=instruction))
                    except Exception as exc:
                        errors[i] = f"scoring failed: {type(exc).__name__}: {exc}"[:500]
        return ScoreOutput(scores, np.zeros(n, np.int64), cut, windows=windows), errors

    def _column(self, batch: pa.Table, name: str | None) -> list:
        """A column's values; all None for a column not configured, or a text column an image table lacks."""
        return batch.column(name).to_pylist() if name and name in batch.column_names else [None] * batch.num_rows

    def _sides(self, batch: pa.Table) -> tuple[list, list, list[str | None]]:
        """Each row's query and document (text, or text with its image) and why it cannot be scored, if so."""
        c = self.columns
        texts = self._column(batch, c.query), self._column(batch, c.document)
        images = self._column(batch, c.query_image), self._column(batch, c.document_image)
        queries, documents, errors = [], [], []
        for q, d, qi, di in zip(*texts, *images):
            try:
                query, document = side(q, qi, self.image_bytes), side(d, di, self.image_bytes)
                problem = row_problem(query, document)
            except ImageCellError as exc:
                query, document, problem = None, None, str(exc)[:500]
            queries.append(query)
            documents.append(document)
            errors.append(problem)
        return queries, documents, errors

    def _pairs(self, batch: pa.Table) -> pa.Table:
        queries, documents, errors = self._sides(batch)
        good = [i for i, e in enumerate(errors) if e is None]
        instructions = self._instructions(batch)
        scores: list[float | None] = [None] * len(errors)
        truncated = [0] * len(errors)
        spans: list[list[int] | None] = [None] * len(errors)
        if good:
            out, failures = self._score([(queries[i], documents[i]) for i in good], [instructions[i] for i in good])
            for k, i in enumerate(good):
                if failures[k] is not None:
                    errors[i] = failures[k]
                    continue
                scores[i], truncated[i] = float(out.scores[k]), int(out.truncated[k])
                spans[i] = out.windows[k].tolist()
        out = (
            batch.append_column(SCORE, pa.array(scores, pa.float32()))
            .append_column(ERROR, pa.array(errors, pa.string()))
            .append_column(TRUNCATED, pa.array(truncated, pa.int32()))
        )
        if self.windows:
            out = out.append_column(WINDOW_START, pa.array([s and s[0] for s in spans], pa.int32()))
            out = out.append_column(WINDOW_END, pa.array([s and s[1] for s in spans], pa.int32()))
        return out

    def _group_problem(self, query: Any, docs: Any) -> str | None:
        problem = row_problem(query, "-")
        if problem is None and not isinstance(docs, list):
            problem = f"{self.columns.documents} is not a list"
        if problem is None:
            bad = [j for j, d in enumerate(docs) if row_problem(query, d) is not None]
            if bad:
                problem = f"{self.columns.documents} items {bad[:10]} are null, empty or not strings"
        return problem

    def _group(self, query: Any, docs: Any) -> tuple[Any, str | None]:
        """A grouped row's documents as the library takes them (struct items: text and image) and its problem."""
        try:
            docs = [grouped_item(d, self.image_bytes) for d in docs] if isinstance(docs, list) else docs
        except ImageCellError as exc:
            return docs, str(exc)[:500]
        return docs, self._group_problem(query, docs)

    def _grouped(self, batch: pa.Table) -> pa.Table:
        queries = batch.column(self.columns.query).to_pylist()
        grouped = [self._group(q, docs) for q, docs in zip(queries, batch.column(self.columns.documents).to_pylist())]
        candidates, errors = [docs for docs, _ in grouped], [problem for _, problem in grouped]
        instructions = self._instructions(batch)
        spans: dict[int, tuple[int, int]] = {}
        flat: list[tuple[str, str]] = []
        flat_instructions: list[str | None] = []
        for row, docs in enumerate(candidates):
            if errors[row] is None:
                spans[row] = (len(flat), len(flat) + len(docs))
                flat += [(queries[row], d) for d in docs]
                flat_instructions += [instructions[row]] * len(docs)
        out, failures = self._score(flat, flat_instructions) if flat else (None, [])
        scores_col: list[list[float] | None] = [None] * len(queries)
        ranking_col: list[list[int] | None] = [None] * len(queries)
        spans_col: list[np.ndarray | None] = [None] * len(queries)
        for row, (start, end) in spans.items():
            failed = next((f for f in failures[start:end] if f is not None), None)
            if failed is not None:
                errors[row] = failed
                continue
            row_scores = out.scores[start:end] if out is not None else np.zeros(0, np.float32)
            scores_col[row] = [float(x) for x in row_scores]
            ranking_col[row] = [int(i) for i in top_indices(row_scores, self.top_k)]
            spans_col[row] = out.windows[start:end] if out is not None else np.zeros((0, 2), np.int64)
        table = (
            batch.append_column(SCORES, pa.array(scores_col, pa.list_(pa.float32())))
            .append_column(RANKING, pa.array(ranking_col, pa.list_(pa.int32())))
            .append_column(ERROR, pa.array(errors, pa.string()))
        )
        if self.windows:
            for name, k in ((WINDOW_STARTS, 0), (WINDOW_ENDS, 1)):
                column = [None if s is None else s[:, k].tolist() for s in spans_col]
                table = table.append_column(name, pa.array(column, pa.list_(pa.int32())))
        return table
