"""What encoding an image costs, counted in the decoder's tokens: the vision encoder's multiply-adds for the image
over the decoder's per token, both from the checkpoint's config.json, so a scheduler weighs an image's encoding
against the tokens it would otherwise fit in a model call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelFormatError


@dataclass(frozen=True)
class VisionCost:
    """An image's encoding in decoder tokens: linear in its patches (the blocks' and mergers' weights), plus its
    attention, quadratic in them (each block attends within one image)."""

    per_patch: float
    per_patch_pair: float

    @classmethod
    def of_config(cls, config: dict) -> VisionCost:
        """The cost model of a Qwen3-VL config (its `vision_config` and `text_config`)."""
        vision, text = config["vision_config"], config["text_config"]
        h, depth = vision["hidden_size"], vision["depth"]
        merged = h * vision["spatial_merge_size"] ** 2
        mergers = 1 + len(vision["deepstack_visual_indexes"])  # the final merger and one per DeepStack block
        patch_in = vision.get("in_channels", 3) * vision["temporal_patch_size"] * vision["patch_size"] ** 2
        per_patch = (
            patch_in * h
            + depth * (4 * h * h + 2 * h * vision["intermediate_size"])
            + mergers * (merged * merged + merged * vision["out_hidden_size"]) / vision["spatial_merge_size"] ** 2
        )
        d, heads = text["hidden_size"], text["num_attention_heads"]
        head_dim = text.get("head_dim") or d // heads
        kv = text.get("num_key_value_heads", heads) * head_dim
        per_token = text["num_hidden_layers"] * (
            2 * d * heads * head_dim + 2 * d * kv + 3 * d * text["intermediate_size"]
        )
        return cls(per_patch / per_token, depth * 2 * h / per_token)  # attention: q·k and weights·v per patch pair

    @classmethod
    def of_folder(cls, folder: Path) -> VisionCost:
        """The cost model of an export folder (the checkpoint's config.json, which every export carries)."""
        try:
            return cls.of_config(json.loads((folder / "config.json").read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFormatError(
                f"{folder}/config.json does not describe a Qwen3-VL model ({type(exc).__name__}: {exc}); "
                "re-export it with `rerank export`"
            ) from exc

    def of_image(self, patches: int) -> int:
        """Tokens' worth of work to encode one image of `patches` 16-pixel patches."""
        return round(patches * (self.per_patch + patches * self.per_patch_pair))
