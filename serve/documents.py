"""Structured documents as the text the model reads: an object is ranked on named fields (`rank_fields`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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


def document_texts(items: Sequence[str | dict[str, Any]], rank_fields: Sequence[str] | None, field: str) -> list[str]:
    """The text of each document: strings as they are, objects on `rank_fields` (None: every field); a 400 naming
    `field[i]` for an object with none of them."""
    texts = []
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else object_text(item, rank_fields)
        if text is None:
            wanted = "any field" if rank_fields is None else f"any of rank_fields {list(rank_fields)}"
            raise ApiError(400, f"{field}[{i}]", f"an object without {wanted}")
        texts.append(text)
    return texts
