"""The vision encoder's grid-derived inputs (rerank_core.families.qwen3_vl.vision_inputs) equal what transformers'
Qwen3-VL computes from the same grids (transformers.vision_utils, as Qwen3VLVisionModel calls it)."""

import numpy as np
import pytest
import torch
from transformers.vision_utils import (
    get_vision_cu_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)

from rerank_core.families.qwen3_vl.vision_inputs import vision_inputs

GRIDS = [
    [(1, 4, 6)],
    [(1, 90, 160)],  # 1280 × 720
    [(1, 2, 2), (1, 62, 50), (1, 16, 10)],  # several images in one call, one of the smallest
    [(2, 8, 8)],  # two frames
]


@pytest.mark.parametrize("grids", GRIDS, ids=["small", "screenshot", "three-images", "two-frames"])
@pytest.mark.parametrize("positions", [64, 2304])  # the tiny model's 8 × 8 grid, Qwen3-VL's 48 × 48
def test_the_encoders_inputs_are_transformers(grids, positions):
    grid_thw = torch.tensor(grids)
    want_indices, want_weights = get_vision_interpolation_indices_and_weights(
        grid_thw, int(positions**0.5), mode="bilinear", align_corners=True, spatial_merge_size=2
    )
    got = vision_inputs(grids, positions)
    np.testing.assert_array_equal(got.interp_indices, want_indices.numpy())
    np.testing.assert_array_equal(got.interp_weights, want_weights.numpy())
    np.testing.assert_array_equal(got.rotary_ids, get_vision_position_ids(grid_thw, 2).numpy())
    np.testing.assert_array_equal(got.cu_seqlens, get_vision_cu_seqlens(grid_thw).numpy())
    assert got.interp_weights.dtype == np.float32 and got.cu_seqlens.dtype == np.int32
