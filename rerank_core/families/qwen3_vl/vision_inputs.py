"""What Qwen3-VL's vision encoder derives from each image's patch grid, computed outside the model in numpy (so the
encoder's graph takes them as inputs and has no data-dependent shapes): the bilinear taps that resample its learned
square position grid to the image, the (row, column) of each patch for its 2-D rotary embedding, and where each
image's patches start and end (attention stays within an image). Patches are in merge-block order, as the
processor emits them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .pixels import MERGE_SIZE


@dataclass(frozen=True)
class VisionInputs:
    """The encoder's grid-derived inputs for a batch of images, patches of all images one after another."""

    interp_indices: np.ndarray  # [patches, 4] int64: rows of the flattened position table, 2 × 2 taps
    interp_weights: np.ndarray  # [patches, 4] float32
    rotary_ids: np.ndarray  # [patches, 2] int64: (row, column) of each patch in its image
    cu_seqlens: np.ndarray  # [frames + 1] int32: each frame's first patch, then the total


def vision_inputs(grids: Sequence[tuple[int, int, int]], num_position_embeddings: int) -> VisionInputs:
    """The inputs for images of patch grids `grids` ((t, h, w) each) and a learned grid of `num_position_embeddings`
    (a square) positions."""
    side = int(round(num_position_embeddings**0.5))
    rows, columns = [], []
    for t, h, w in grids:
        row, column = _block_order(h, w)
        rows.append(np.tile(row, t))
        columns.append(np.tile(column, t))
    row, column = np.concatenate(rows), np.concatenate(columns)
    heights = np.concatenate([np.full(t * h * w, h) for t, h, w in grids])
    widths = np.concatenate([np.full(t * h * w, w) for t, h, w in grids])
    row_taps, row_weights = _bilinear_taps(row, heights, side)
    column_taps, column_weights = _bilinear_taps(column, widths, side)
    indices = (row_taps[:, :, None] * side + column_taps[:, None, :]).reshape(-1, 4)
    weights = (row_weights[:, :, None] * column_weights[:, None, :]).reshape(-1, 4)
    frames = np.repeat([h * w for _, h, w in grids], [t for t, _, _ in grids])
    cu_seqlens = np.concatenate([[0], np.cumsum(frames)]).astype(np.int32)
    return VisionInputs(indices.astype(np.int64), weights, np.stack([row, column], axis=1).astype(np.int64), cu_seqlens)


def _block_order(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of an h × w grid's patches listed 2 × 2 merge block by block, rows of blocks first."""
    row, column = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    shape = (h // MERGE_SIZE, MERGE_SIZE, w // MERGE_SIZE, MERGE_SIZE)
    return row.reshape(shape).transpose(0, 2, 1, 3).ravel(), column.reshape(shape).transpose(0, 2, 1, 3).ravel()


def _bilinear_taps(index: np.ndarray, size: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Per axis: the 2 source rows of each target position and their weights, corners aligned (the first and last
    positions land on the table's), in float32 as the model computes them."""
    source = index.astype(np.float32) * np.float32(side - 1) / np.maximum(size - 1, 1).astype(np.float32)
    floor = np.floor(source)
    offsets = np.arange(2)
    taps = np.clip(floor.astype(np.int64)[:, None] + offsets, 0, side - 1)
    weights = np.clip(1 - np.abs(source[:, None] - floor[:, None] - offsets.astype(np.float32)), 0, None)
    return taps, weights.astype(np.float32)
