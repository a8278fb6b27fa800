"""Images as DashScope's multimodal reranker takes them: an http(s) URL as given (the service fetches it), anything
else — a file, bytes, a PIL image — as a base64 `data:` URI of a format it documents, within a size cap."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import ImageRefusedError

# The image formats Model Studio's text rerank page lists for qwen3-vl-rerank (Pillow's names for them).
DASHSCOPE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "ICO", "DIB", "ICNS", "SGI"})
MAX_IMAGE_BYTES = 20 * 2**20  # what one base64 image may carry before encoding (our cap; the request stays sane)


def image_value(source: object, where: str) -> str:
    """The string DashScope is sent for image `source`, `where` naming it in errors."""
    if isinstance(source, str):
        scheme = urlsplit(source).scheme.lower()
        if scheme in ("http", "https", "data"):
            return source  # the service fetches URLs and decodes data URIs itself
        path = Path(unquote(urlsplit(source).path)) if scheme == "file" else Path(source)
        if not path.is_file():
            raise ImageRefusedError(where, f"no image file at {path}", reason="missing")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageRefusedError(where, "image file too large", f"{MAX_IMAGE_BYTES} bytes", "size")
        return _data_uri(path.read_bytes(), where)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _data_uri(bytes(source), where)
    if hasattr(source, "save") and hasattr(source, "mode"):  # a PIL image
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return _data_uri(buffer.getvalue(), where)
    raise ImageRefusedError(where, f"an image must be bytes, a string or a PIL image, got {type(source).__name__}")


def _data_uri(data: bytes, where: str) -> str:
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRefusedError(where, "image too large", f"{MAX_IMAGE_BYTES} bytes", "size")
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            kind = image.format
    except (UnidentifiedImageError, OSError):
        kind = None
    if kind not in DASHSCOPE_FORMATS:
        allowed = ", ".join(sorted(DASHSCOPE_FORMATS))
        raise ImageRefusedError(where, "not an image in a format DashScope takes", allowed, "format")
    return f"data:{Image.MIME.get(kind, 'image/' + kind.lower())};base64,{base64.b64encode(data).decode()}"
