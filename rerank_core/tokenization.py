"""Pair tokenization with `tokenizers` only: template ids and content-only truncation, as the official recipe does."""

from __future__ import annotations

from collections import Counter
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
    # Tokens each sequence shares with the others of its head (template prefix + head, found on the ids), at most
    # its length − 1; 0 where its head is the only one of its kind in the encoded request.
    head_lengths: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every sequence, prefix and suffix included."""
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    @classmethod
    def concat(cls, parts: Sequence[EncodedPairs]) -> EncodedPairs:
        """Several encodings as one, in order."""
        ids = [row for part in parts for row in part.ids]
        truncated = np.concatenate([part.truncated for part in parts]) if parts else np.zeros(0, np.int64)
        heads = head_lengths = None
        if all(part.heads is not None for part in parts):
            heads = [head for part in parts for head in part.heads]
        if parts and all(part.head_lengths is not None for part in parts):
            head_lengths = np.concatenate([part.head_lengths for part in parts])
        return cls(ids=ids, truncated=truncated, heads=heads, head_lengths=head_lengths)

    def select(self, rows: Sequence[int]) -> EncodedPairs:
        """The pairs at positions `rows`, in that order."""
        return EncodedPairs(
            ids=[self.ids[r] for r in rows],
            truncated=self.truncated[np.asarray(rows, dtype=np.int64)],
            heads=None if self.heads is None else [self.heads[r] for r in rows],
            head_lengths=None if self.head_lengths is None else self.head_lengths[np.asarray(rows, dtype=np.int64)],
        )


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
        if heads is not None:
            unique = list(dict.fromkeys(heads))
            encoded_heads = self._tokenizer.encode_batch(unique, add_special_tokens=False)
            head_ids = {h: np.asarray(e.ids, dtype=np.int64) for h, e in zip(unique, encoded_heads)}
        ids, truncated = [], np.zeros(len(encodings), dtype=np.int64)
        head_lengths = np.zeros(len(encodings), dtype=np.int64)
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
            if heads is not None:
                head_lengths[i] = len(self._prefix) + common_prefix_length(content, head_ids[heads[i]])
        if heads is None:
            return EncodedPairs(ids=ids, truncated=truncated)
        head_lengths = np.minimum(head_lengths, np.fromiter(map(len, ids), np.int64, len(ids)) - 1)
        # One length per head (a document's first token may merge with the head's last): the same query gives the
        # same prefix in every part of the request; a head of one pair has nothing to share.
        shortest: dict[str, int] = {}
        for head, length in zip(heads, head_lengths.tolist()):
            shortest[head] = min(length, shortest.get(head, length))
        counts = Counter(heads)
        head_lengths = np.array([shortest[h] if counts[h] > 1 else 0 for h in heads], dtype=np.int64)
        return EncodedPairs(ids=ids, truncated=truncated, heads=list(heads), head_lengths=head_lengths)

    @property
    def prefix_ids(self) -> np.ndarray:
        """The template's system prefix: the first tokens of every sequence."""
        return self._prefix
