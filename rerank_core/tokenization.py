"""Encoded pairs: the token rows of a request (one per pair, or per window of a long document), what every family's
encoder makes and the planner and the engine read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def common_prefix_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading token ids `a` and `b` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def shared_head_lengths(
    ids: Sequence[np.ndarray], heads: Sequence[str], head_ids: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Tokens each row shares with the other rows of its head, found on the ids (`head_ids`: each head's prompt
    tokenized alone, from the row's first token): one length per head, at most each row's length − 1 (a
    document's first token may merge with the head's last), so the same query gives the same prefix in every part
    of a request; 0 for a head of one row, which has nothing to share."""
    shortest: dict[str, int] = {}
    for row, head in zip(ids, heads):
        length = min(common_prefix_length(row, head_ids[head]), len(row) - 1)
        shortest[head] = min(length, shortest.get(head, length))
    counts = Counter(heads)
    return np.array([shortest[h] if counts[h] > 1 else 0 for h in heads], dtype=np.int64)


@dataclass(frozen=True)
class EncodedPairs:
    """Token ids of formatted pairs (prefix + content + suffix), one row per pair — or, for long documents scored in
    windows, one row per window with `row_starts` saying which rows are whose."""

    ids: list[np.ndarray]
    truncated: np.ndarray  # int64 per row: content tokens dropped (a windowed pair's count on its first row)
    # Each row's content text before the document (the family's content head), when known: rows with the same head
    # start with the same prompt, which prefix sharing runs once.
    heads: list[str] | None = None
    # Tokens each row shares with the others of its head (template prefix + head, found on the ids), at most its
    # length − 1; 0 where its head is the only one of its kind in the encoded request.
    head_lengths: np.ndarray | None = None
    row_starts: np.ndarray | None = None  # pair i's rows are [row_starts[i], row_starts[i+1]); None: one row each
    spans: np.ndarray | None = None  # [rows, 2] each window's character span in its document
    aggregate: str = "max"  # how a pair's windows make its score (rerank_core.windows.aggregate_windows)
    # What the rows' non-text tokens stand for, by the (negative) id those tokens carry: images, for the layout.
    media: Mapping[int, Any] | None = None

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every row, prefix and suffix included."""
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    @property
    def starts(self) -> np.ndarray:
        """Where each pair's rows start, and the end: `row_starts`, or one row per pair."""
        return self.row_starts if self.row_starts is not None else np.arange(len(self.ids) + 1)

    def per_pair(self, values: np.ndarray) -> np.ndarray:
        """Row values summed over each pair's rows."""
        if self.row_starts is None:
            return values
        return np.add.reduceat(values, self.row_starts[:-1]) if len(values) else np.zeros(0, values.dtype)

    @classmethod
    def concat(cls, parts: Sequence[EncodedPairs]) -> EncodedPairs:
        """Several encodings as one, in order (each part's `aggregate` stays with its part: score it per part)."""
        ids = [row for part in parts for row in part.ids]
        truncated = np.concatenate([part.truncated for part in parts]) if parts else np.zeros(0, np.int64)
        heads = head_lengths = None
        if all(part.heads is not None for part in parts):
            heads = [head for part in parts for head in part.heads]
        if parts and all(part.head_lengths is not None for part in parts):
            head_lengths = np.concatenate([part.head_lengths for part in parts])
        media = {key: item for part in parts for key, item in (part.media or {}).items()} or None
        return cls(ids=ids, truncated=truncated, heads=heads, head_lengths=head_lengths, media=media)

    def media_of(self, rows: Iterable[int]) -> dict[int, Any] | None:
        """The media the tokens of `rows` name: what computing those rows needs, and nothing more."""
        if not self.media:
            return None
        named = {int(key) for row in rows for key in np.unique(self.ids[row][self.ids[row] < 0])}
        return {key: self.media[key] for key in named if key in self.media} or None

    def select(self, pairs: Sequence[int]) -> EncodedPairs:
        """The pairs at positions `pairs` (all their rows), in that order."""
        if self.row_starts is None:
            rows, counts = np.asarray(pairs, dtype=np.int64), None
        else:
            starts = self.row_starts
            rows = np.concatenate([np.arange(starts[p], starts[p + 1]) for p in pairs]) if len(pairs) else []
            rows = np.asarray(rows, dtype=np.int64)
            counts = np.asarray([starts[p + 1] - starts[p] for p in pairs], dtype=np.int64)
        return EncodedPairs(
            ids=[self.ids[r] for r in rows],
            truncated=self.truncated[rows],
            heads=None if self.heads is None else [self.heads[r] for r in rows],
            head_lengths=None if self.head_lengths is None else self.head_lengths[rows],
            row_starts=None if counts is None else np.concatenate([[0], np.cumsum(counts)]),
            spans=None if self.spans is None else self.spans[rows],
            aggregate=self.aggregate,
            media=self.media_of(rows),  # a call with some of a request's pairs computes their images only
        )
