"""Planning model calls: which rows continue which shared prompt prefix (found on token ids, never on strings), and
padded batches of similar length under a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .tokenization import common_prefix_length


@dataclass(frozen=True)
class PrefixGroup:
    """Rows whose first `length` tokens are the same: that prefix runs once, each row's rest against its K/V."""

    length: int
    rows: np.ndarray  # positions in the input


def plan_prefix_groups(
    ids: Sequence[np.ndarray],
    heads: Sequence[str] | None,
    base: int,
    max_prefix: int,
    head_lengths: np.ndarray | None = None,
) -> list[PrefixGroup]:
    """Group rows by head (instruction + query); a group shares its rows' common token prefix.

    Every row shares the first `base` tokens (the model-wide system prompt). A group's prefix leaves each row at
    least one token of its own (the scored position) and is cut to `max_prefix` tokens, which bounds its K/V.
    Without `head_lengths` a group needs ≥ 2 rows and shares their longest common prefix. With them (prefixes are
    cached across calls) a group shares exactly its head's tokens, so the same query gives the same prefix in every
    call, and a lone row with a head length forms a group too (its prefix may be cached). Rows that would share
    nothing beyond `base` form the first group, of length `base`.
    """
    members: dict[str, list[int]] = {}
    for row, head in enumerate(heads or ()):
        members.setdefault(head, []).append(row)
    shared, at_base = [], set(range(len(ids)))
    for rows in members.values():
        if head_lengths is not None:
            length = min(max_prefix, *(int(head_lengths[r]) for r in rows))
        elif len(rows) < 2:
            continue
        else:
            first = ids[rows[0]]
            length = min(len(first) - 1, max_prefix)
            for row in rows[1:]:
                length = min(length, common_prefix_length(first, ids[row]), len(ids[row]) - 1)
        if length > base:
            shared.append(PrefixGroup(length, np.asarray(rows)))
            at_base.difference_update(rows)
    rest = [PrefixGroup(base, np.asarray(sorted(at_base), dtype=np.int64))] if at_base else []
    return rest + shared


@dataclass(frozen=True)
class Batch:
    """One model call: positions of its rows in the input, padded int64 ids, mask, and each row's last real token."""

    indices: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray

    @property
    def last_index(self) -> np.ndarray:
        """Position of each row's last real token (right padding)."""
        return self.attention_mask.sum(axis=1) - 1


def budget_batches(
    rows: Sequence[np.ndarray], token_budget: int, max_rows: int, *, pad_id: int, right_padding: bool
) -> Iterator[Batch]:
    """Yield padded batches of similar length with rows × longest ≤ token_budget (a longer row goes alone)."""
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        fits = max(1, min(max_rows, token_budget // max(longest, 1)))
        chosen = order[start : start + fits]
        yield _pad([rows[i] for i in chosen], chosen, longest, pad_id, right_padding)
        start += len(chosen)


def _pad(rows: list[np.ndarray], indices: np.ndarray, width: int, pad_id: int, right: bool) -> Batch:
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        cols = slice(0, len(row)) if right else slice(width - len(row), width)
        input_ids[r, cols] = row
        mask[r, cols] = 1
    return Batch(indices=np.asarray(indices), input_ids=input_ids, attention_mask=mask)
