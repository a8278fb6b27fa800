"""Qwen3-VL's image input (rerank_core.families.qwen3_vl.pixels) against the official recipe: sizes by qwen-vl-utils'
rules (tests/oracle_vl.py), pixels by transformers' own image processor on the same resized image."""

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from rerank_core.errors import ImageRefusedError
from rerank_core.families.qwen3_vl.pixels import PixelBudget, image_patches, image_tokens, resized_size
from tests.oracle_vl import recipe_size

BUDGET = PixelBudget()
SIZES = [(1280, 720), (800, 1000), (300, 200), (20, 30), (5000, 3000), (1, 150), (33, 17), (4000, 40)]


@pytest.fixture(scope="module")
def processor():
    """Qwen3-VL's image processor as its preprocessor_config.json sets it, called as the recipe calls it."""
    return Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_sizes_and_token_counts_follow_the_recipe(width, height):
    want_h, want_w = recipe_size(height, width)
    assert resized_size(width, height, BUDGET, "q") == (want_w, want_h)
    assert image_tokens(width, height, BUDGET, "q") == (want_w // 32) * (want_h // 32)
    assert 4 * 32 * 32 <= want_w * want_h <= 1800 * 32 * 32 or (width, height) == (1, 150)


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (300, 200), (33, 17), (20, 30)])
def test_patches_equal_transformers_image_processor_on_the_recipes_resized_image(processor, width, height):
    rng = np.random.default_rng(width * height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    want_h, want_w = recipe_size(height, width)
    resized = image.resize((want_w, want_h), Image.Resampling.BICUBIC)  # fetch_image's resize (Pillow's default)
    want = processor(images=[resized], do_resize=False, return_tensors="np")
    patches, grid = image_patches(image, BUDGET, "q")
    assert list(grid) == want["image_grid_thw"][0].tolist()
    assert patches.dtype == np.float32 and patches.shape == want["pixel_values"].shape
    np.testing.assert_allclose(patches, want["pixel_values"], atol=1e-6)


def test_an_extreme_aspect_ratio_is_refused_naming_the_input():
    with pytest.raises(ImageRefusedError, match=r"documents\[1\].image: aspect ratio 250 is too extreme") as info:
        resized_size(1, 250, BUDGET, "documents[1].image")
    assert info.value.reason == "aspect"


def test_a_smaller_budget_gives_fewer_tokens():
    small = PixelBudget(min_pixels=4 * 32 * 32, max_pixels=64 * 32 * 32)
    assert image_tokens(1280, 720, small, "q") <= 64 < image_tokens(1280, 720, BUDGET, "q")
    with pytest.raises(ValueError, match="min_pixels ≤ max_pixels"):
        PixelBudget(min_pixels=10, max_pixels=5)
