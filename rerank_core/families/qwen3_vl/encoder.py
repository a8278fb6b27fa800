"""Qwen3-VL-Reranker pairs as token rows: each side's images taken in and resized, the recipe's prompt tokenized
whole (byte-level BPE merges across the joins), the recipe's cut, then each image's pad tokens replaced by the
image's id (media.py), so rows and everything keyed on them tell two images apart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from ...config import LongDocuments
from ...content import Content, Image, Pair, Text
from ...errors import InvalidInputError
from ...image_intake import ImagePolicy, image_header
from ...tokenization import EncodedPairs, shared_head_lengths
from ..base import PairEncoder
from .media import ImageEntry, take
from .pixels import BLOCK, PixelBudget, image_tokens
from .settings import VLSettings
from .template import PREFIX, Side, check_texts, head, prompt, truncate


@dataclass(frozen=True)
class _Side:
    side: Side  # as the template lays it out
    images: tuple[int, ...]  # each image's id, in prompt order


class VLPairEncoder(PairEncoder):
    """Turns pairs whose sides are text or Content (text and Image parts) into the rows the recipe scores."""

    fast = False

    def __init__(
        self,
        tokenizer: Tokenizer,
        settings: VLSettings,
        pad_id: int,
        max_length: int,
        policy: ImagePolicy,
        budget: PixelBudget,
    ):
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._settings, self._special = settings, frozenset(settings.special_ids)
        self.pad_id, self.max_length = int(pad_id), int(max_length)
        self.policy, self.budget = policy, budget
        self.prefix_ids = self._encode([PREFIX])[0]

    def image_tokens(self, image: Image, where: str, *, at_most: bool = False) -> int:
        """An encoded image's `<|vision_start|>`, pads and `<|vision_end|>`, read from its header (for a URL or a
        PIL image, known once taken in: 0, or with `at_most` the pixel budget's most)."""
        if not isinstance(image.source, (bytes, bytearray, memoryview)):
            return self.budget.max_pixels // BLOCK**2 + 2 if at_most else 0
        width, height = image_header(bytes(image.source), where, self.policy)
        return image_tokens(width, height, self.budget, where) + 2

    def encode_pairs(
        self, pairs: list[Pair], instruction: str | None, long_documents: LongDocuments, truncation: str
    ) -> EncodedPairs:
        """Each pair as the recipe prompts and cuts it: of all tokens but the last five, the special ones (image
        pads, chat markers) always stay and the others only up to `max_length`."""
        if long_documents.mode == "chunk":
            raise InvalidInputError("long_documents", "Qwen3-VL-Reranker cuts a pair as its recipe does", "truncate")
        if truncation != "right":
            raise InvalidInputError("truncation", "Qwen3-VL-Reranker cuts a pair as its recipe does", "right")
        media: dict[int, ImageEntry] = {}
        sides = [
            (self._side(query, f"pairs[{i}].query", media), self._side(document, f"pairs[{i}].document", media))
            for i, (query, document) in enumerate(pairs)
        ]
        whole = self._encode([prompt(q.side, d.side, instruction) for q, d in sides])
        ids, truncated = [], np.zeros(len(sides), dtype=np.int64)
        for i, ((q, d), row) in enumerate(zip(sides, whole)):
            cut = np.asarray(truncate(row.tolist(), self.max_length, self._special), dtype=np.int64)
            truncated[i] = len(row) - len(cut)
            ids.append(self._with_image_ids(cut, q.images + d.images))
        heads = [repr((instruction, q.side.texts, q.images)) for q, _ in sides]
        first = dict(zip(heads, (q for q, _ in sides)))
        head_rows = self._encode([head(q.side, instruction) for q in first.values()])
        head_ids = {h: self._with_image_ids(row, q.images) for (h, q), row in zip(first.items(), head_rows)}
        return EncodedPairs(ids, truncated, heads, shared_head_lengths(ids, heads, head_ids), media=media)

    def cut_documents(self, pairs: list[Pair], max_tokens: int) -> list[Pair]:
        return [Pair(query, self._cut(document, max_tokens)) for query, document in pairs]

    def _cut(self, document: str | Content, max_tokens: int) -> str | Content:
        """A document's text cut after its first `max_tokens` tokens, counted over its text parts in order; its
        images stay."""
        parts, left = [], max_tokens
        for part in (Text(document),) if isinstance(document, str) else document.parts:
            if isinstance(part, Text):
                encoding = self._tokenizer.encode(part.text, add_special_tokens=False)
                if len(encoding.ids) > left:
                    part = Text(part.text[: encoding.offsets[left - 1][1]] if left else "")
                left = max(left - len(encoding.ids), 0)
            parts.append(part)
        return parts[0].text if isinstance(document, str) else Content(tuple(parts))

    def _side(self, value: str | Content, where: str, media: dict[int, ImageEntry]) -> _Side:
        parts = (value,) if isinstance(value, str) else value.parts
        texts = tuple(p if isinstance(p, str) else p.text for p in parts if not isinstance(p, Image))
        check_texts(texts, where)
        images = [p.source for p in parts if isinstance(p, Image)]
        keys = tuple(take(s, f"{where}.image[{k}]", self.policy, self.budget, media) for k, s in enumerate(images))
        side = Side(texts=tuple(t for t in texts if t), image_tokens=tuple(media[k].tokens for k in keys))
        return _Side(side, keys)

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def _with_image_ids(self, ids: np.ndarray, images: tuple[int, ...]) -> np.ndarray:
        """`ids` with the k-th run of image pads carrying the k-th image's id (truncation never cuts a pad)."""
        ids = ids.copy()
        is_pad = ids == self._settings.image_pad_id
        starts = np.flatnonzero(is_pad & ~np.r_[False, is_pad[:-1]])
        ends = np.flatnonzero(is_pad & ~np.r_[is_pad[1:], False]) + 1
        if len(starts) != len(images):
            raise ValueError(f"{len(images)} images met {len(starts)} runs of image pads")
        for start, end, key in zip(starts, ends, images):
            ids[start:end] = key
        return ids
