"""Qwen3's pair tokenization: the template around each pair's content, and content-only truncation, as the official
recipe does; long documents in windows of their own tokens."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ...config import LongDocuments
from ...content import Pair
from ...errors import ConfigError
from ...fast_bpe import fast_bpe
from ...tokenization import EncodedPairs, common_prefix_length, shared_head_lengths
from ...windows import plan_windows
from ..base import PairEncoder
from .template import PREFIX, SUFFIX, content_head, format_content

DEFAULT_MAX_LENGTH = 8192


class PairTokenizer(PairEncoder):
    """Turns pairs into model-ready sequences the way the official Qwen3-Reranker recipe does."""

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
        self._fast = fast_bpe(self._tokenizer)
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

    @property
    def fast(self) -> bool:
        """Whether ids come from the fast BPE path (rerank_core.fast_bpe), else from `tokenizers` alone."""
        return self._fast is not None

    def encode_pairs(
        self, pairs: list[Pair], instruction: str | None, long_documents: LongDocuments, truncation: str
    ) -> EncodedPairs:
        """Each pair in the template: a document over the window is cut (from the right, or from its start with
        `truncation` 'left'), or with `long_documents` mode `chunk` scored in overlapping windows."""
        contents = [format_content(q, d, instruction) for q, d in pairs]
        heads = [content_head(q, instruction) for q, _ in pairs]
        if long_documents.mode == "chunk":
            return self.encode_windows(contents, heads, [d for _, d in pairs], long_documents)
        return self.encode(contents, heads, keep_heads=truncation == "left")

    def encode_text(self, text: str) -> np.ndarray:
        """Token ids of plain text, without the template."""
        return np.asarray(self._ids([text])[0], dtype=np.int64)

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without the template: the fast path where the tokenizer has one."""
        if self._fast is not None:
            return self._fast.encode_batch(texts)
        return [enc.ids for enc in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def cut_documents(self, pairs: list[Pair], max_tokens: int) -> list[Pair]:
        documents = self.cut_texts([d for _, d in pairs], max_tokens)
        return [Pair(q, d) for (q, _), d in zip(pairs, documents)]

    def cut_texts(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut after its first `max_tokens` tokens (as the tokenizer splits it alone); shorter ones whole."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [
            text if len(enc.ids) <= max_tokens else text[: enc.offsets[max_tokens - 1][1]]
            for text, enc in zip(texts, encodings)
        ]

    def encode(
        self, contents: Sequence[str], heads: Sequence[str] | None = None, keep_heads: bool = False
    ) -> EncodedPairs:
        """Tokenize contents and wrap them in the template; only the content is ever cut, never the template.

        `heads` are each content's text before the document (`template.content_head`). Content over the limit
        loses its tail; with `keep_heads` it loses the start of the document instead, where the document is long
        enough.
        """
        if keep_heads and heads is None:
            raise ValueError("keep_heads needs heads")
        encodings = self._ids(contents)
        head_ids = self._head_ids(heads) if heads is not None else {}
        ids, truncated = [], np.zeros(len(encodings), dtype=np.int64)
        for i, enc in enumerate(encodings):
            content = np.asarray(enc, dtype=np.int64)
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
        if heads is None:
            return EncodedPairs(ids=ids, truncated=truncated)
        heads = list(heads)
        return EncodedPairs(ids, truncated, heads, self._shared_head_lengths(ids, heads, head_ids))

    def encode_windows(
        self, contents: Sequence[str], heads: Sequence[str], documents: Sequence[str], spec: LongDocuments
    ) -> EncodedPairs:
        """Tokenize contents and score each document in overlapping windows of its own tokens (rerank_core.windows):
        every window is a row that keeps the template, the instruction and the query whole.

        `documents` are the texts each content ends with, for the windows' character spans. Where the head alone
        leaves no room for the document, the pair is cut as `encode` cuts it.
        """
        encodings = self._tokenizer.encode_batch(list(contents), add_special_tokens=False)
        head_ids = self._head_ids(heads)
        ids, truncated, row_heads, spans, row_starts = [], [], [], [], [0]
        for enc, content_text, head, document in zip(encodings, contents, heads, documents):
            content = np.asarray(enc.ids, dtype=np.int64)
            keep = common_prefix_length(content, head_ids[head])
            fit = self.max_content_tokens - keep
            if fit < 1:  # the head alone fills max_length: cut as `encode` cuts it
                keep, windows, cut = self.max_content_tokens, [(0, 0)], len(content) - self.max_content_tokens
            else:
                windows, cut = plan_windows(len(content) - keep, fit, spec)
            doc_at = len(content_text) - len(document)  # the document's first character in the content
            for k, (a, b) in enumerate(windows):
                ids.append(np.concatenate([self._prefix, content[:keep], content[keep + a : keep + b], self._suffix]))
                truncated.append(cut if k == 0 else 0)
                row_heads.append(head)
                chars = (enc.offsets[keep + a][0], enc.offsets[keep + b - 1][1]) if b > a else (doc_at, doc_at)
                spans.append([min(max(c - doc_at, 0), len(document)) for c in chars])
            row_starts.append(len(ids))
        return EncodedPairs(
            ids=ids,
            truncated=np.asarray(truncated, dtype=np.int64),
            heads=row_heads,
            head_lengths=self._shared_head_lengths(ids, row_heads, head_ids),
            row_starts=np.asarray(row_starts, dtype=np.int64),
            spans=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
            aggregate=spec.aggregate,
        )

    def _head_ids(self, heads: Sequence[str]) -> dict[str, np.ndarray]:
        unique = list(dict.fromkeys(heads))
        return {h: np.asarray(ids, dtype=np.int64) for h, ids in zip(unique, self._ids(unique))}

    def _shared_head_lengths(
        self, ids: list[np.ndarray], heads: list[str], head_ids: dict[str, np.ndarray]
    ) -> np.ndarray:
        """shared_head_lengths of rows that all start with the template's prefix."""
        return shared_head_lengths(ids, heads, {h: np.concatenate([self._prefix, t]) for h, t in head_ids.items()})

    @property
    def prefix_ids(self) -> np.ndarray:
        """The template's system prefix: the first tokens of every sequence."""
        return self._prefix
