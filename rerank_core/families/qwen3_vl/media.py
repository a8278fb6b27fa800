"""An image in a Qwen3-VL row: taken in once per request, resized as the recipe resizes it, and named by a key that
its tokens carry in place of `<|image_pad|>`, so two different images never share ids (nor a cache entry)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ...image_intake import ImagePolicy, take_image
from .pixels import MERGE_SIZE, PATCH_SIZE, PixelBudget, resized_pixels


@dataclass(frozen=True)
class ImageEntry:
    """One distinct image of a request: its resized pixels and the grid of patches they make."""

    pixels: np.ndarray  # [height, width, 3] uint8, as resized_pixels makes them
    grid: tuple[int, int, int]  # (t, h, w) in 16-pixel patches

    @property
    def tokens(self) -> int:
        """How many image tokens it takes in the prompt: one per merged 2 × 2 block of patches."""
        t, h, w = self.grid
        return t * h * w // MERGE_SIZE**2


def image_id(digest: str, budget: PixelBudget) -> int:
    """The id an image's tokens carry: negative (never a vocabulary id), from a digest of its bytes and of the
    pixel budget it is resized under (the same bytes under another budget are another input)."""
    key = hashlib.blake2b(f"{digest}:{budget.min_pixels}:{budget.max_pixels}".encode(), digest_size=8).digest()
    return -1 - (int.from_bytes(key, "little") >> 2)  # 62 bits: below zero, far from int64's end


def take(source: object, where: str, policy: ImagePolicy, budget: PixelBudget, seen: dict[int, ImageEntry]) -> int:
    """Take the image `source` in (refused with a typed error naming `where`), resize it unless `seen` has it
    already, and return its id."""
    taken = take_image(source, where, policy)
    key = image_id(taken.digest, budget)
    if key not in seen:
        pixels = resized_pixels(taken.image, budget, where)
        seen[key] = ImageEntry(pixels, (1, pixels.shape[0] // PATCH_SIZE, pixels.shape[1] // PATCH_SIZE))
    return key
