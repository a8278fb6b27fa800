"""Documents as the model reads them: an object ranked on named fields (`rank_fields`) as text; on a model that reads
images, the content shapes clients send (objects with `image`, vLLM's and SGLang's content parts) as Content."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rerank_core.content import Content, Image, Text, content_of

from .errors import ApiError


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def object_text(item: dict[str, Any], fields: Sequence[str] | None) -> str | None:
    """The text of an object: one named field's value alone, several as `name: value` lines in the order named (JSON
    for values that are not strings); every field, in the object's order, when none are named. None when it has none
    of the fields."""
    names = list(item) if fields is None else [f for f in fields if f in item]
    if not names:
        return None
    if len(names) == 1 and fields is not None:
        return _value(item[names[0]])
    return "\n".join(f"{name}: {_value(item[name])}" for name in names)


def document_texts(
    items: Sequence[str | dict[str, Any]], rank_fields: Sequence[str] | None, field: str, takes_images: bool = False
) -> list[str | Content]:
    """The text of each document: strings as they are, objects on `rank_fields` (None: every field); a 400 naming
    `field[i]` for an object with none of them. With `takes_images`, an object with an `image` is that image and
    the text of its other fields (Jina's multimodal documents)."""
    texts = []
    for i, item in enumerate(items):
        if takes_images and isinstance(item, dict) and "image" in item:
            texts.append(image_object(item, rank_fields))
            continue
        text = item if isinstance(item, str) else object_text(item, rank_fields)
        if text is None:
            wanted = "any field" if rank_fields is None else f"any of rank_fields {list(rank_fields)}"
            raise ApiError(400, f"{field}[{i}]", f"an object without {wanted}")
        texts.append(text)
    return texts


def side_of(value: str | dict[str, Any] | list, field: str) -> str | Content:
    """A query or document as a multimodal model reads it: a string as it is; an object of `text` and `image`
    (DashScope, Jina; `video` refused until supported), vLLM's `{"content": [parts]}` or SGLang's list of parts
    (`{"type": "text", "text"}`, `{"type": "image_url", "image_url": {"url"}}`) as Content."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _parts(value, field)
    if "content" in value and isinstance(value["content"], list):
        return _parts(value["content"], f"{field}.content")
    return content_of(value, field)


def is_multimodal_part_list(value: object) -> bool:
    """Whether `value` is a side in vLLM's or SGLang's content-part shape (not a string, not a Cohere object)."""
    return isinstance(value, list) or (isinstance(value, dict) and isinstance(value.get("content"), list))


def _parts(parts: list, field: str) -> Content:
    out: list[Text | Image] = []
    for k, part in enumerate(parts):
        where = f"{field}[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            out.append(Text(part["text"]))
        elif kind == "image_url" and isinstance(part.get("image_url"), dict) and "url" in part["image_url"]:
            out.append(Image(part["image_url"]["url"]))
        elif kind in ("video_url", "video"):
            raise ApiError(400, where, "video is not supported yet (text and images are)")
        else:
            raise ApiError(
                400, where, 'expected {"type": "text", "text": …} or {"type": "image_url", "image_url": {"url": …}}'
            )
    return Content(tuple(out))


def image_object(item: dict[str, Any], rank_fields: Sequence[str] | None) -> Content:
    """A Jina/Cohere object document with an `image` on a model that reads images: its image(s), then the text of
    its other fields on `rank_fields` (none: an image alone)."""
    images = item["image"] if isinstance(item["image"], list) else [item["image"]]
    rest = {key: value for key, value in item.items() if key != "image"}
    text = object_text(rest, rank_fields) if rest else None
    return Content(tuple(Image(source) for source in images) + ((Text(text),) if text is not None else ()))
