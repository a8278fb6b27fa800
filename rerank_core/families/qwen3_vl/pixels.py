"""Qwen3-VL's image input as its official reranker recipe makes it, with numpy and Pillow only: the size snapped to
32-pixel blocks within the recipe's pixel budget (its own constants, not preprocessor_config.json's), a bicubic
resize, then the processor's rescale, normalization and 16-pixel patches, each frame repeated to the temporal patch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import ImageRefusedError

PATCH_SIZE = 16
MERGE_SIZE = 2  # 2 × 2 patches make one token after the merger
TEMPORAL_PATCH_SIZE = 2
BLOCK = PATCH_SIZE * MERGE_SIZE  # one token's square of pixels
MEAN = STD = 0.5
MAX_ASPECT_RATIO = 200


@dataclass(frozen=True)
class PixelBudget:
    """How many pixels an image is resized into: the recipe's 4 to 1,800 tokens of 32 × 32 pixels by default."""

    min_pixels: int = 4 * BLOCK * BLOCK
    max_pixels: int = 1800 * BLOCK * BLOCK

    def __post_init__(self):
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"PixelBudget: need 0 < min_pixels ≤ max_pixels, got {self.min_pixels}, {self.max_pixels}")


def resized_size(width: int, height: int, budget: PixelBudget, where: str) -> tuple[int, int]:
    """(width, height) the recipe resizes a width × height image to: multiples of 32 nearest the image, scaled
    down (floored) past max_pixels or up (ceiled) below min_pixels; an aspect ratio over 200 is refused."""
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        ratio = f"{max(width, height) / min(width, height):.0f}"
        raise ImageRefusedError(where, f"aspect ratio {ratio} is too extreme", f"{MAX_ASPECT_RATIO}", "aspect")
    new_h = max(BLOCK, round(height / BLOCK) * BLOCK)
    new_w = max(BLOCK, round(width / BLOCK) * BLOCK)
    if new_h * new_w > budget.max_pixels:
        beta = math.sqrt(height * width / budget.max_pixels)
        new_h, new_w = math.floor(height / beta / BLOCK) * BLOCK, math.floor(width / beta / BLOCK) * BLOCK
    elif new_h * new_w < budget.min_pixels:
        beta = math.sqrt(budget.min_pixels / (height * width))
        new_h, new_w = math.ceil(height * beta / BLOCK) * BLOCK, math.ceil(width * beta / BLOCK) * BLOCK
    return new_w, new_h


def image_tokens(width: int, height: int, budget: PixelBudget, where: str) -> int:
    """How many `<|image_pad|>` tokens a width × height image takes, read from its size alone."""
    new_w, new_h = resized_size(width, height, budget, where)
    return (new_w // BLOCK) * (new_h // BLOCK)


def image_patches(image, budget: PixelBudget, where: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(patches [tokens × 4, 3 × 2 × 16 × 16] float32, grid (t, h, w) in patches) of an RGB PIL image, in the
    order of the processor: each 2 × 2 group of patches that merges into one token, rows of groups first."""
    return patches_of(resized_pixels(image, budget, where))


def resized_pixels(image, budget: PixelBudget, where: str) -> np.ndarray:
    """An RGB PIL image resized as the recipe resizes it (bicubic, to `resized_size`): [height, width, 3] uint8."""
    from PIL import Image

    new_w, new_h = resized_size(*image.size, budget, where)
    return np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC), dtype=np.uint8)


def patches_of(pixels: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """`image_patches` of pixels already resized (resized_pixels): rescaled, normalized, cut into patches."""
    height, width = pixels.shape[:2]
    pixels = (pixels.astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD)
    grid_h, grid_w = height // PATCH_SIZE, width // PATCH_SIZE
    channels = pixels.transpose(2, 0, 1)  # C, H, W
    blocks = channels.reshape(
        3, grid_h // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE, grid_w // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE
    ).transpose(1, 4, 2, 5, 0, 3, 6)  # block row, block column, row in block, column in block, C, y, x
    frames = np.broadcast_to(blocks[:, :, :, :, :, None], (*blocks.shape[:5], TEMPORAL_PATCH_SIZE, *blocks.shape[5:]))
    patches = np.ascontiguousarray(frames).reshape(grid_h * grid_w, 3 * TEMPORAL_PATCH_SIZE * PATCH_SIZE**2)
    return patches, (1, grid_h, grid_w)
