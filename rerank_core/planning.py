"""Planning model calls: which rows continue which shared prompt prefix (found on token ids, never on strings), and
padded batches of similar length under a token budget."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .tokenization import common_prefix_length

# A plan with at most this share of pad tokens is kept as it is (the GPU layouts' bound, issue #40); above it, calls
# are re-cut where that costs least (budget_batches' `call_overhead_tokens`).
MAX_PADDING_SHARE = 0.05


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
    rows: Sequence[np.ndarray],
    token_budget: int,
    max_rows: int,
    *,
    pad_id: int,
    right_padding: bool,
    call_overhead_tokens: int | None = None,
) -> Iterator[Batch]:
    """Yield padded batches of similar length with rows × longest ≤ token_budget (a longer row goes alone).

    Rows go longest first, each call taking as many as fit. With `call_overhead_tokens`, a plan whose padding passes
    MAX_PADDING_SHARE of its tokens is replaced by the one that costs least in all — padded tokens plus that many
    tokens' worth of time per call — so calls of mixed lengths are split where padding costs more than a call does.
    """
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    order = np.argsort(-lengths, kind="stable")
    ordered = lengths[order]
    sizes = _fullest_calls(ordered, token_budget, max_rows)
    if call_overhead_tokens is not None and _padding_share(ordered, sizes) > MAX_PADDING_SHARE:
        sizes = _cheapest_calls(ordered, token_budget, max_rows, call_overhead_tokens)
    start = 0
    for size in sizes:
        chosen = order[start : start + size]
        yield _pad([rows[i] for i in chosen], chosen, int(ordered[start]), pad_id, right_padding)
        start += size


def _padding_share(lengths: np.ndarray, sizes: list[int]) -> float:
    """The share of pad tokens in the calls `sizes` make of `lengths` (longest first)."""
    starts = np.cumsum([0, *sizes[:-1]])
    padded = int((lengths[starts] * np.asarray(sizes)).sum())
    return 1.0 - int(lengths.sum()) / padded if padded else 0.0


def _fullest_calls(lengths: np.ndarray, token_budget: int, max_rows: int) -> list[int]:
    """Rows per call, longest first, each call as full as the budget and `max_rows` allow."""
    sizes, start = [], 0
    while start < len(lengths):
        sizes.append(max(1, min(max_rows, token_budget // max(int(lengths[start]), 1), len(lengths) - start)))
        start += sizes[-1]
    return sizes


def _cheapest_calls(lengths: np.ndarray, token_budget: int, max_rows: int, overhead: int) -> list[int]:
    """Rows per call minimising padded tokens + `overhead` per call over `lengths` (longest first): the exact
    optimum over contiguous calls, each within the budget and `max_rows` (a row over the budget alone)."""
    n = len(lengths)
    cost = np.zeros(n + 1)
    start_of = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        starts = np.arange(max(0, end - max_rows), end)
        width = end - starts
        padded = lengths[starts] * width  # a call's rows are padded to its first (longest) row
        total = np.where((padded <= token_budget) | (width == 1), cost[starts] + overhead + padded, np.inf)
        best = int(np.argmin(total))
        cost[end], start_of[end] = total[best], starts[best]
    sizes, end = [], n
    while end > 0:
        sizes.append(end - int(start_of[end]))
        end = int(start_of[end])
    return sizes[::-1]


def _pad(rows: list[np.ndarray], indices: np.ndarray, width: int, pad_id: int, right: bool) -> Batch:
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        cols = slice(0, len(row)) if right else slice(width - len(row), width)
        input_ids[r, cols] = row
        mask[r, cols] = 1
    return Batch(indices=np.asarray(indices), input_ids=input_ids, attention_mask=mask)
