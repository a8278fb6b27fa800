"""Pair tokenization with `tokenizers` only: template ids and content-only truncation, as the official recipe does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .errors import ConfigError
from .formatting import PREFIX, SUFFIX

DEFAULT_MAX_LENGTH = 8192


def common_prefix_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading token ids `a` and `b` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass(frozen=True)
class EncodedPairs:
    """Token ids of formatted pairs (prefix + content + suffix), with how many content tokens were cut from each."""

    ids: list[np.ndarray]
    truncated: np.ndarray  # int64 per pair: content tokens dropped by truncation
    # Each pair's content text before the document (formatting.content_head), when known: pairs with the same head
    # start with the same prompt, which prefix sharing runs once.
    heads: list[str] | None = None

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every sequence, prefix and suffix included."""
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    @classmethod
    def concat(cls, parts: Sequence[EncodedPairs]) -> EncodedPairs:
        """Several encodings as one, in order."""
        ids = [row for part in parts for row in part.ids]
        truncated = np.concatenate([part.truncated for part in parts]) if parts else np.zeros(0, np.int64)
        heads = None
        if all(part.heads is not None for part in parts):
            heads = [head for part in parts for head in part.heads]
        return cls(ids=ids, truncated=truncated, heads=heads)


class PairTokenizer:
    """Turns formatted contents into model-ready sequences the way the official Qwen3-Reranker recipe does."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        pad_id: int,
        max_length: int = DEFAULT_MAX_LENGTH,
        prefix: str = PREFIX,
        suffix: str = SUFFIX,
    ):
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.pad_id = int(pad_id)
        self.max_length = int(max_length)
        self._prefix, self._suffix = self.encode_text(prefix), self.encode_text(suffix)
        self.max_content_tokens = self.max_length - len(self._prefix) - len(self._suffix)
        if self.max_content_tokens < 1:
            raise ConfigError(
                f"max_length: {max_length} leaves no room for content after the "
                f"{len(self._prefix) + len(self._suffix)} template tokens"
            )

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> PairTokenizer:
        """Load `tokenizer.json` from `path`."""
        return cls(Tokenizer.from_file(str(path)), **kwargs)

    def encode_text(self, text: str) -> np.ndarray:
        """Token ids of plain text, without the template."""
        return np.asarray(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode(
        self, contents: Sequence[str], heads: Sequence[str] | None = None, keep_heads: bool = False
    ) -> EncodedPairs:
        """Tokenize contents and wrap them in the template; only the content is ever cut, never the template.

        `heads` are each content's text before the document (`formatting.content_head`). Content over the limit
        loses its tail; with `keep_heads` it loses the start of the document instead, where the document is long
        enough.
        """
        if keep_heads and heads is None:
            raise ValueError("keep_heads needs heads")
        encodings = self._tokenizer.encode_batch(list(contents), add_special_tokens=False)
        head_ids = {}
        if keep_heads:
            unique = list(dict.fromkeys(heads))
            encoded_heads = self._tokenizer.encode_batch(unique, add_special_tokens=False)
            head_ids = {h: np.asarray(e.ids, dtype=np.int64) for h, e in zip(unique, encoded_heads)}
        ids, truncated = [], np.zeros(len(encodings), dtype=np.int64)
        for i, enc in enumerate(encodings):
            content = np.asarray(enc.ids, dtype=np.int64)
            excess = len(content) - self.max_content_tokens
            if excess > 0:
                truncated[i] = excess
                # The head's tokens are found on the ids (BPE may merge across the boundary, so never by strings).
                keep = common_prefix_length(content, head_ids[heads[i]]) if keep_heads else None
                if keep is not None and len(content) - keep > excess:
                    content = np.concatenate([content[:keep], content[keep + excess :]])
                else:
                    content = content[: self.max_content_tokens]
            ids.append(np.concatenate([self._prefix, content, self._suffix]))
        return EncodedPairs(ids=ids, truncated=truncated, heads=None if heads is None else list(heads))

    @property
    def prefix_ids(self) -> np.ndarray:
        """The template's system prefix: the first tokens of every sequence."""
        return self._prefix
