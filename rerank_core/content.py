"""What a pair holds: a query and a document, each text or content made of parts (text, images). Plain
`(query, document)` strings are accepted everywhere a pair is, and so is a side given as `{"text": …, "image": …}`
(the shape of the Qwen3-VL recipe and DashScope)."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .errors import InvalidInputError

# What an image is counted as where no model sizes it (a remote service): Qwen3-VL's tokens for a ~1 MP image.
IMAGE_TOKENS_ESTIMATE = 1_024


@dataclass(frozen=True)
class Text:
    """A part of content that is text."""

    text: str


@dataclass(frozen=True, eq=False)
class Image:
    """A part of content that is an image, as the client gave it: bytes, a `data:` URI, a PIL image, a path or
    `file://` URI, or an http(s) URL (rerank_core.image_intake takes it in)."""

    source: object

    def _identity(self) -> tuple:
        """Text and bytes compare by value; other sources (a PIL image) by which object they are."""
        return (type(self.source), self.source if isinstance(self.source, (str, bytes)) else id(self.source))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())


Part = Text | Image  # the kinds of part a side may hold; a family says which it takes


@dataclass(frozen=True)
class Content:
    """One side of a pair as parts, in the order the client gave them."""

    parts: tuple[Part, ...]

    def __post_init__(self):
        if not isinstance(self.parts, tuple) or not all(isinstance(p, Part) for p in self.parts):
            raise TypeError("Content.parts: expected a tuple of parts (Text, Image)")

    @property
    def text(self) -> str | None:
        """The content as one string when it is a single text part, else None."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Text):
            return self.parts[0].text
        return None


Side = str | Content


class Pair(NamedTuple):
    """A (query, document) pair; a plain tuple of two strings is one too."""

    query: Side
    document: Side


def named_by_input(
    exc: InvalidInputError, queries: int, documents: int, fields: tuple[str, str] = ("query", "documents")
) -> InvalidInputError:
    """`exc` about `pairs[i].query…` or `pairs[i].document…` of a queries × documents grid, naming the query or the
    document as the caller gave them (documents[3].image[0]; `fields` names the two lists)."""
    match = re.fullmatch(r"pairs\[(\d+)\]\.(query|document)(.*)", exc.field or "")
    if match is None:
        return exc
    q, d = divmod(int(match[1]), documents)
    side = f"{fields[0]}[{q}]" if queries > 1 else fields[0]
    field = (side if match[2] == "query" else f"{fields[1]}[{d}]") + match[3]
    renamed = copy.copy(exc)
    renamed.field = field
    renamed.args = (f"{field}: {exc._message}" + (f" (limit: {exc.limit})" if exc.limit else ""),)
    return renamed


def check_text(value: object, field: str, *, allow_empty: bool) -> str:
    """Return `value` if it is a usable string, else raise InvalidInputError naming `field`."""
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InvalidInputError(field, "must not be empty")
    return value


def content_of(value: dict, field: str) -> Content:
    """A side given as {"text": str | [str], "image": IMAGE | [IMAGE]} as Content: its images, then its texts."""
    if "video" in value:
        raise InvalidInputError(field, "video is not supported yet", "text and images")
    if unknown := sorted(map(str, set(value) - {"text", "image"})):
        raise InvalidInputError(field, f'unknown key {unknown[0]!r}: a side is text or {{"text": …, "image": …}}')
    texts, images = value.get("text", []), value.get("image", [])
    texts = [texts] if isinstance(texts, str) else texts
    images = images if isinstance(images, list) else [images]
    if not isinstance(texts, list):
        raise InvalidInputError(f"{field}.text", "must be a string or a list of strings")
    parts = [Image(source) for source in images]
    parts += [Text(check_text(t, f"{field}.text[{k}]", allow_empty=True)) for k, t in enumerate(texts)]
    return Content(tuple(parts))


def _check_side(value: object, field: str, *, allow_empty: bool) -> Side:
    """A side as a string (a Content of one text part becomes its text), or a Content of several parts."""
    if isinstance(value, dict):
        value = content_of(value, field)
    if isinstance(value, Content):
        if value.text is None:
            if not value.parts and not allow_empty:
                raise InvalidInputError(field, "must not be empty")
            return value
        value = value.text
    return check_text(value, field, allow_empty=allow_empty)


def validate_pairs(pairs: Sequence[Pair | tuple[Side, Side]]) -> list[Pair]:
    """Check every pair is (non-empty query, document); raise on the first that is not."""
    checked = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidInputError(f"pairs[{i}]", "must be a (query, document) pair")
        query = _check_side(pair[0], f"pairs[{i}].query", allow_empty=False)
        document = _check_side(pair[1], f"pairs[{i}].document", allow_empty=True)
        checked.append(Pair(query, document))
    return checked


def text_only(pairs: Sequence[Pair], model: str) -> None:
    """Refuse pairs with anything but text, naming the first such side: `model` takes text only."""
    for i, pair in enumerate(pairs):
        for side, value in zip(("query", "document"), pair):
            if not isinstance(value, str):
                what = "images" if any(isinstance(p, Image) for p in value.parts) else "content parts"
                raise InvalidInputError(f"pairs[{i}].{side}", f"{model} takes text only, not {what}")


def digest(*sides: Side) -> bytes:
    """A 16-byte digest that is equal exactly when the sides are (text, and each part's kind and bytes; an image
    by its bytes, its pixels, or the URL or path that names it)."""
    hasher = hashlib.blake2b(digest_size=16)
    for side in sides:
        parts = (Text(side),) if isinstance(side, str) else side.parts
        hasher.update(len(parts).to_bytes(8, "little"))
        for part in parts:
            data = part.text.encode("utf-8", "surrogatepass") if isinstance(part, Text) else _image_bytes(part.source)
            hasher.update(type(part).__name__.encode() + b"\0" + len(data).to_bytes(8, "little"))
            hasher.update(data)
    return hasher.digest()


def _image_bytes(source: object) -> bytes:
    if isinstance(source, str):
        return source.encode("utf-8", "surrogatepass")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    size, mode, pixels = getattr(source, "size", ()), getattr(source, "mode", ""), source.tobytes()  # a PIL image
    return f"{mode}{size}".encode() + pixels


def estimate_tokens(side: Side) -> int:
    """A conservative token estimate without the model's tokenizer: UTF-8 bytes / 3 (≥ 1 token per CJK char)."""
    texts = [side] if isinstance(side, str) else [part.text for part in side.parts if isinstance(part, Text)]
    images = 0 if isinstance(side, str) else sum(isinstance(part, Image) for part in side.parts)
    return sum(len(text.encode("utf-8")) // 3 + 1 for text in texts) + images * IMAGE_TOKENS_ESTIMATE
