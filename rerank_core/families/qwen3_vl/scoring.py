"""Scoring Qwen3-VL-Reranker pairs on its two ONNX graphs (export.py): each side's images taken safely and patched,
the recipe's prompt and cut, 3-D positions and the vision encoder's grid inputs in numpy; one vision run for the
call's images, one decoder run over its rows (right-padded), sigmoid of the yes − no logit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import InvalidInputError
from ...image_intake import ImagePolicy, take_image
from .export import DECODER_GRAPH, SETTINGS, VISION_GRAPH
from .pixels import MERGE_SIZE, PixelBudget, image_patches
from .positions import mrope_positions
from .template import MAX_LENGTH, Side, check_texts, prompt, truncate
from .vision_inputs import vision_inputs

DEFAULT_POLICY, DEFAULT_BUDGET = ImagePolicy(), PixelBudget()


@dataclass
class _Row:
    ids: list[int]
    patches: list[np.ndarray]
    grids: list[tuple[int, int, int]]


class VLScorer:
    """Scores (query, document) pairs whose sides are a string or {"text": str | [str], "image": IMAGE | [IMAGE]}."""

    def __init__(self, folder: Path, policy: ImagePolicy, budget: PixelBudget, threads: int | None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        self.vision = ort.InferenceSession(str(folder / VISION_GRAPH), options, providers=providers)
        self.decoder = ort.InferenceSession(str(folder / DECODER_GRAPH), options, providers=providers)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.settings = json.loads((folder / SETTINGS).read_text())
        self.special_ids = frozenset(self.settings["special_ids"])
        self.policy, self.budget = policy, budget

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        policy: ImagePolicy = DEFAULT_POLICY,
        budget: PixelBudget = DEFAULT_BUDGET,
        threads: int | None = None,
    ) -> VLScorer:
        """The scorer of an export folder written by export_vl_checkpoint."""
        return cls(Path(folder), policy, budget, threads)

    def score(self, pairs: Sequence[tuple], instruction: str | None = None, max_length: int = MAX_LENGTH) -> np.ndarray:
        """Relevance in 0..1 of each pair, all in one call."""
        rows = [self._row(pair, i, instruction, max_length) for i, pair in enumerate(pairs)]
        if not rows:
            return np.zeros(0, dtype=np.float32)
        width, hidden = max(len(r.ids) for r in rows), self.settings["hidden_size"]
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        positions = np.zeros((3, len(rows), width), dtype=np.int64)
        image_positions = []
        for b, row in enumerate(rows):
            input_ids[b, : len(row.ids)], mask[b, : len(row.ids)] = row.ids, 1
            positions[:, b, : len(row.ids)] = mrope_positions(row.ids, row.grids, self.settings["image_pad_id"])
            image_positions += [b * width + i for i, t in enumerate(row.ids) if t == self.settings["image_pad_id"]]
        grids = [g for row in rows for g in row.grids]
        if grids:
            grid_inputs = vision_inputs(grids, self.settings["num_position_embeddings"])
            features, deepstack = self.vision.run(
                None,
                {
                    "pixel_values": np.concatenate([p for row in rows for p in row.patches]),
                    "interp_indices": grid_inputs.interp_indices,
                    "interp_weights": grid_inputs.interp_weights,
                    "rotary_ids": grid_inputs.rotary_ids,
                    "cu_seqlens": grid_inputs.cu_seqlens,
                },
            )
        else:
            features = np.zeros((0, hidden), dtype=np.float32)
            deepstack = np.zeros((self.settings["deepstack_layers"], 0, hidden), dtype=np.float32)
        (logits,) = self.decoder.run(
            None,
            {
                "input_ids": input_ids,
                "attention_mask": mask,
                "position_ids": positions,
                "image_positions": np.asarray(image_positions, dtype=np.int64),
                "image_features": features,
                "deepstack": deepstack,
                "last_index": mask.sum(axis=1) - 1,
            },
        )
        return (1 / (1 + np.exp(-logits.astype(np.float64)))).astype(np.float32)

    def _row(self, pair: tuple, index: int, instruction: str | None, max_length: int) -> _Row:
        sides, patches, grids = [], [], []
        for name, side in zip(("query", f"documents[{index}]"), pair):
            texts, images = _parts(side, name)
            check_texts(texts, name)
            tokens = []
            for k, image in enumerate(images):
                where = f"{name}.image[{k}]"
                image_patch, (t, h, w) = image_patches(take_image(image, where, self.policy).image, self.budget, where)
                patches.append(image_patch)
                grids.append((t, h, w))
                tokens.append(t * h * w // MERGE_SIZE**2)  # one token per merged block of patches
            sides.append(Side(texts=tuple(texts), image_tokens=tuple(tokens)))
        ids = self.tokenizer.encode(prompt(*sides, instruction), add_special_tokens=False).ids
        return _Row(truncate(ids, max_length, self.special_ids), patches, grids)


def _parts(side: object, name: str) -> tuple[list[str], list]:
    """(texts, images) of one side: a string, or {"text": str | [str], "image": IMAGE | [IMAGE]}."""
    if isinstance(side, str):
        return [side], []
    if isinstance(side, dict) and "video" in side:
        raise InvalidInputError(name, "video is not supported yet", "text and images")
    if not isinstance(side, dict) or set(side) - {"text", "image"}:
        raise InvalidInputError(name, 'must be a string or an object with "text" and/or "image"')
    texts, images = side.get("text", []), side.get("image", [])
    return ([texts] if isinstance(texts, str) else list(texts)), (
        list(images) if isinstance(images, list) else [images]
    )
