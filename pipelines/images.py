"""Image cells of a Parquet row as the library takes them: encoded bytes as they are, a local path or URI as it is,
an object-store URI (s3://, gs://, ...) read through pyarrow's filesystems within the model's byte cap."""

from __future__ import annotations

from typing import Any

LIBRARY_SCHEMES = ("http://", "https://", "data:", "file://")  # the library reads these itself (URLs per its policy)


class ImageCellError(ValueError):
    """An image cell that cannot be read; the row is flagged with it."""


def image_cell(value: Any, max_bytes: int) -> Any:
    """The image of a cell for the library: bytes, or a string it reads (path, file://, data:, http(s)); other URIs
    are read with pyarrow's filesystem for their scheme, refused past `max_bytes`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        raise ImageCellError(f"an image cell must be binary or a string, got {type(value).__name__}")
    if "://" not in value[:16] or value.lower().startswith(LIBRARY_SCHEMES):
        return value
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(value)
        size = filesystem.get_file_info(path).size  # stated before any byte is read; None where the store says none
        data = b""
        if size is None or size <= max_bytes:
            with filesystem.open_input_stream(path) as stream:
                data = stream.read(max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise ImageCellError(f"cannot read {value[:200]} ({exc})") from None
    if (size or 0) > max_bytes or len(data) > max_bytes:
        raise ImageCellError(f"{value[:200]}: too large (limit: {max_bytes:,} bytes)")
    return data


def side(text: Any, image: Any, max_bytes: int) -> Any:
    """A row's query or document: its text alone, or {"text"?, "image"} when it has an image (None: neither)."""
    if image is None:
        return text
    content = {"image": image_cell(image, max_bytes)}
    if isinstance(text, str) and text:
        content["text"] = text
    return content


def grouped_item(item: Any, max_bytes: int) -> Any:
    """One item of a grouped row's documents: a string, or a struct of `text` and `image` (nulls dropped)."""
    if not isinstance(item, dict):
        return item
    return side(item.get("text"), item.get("image"), max_bytes)
