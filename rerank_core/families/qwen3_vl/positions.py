"""Qwen3-VL's 3-D rotary positions (mRoPE) of one prompt, in numpy: text tokens count on in all three rows; an image's
tokens take (t, row, column) of its merged grid from where the text stopped, and the text after it resumes past the
image's largest position."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .pixels import MERGE_SIZE


def mrope_positions(ids: Sequence[int], grids: Sequence[tuple[int, int, int]], image_pad_id: int) -> np.ndarray:
    """[3, len(ids)] int64 positions; `grids` the (t, h, w) patch grid of each image, in prompt order, one per run
    of image pad tokens (the last run may stop short of its image: ids that end inside it)."""
    ids = np.asarray(ids)
    is_pad = ids == image_pad_id
    positions = np.empty((3, len(ids)), dtype=np.int64)
    next_grid, start, current = iter(grids), 0, 0
    while start < len(ids):
        end = start + 1
        while end < len(ids) and is_pad[end] == is_pad[start]:
            end += 1
        if not is_pad[start]:
            positions[:, start:end] = np.arange(current, current + end - start)
            current += end - start
        else:
            t, h, w = next(next_grid)
            rows, columns = h // MERGE_SIZE, w // MERGE_SIZE
            if t * rows * columns != end - start and not (end == len(ids) and end - start < t * rows * columns):
                raise ValueError(f"an image of {t}×{rows}×{columns} tokens met a run of {end - start} image pads")
            grid_t, grid_h, grid_w = np.meshgrid(np.arange(t), np.arange(rows), np.arange(columns), indexing="ij")
            grid = np.stack([grid_t.ravel(), grid_h.ravel(), grid_w.ravel()])
            positions[:, start:end] = grid[:, : end - start] + current
            current += max(rows, columns)
        start = end
    return positions
