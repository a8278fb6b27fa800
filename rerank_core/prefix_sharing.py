"""Prefix sharing plan: which rows continue which shared prompt prefix, found on token ids, never on strings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .tokenization import common_prefix_length


@dataclass(frozen=True)
class PrefixGroup:
    """Rows whose first `length` tokens are the same: that prefix runs once, each row's rest against its K/V."""

    length: int
    rows: np.ndarray  # positions in the input


def plan_prefix_groups(
    ids: Sequence[np.ndarray], heads: Sequence[str] | None, base: int, max_prefix: int
) -> list[PrefixGroup]:
    """Group rows by head (instruction + query); a group of ≥ 2 rows shares its longest common token prefix.

    Every row shares the first `base` tokens (the model-wide system prompt). A group's prefix leaves each row at
    least one token of its own (the scored position) and is cut to `max_prefix` tokens, which bounds the cached
    K/V. Rows that would share nothing beyond `base` (a query with one document, or no heads) form the first group,
    of length `base`.
    """
    members: dict[str, list[int]] = {}
    for row, head in enumerate(heads or ()):
        members.setdefault(head, []).append(row)
    shared, at_base = [], set(range(len(ids)))
    for rows in members.values():
        if len(rows) < 2:
            continue
        first = ids[rows[0]]
        length = min(len(first) - 1, max_prefix)
        for row in rows[1:]:
            length = min(length, common_prefix_length(first, ids[row]), len(ids[row]) - 1)
        if length > base:
            shared.append(PrefixGroup(length, np.asarray(rows)))
            at_base.difference_update(rows)
    rest = [PrefixGroup(base, np.asarray(sorted(at_base), dtype=np.int64))] if at_base else []
    return rest + shared
