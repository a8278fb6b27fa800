"""One call of a `paged` graph planned: rows packed back to back, prompts they share computed once, cache blocks.

Rows that start with the same tokens share them in whole cache blocks: the shared part runs once, as a sequence of
its own, and each row continues it (its block table starts with that sequence's blocks, its `past_seqlens` counts
them), computing only the rest. Sharing is exact by construction (the same tokens at the same positions have the
same keys and values), and cut at a block boundary because a row's own tokens fill blocks of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...tokenization import common_prefix_length


@dataclass(frozen=True)
class PackedCall:
    """A paged graph's inputs for one call (the cache aside): every sequence's new tokens back to back."""

    input_ids: np.ndarray  # [tokens] int64
    cumulative_sequence_length: np.ndarray  # [sequences + 1] int32
    past_seqlens: np.ndarray  # [sequences] int32
    block_table: np.ndarray  # [sequences, max blocks] int32
    attention_metadata: np.ndarray  # [2] int32: most new tokens of a sequence, most past + new
    last_index: np.ndarray  # [rows] int64: where each row's last token sits in input_ids
    num_blocks: int  # cache blocks the call writes

    def feed(self) -> dict[str, np.ndarray]:
        """The graph inputs this call sets."""
        return {name: getattr(self, name) for name in FED_INPUTS}


FED_INPUTS = tuple(name for name in PackedCall.__dataclass_fields__ if name != "num_blocks")


def shared_groups(rows: Sequence[np.ndarray], block_size: int) -> list[tuple[int, list[int]]]:
    """(shared tokens, rows) for groups of ≥ 2 rows whose first whole blocks are the same tokens; each row keeps at
    least its last token to itself. Rows are grouped in token order, so equal prefixes are neighbours; a row that
    shares less with the group before it than the group's members share starts a group of its own (a query's
    documents share their whole prompt; queries alone share the system prompt)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i].tobytes())
    groups: list[tuple[int, list[int]]] = []
    length, members = 0, order[:1]
    for previous, row in zip(order, order[1:]):
        common = min(common_prefix_length(rows[previous], rows[row]), len(rows[previous]) - 1, len(rows[row]) - 1)
        common -= common % block_size
        if common and (len(members) == 1 or common >= length):  # a longer group is not cut short
            if len(members) == 1:
                length = common
            members.append(row)
            continue
        if len(members) > 1:
            groups.append((length, members))
        length, members = 0, [row]
    if len(members) > 1:
        groups.append((length, members))
    return groups


def pack_call(rows: Sequence[np.ndarray], block_size: int, share: bool) -> PackedCall:
    """The call scoring `rows` (token ids, one row per pair): shared prefixes first (when `share`), then the rows."""
    sharing = shared_groups(rows, block_size) if share else []
    tokens: list[np.ndarray] = []
    past: list[int] = []
    tables: list[list[int]] = []
    next_block = 0

    def blocks(count: int) -> list[int]:
        nonlocal next_block
        next_block += count
        return list(range(next_block - count, next_block))

    start_of = dict.fromkeys(range(len(rows)), 0)
    prefix_blocks: dict[int, list[int]] = {}
    for length, members in sharing:
        tokens.append(rows[members[0]][:length])
        past.append(0)
        tables.append(blocks(length // block_size))
        for row in members:
            start_of[row], prefix_blocks[row] = length, tables[-1]
    scored = []
    for row, ids in enumerate(rows):
        own = ids[start_of[row] :]
        tokens.append(own)
        past.append(start_of[row])
        tables.append(prefix_blocks.get(row, []) + blocks(-(-len(own) // block_size)))
        scored.append(len(tokens) - 1)
    lengths = np.array([len(t) for t in tokens], np.int64)
    cumulative = np.concatenate([[0], np.cumsum(lengths)])
    table = np.zeros((len(tables), max(len(t) for t in tables)), np.int32)
    for i, row_blocks in enumerate(tables):
        table[i, : len(row_blocks)] = row_blocks
    past_lengths = np.array(past, np.int32)
    return PackedCall(
        input_ids=np.concatenate(tokens).astype(np.int64),
        cumulative_sequence_length=cumulative.astype(np.int32),
        past_seqlens=past_lengths,
        block_table=table,
        attention_metadata=np.array([lengths.max(), (lengths + past_lengths).max()], np.int32),
        last_index=cumulative[np.array(scored) + 1] - 1,
        num_blocks=next_block,
    )
