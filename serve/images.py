"""The gateway's image intake: a string from a client is an http(s) URL or base64, never a path of the server's;
images per request and their bytes are capped, each header is read and checked (format, pixels) before the request
goes to a replica, which receives the encoded bytes, never pixels."""

from __future__ import annotations

from dataclasses import replace

from rerank_core.content import Content, Image
from rerank_core.errors import ImageRefusedError
from rerank_core.image_intake import ImagePolicy, client_image_bytes, image_header

from .config import ImageLimits
from .errors import ApiError
from .protocols import RankCall


def has_images(call: RankCall) -> bool:
    """Whether any side of the call holds an image."""
    return any(isinstance(side, Content) and _images(side) for pair in call.pairs for side in pair)


def take_images(call: RankCall, policy: ImagePolicy, limits: ImageLimits) -> RankCall:
    """`call` with every image a client sent as base64 replaced by its checked encoded bytes (URLs stay, for the
    replica to fetch within `policy`); refusals name the image as the dialect's fields do (documents[3].image[0])."""
    named = _named_images(call)
    if len(named) > limits.max_images_per_request:
        raise ApiError(
            400,
            call.fields[1],
            f"{len(named)} images exceeds max_images_per_request={limits.max_images_per_request}",
        )
    taken: dict[int, Image] = {}
    total = 0
    for image, where in named:
        taken[id(image)], size = _taken(image.source, where, policy)
        total += size
        if total > limits.max_image_bytes_per_request:
            raise ImageRefusedError(
                where,
                f"the request's images reach {total:,} bytes here",
                f"max_image_bytes_per_request={limits.max_image_bytes_per_request:,}",
                "bytes",
            )
    pairs = [tuple(_with_taken(side, taken) for side in pair) for pair in call.pairs]
    return replace(call, pairs=pairs)


def _images(side: Content) -> list[Image]:
    return [part for part in side.parts if isinstance(part, Image)]


def _named_images(call: RankCall) -> list[tuple[Image, str]]:
    """Each distinct image of the call (a query's counted once) and where the client put it."""
    seen, named = set(), []
    query_field, documents_field = call.fields
    for i, pair in enumerate(call.pairs):
        for side, where in zip(pair, (query_field, f"{documents_field}[{i}]")):
            if not isinstance(side, Content):
                continue
            for k, image in enumerate(_images(side)):
                if id(image) not in seen:
                    seen.add(id(image))
                    named.append((image, f"{where}.image[{k}]"))
    return named


def _taken(source: object, where: str, policy: ImagePolicy) -> tuple[Image, int]:
    """The image as the replica gets it and its encoded bytes (0 for a URL, fetched by the replica)."""
    if not isinstance(source, str):
        raise ImageRefusedError(where, f"must be a string (an http(s) URL or base64), got {type(source).__name__}")
    if source[:8].lower().startswith(("http://", "https://")):
        if not policy.fetch_urls:
            raise ImageRefusedError(
                where, "this endpoint fetches no image URLs; send the image as base64", reason="url"
            )
        return Image(source), 0
    data = client_image_bytes(source, where, policy)
    image_header(data, where, policy)
    return Image(data), len(data)


def _with_taken(side: object, taken: dict[int, Image]) -> object:
    if not isinstance(side, Content):
        return side
    return Content(tuple(taken.get(id(part), part) for part in side.parts))
