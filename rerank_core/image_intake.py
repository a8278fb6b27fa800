"""Images taken in safely: bytes, `data:` URIs, PIL images, paths and (when the caller allows it) http(s) URLs,
each checked against its limits before anything is decoded, refusals typed and naming the input."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import ipaddress
import socket
import ssl
import warnings
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

from .errors import ImageRefusedError

if TYPE_CHECKING:
    from .config import ImageOptions

# What Pillow may decode: the formats clients send for screenshots and photos (no PSD, EPS, PDF, ICO, ...).
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"})


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may come from and how large they may be.

    `max_bytes` caps an encoded image (read, decoded from base64 or fetched); `max_pixels` caps width × height as
    the file's header states it, checked before decoding (Pillow's own process-wide limit, twice
    `PIL.Image.MAX_IMAGE_PIXELS`, still refuses more). A string that is not a URL is a file path when
    `allow_paths` (the library's default; a server turns it off). URLs are fetched only with `fetch_urls`: from
    `allowed_hosts` when it is not empty, never from loopback, private, link-local or other non-public addresses
    unless listed in `allowed_networks`, over at most `max_redirects` redirects, each checked again.
    """

    max_bytes: int = 20 * 2**20
    max_pixels: int = 8192 * 8192
    formats: frozenset[str] = IMAGE_FORMATS
    allow_paths: bool = True
    fetch_urls: bool = False
    allowed_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()
    max_redirects: int = 3
    timeout_s: float = 10.0
    networks: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "networks", tuple(ipaddress.ip_network(n) for n in self.allowed_networks))

    @classmethod
    def of(cls, options: ImageOptions, **overrides) -> ImagePolicy:
        """The policy an `images` option (config.ImageOptions) sets, with `overrides` (a server: allow_paths=False)."""
        fields = ("max_bytes", "max_pixels", "allow_paths", "fetch_urls", "timeout_s")
        taken = {name: getattr(options, name) for name in fields}
        lists = {"allowed_hosts": tuple(options.allowed_hosts), "allowed_networks": tuple(options.allowed_networks)}
        return cls(**(taken | lists | overrides))


@dataclass(frozen=True)
class TakenImage:
    """A decoded RGB image and what identifies it: a digest of the encoded bytes (of the pixels for a PIL image)."""

    image: object  # PIL.Image.Image, mode RGB
    digest: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.size


def take_image(source: object, where: str, policy: ImagePolicy = ImagePolicy()) -> TakenImage:
    """Decode `source` (bytes, a `data:` URI, a PIL image, a path or `file://` URI, an http(s) URL) within `policy`;
    `where` names the input in errors (e.g. "documents[3].image[0]")."""
    from PIL import Image

    if isinstance(source, Image.Image):
        return _taken_pil(source, where, policy)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decoded(bytes(source), where, policy)
    if not isinstance(source, str):
        raise ImageRefusedError(where, f"an image must be bytes, a string or a PIL image, got {type(source).__name__}")
    scheme = source.split(":", 1)[0].lower() if ":" in source[:12] else ""
    if scheme == "data":
        return _decoded(_data_uri_bytes(source, where, policy), where, policy)
    if scheme in ("http", "https"):
        return _decoded(_fetched(source, where, policy), where, policy)
    if scheme == "file":
        return _decoded(_file_bytes(Path(unquote(urlsplit(source).path)), where, policy), where, policy)
    return _decoded(_file_bytes(Path(source), where, policy), where, policy)


def _taken_pil(image, where: str, policy: ImagePolicy) -> TakenImage:
    width, height = image.size
    _check_pixels(width, height, where, policy)
    rgb = _to_rgb(image)
    digest = hashlib.sha256(f"pixels:{rgb.size}:".encode() + rgb.tobytes()).hexdigest()
    return TakenImage(rgb, digest)


def image_header(data: bytes, where: str, policy: ImagePolicy) -> tuple[int, int]:
    """(width, height) of encoded image `data` as its header states them, after the size, format and pixel checks
    that come before decoding: nothing is decoded."""
    return _opened(data, where, policy).size


def client_image_bytes(source: str, where: str, policy: ImagePolicy) -> bytes:
    """The encoded bytes of an image a remote client sent as a string that is not a URL: a base64 `data:` URI or bare
    base64 (never a path: a client names no file of the server's); its size checked before decoding."""
    if source[:5].lower() == "data:":
        return _data_uri_bytes(source, where, policy)
    not_base64 = "must be an http(s) URL or base64 (a data: URI or bare), not a file path or other text"
    return _base64_bytes(source, where, policy, not_base64)


def _opened(data: bytes, where: str, policy: ImagePolicy):
    """`data` opened by Pillow, its header read and checked (size, format, width × height); nothing decoded yet."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > policy.max_bytes:
        raise _too_big(len(data), where, policy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our cap decides, below
            image = Image.open(io.BytesIO(data), formats=sorted(policy.formats))  # reads the header only
    except UnidentifiedImageError:
        allowed = ", ".join(sorted(policy.formats))
        raise ImageRefusedError(where, "not an image in an allowed format", allowed, "format") from None
    except Image.DecompressionBombError as exc:  # past twice Pillow's process-wide limit, whatever ours says
        limit = f"{min(policy.max_pixels, 2 * Image.MAX_IMAGE_PIXELS):,} pixels"
        raise ImageRefusedError(where, f"too many pixels ({exc})", limit, "pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRefusedError(where, f"cannot be read as an image ({exc})", reason="corrupt") from None
    _check_pixels(*image.size, where, policy)
    return image


def _decoded(data: bytes, where: str, policy: ImagePolicy) -> TakenImage:
    """Decode `data` after checking its size, its format and its header's width × height; the first frame only."""
    image = _opened(data, where, policy)
    try:
        image.load()  # the first frame of an animated image
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageRefusedError(where, f"cannot be decoded ({exc})", reason="corrupt") from None
    return TakenImage(_to_rgb(image), hashlib.sha256(data).hexdigest())


def _check_pixels(width: int, height: int, where: str, policy: ImagePolicy) -> None:
    if width * height > policy.max_pixels:
        limit = f"{policy.max_pixels:,} pixels"
        raise ImageRefusedError(where, f"{width} × {height} is too many pixels", limit, "pixels")


def _to_rgb(image):
    """RGB as Qwen's recipe makes it: RGBA pasted onto white, every other mode converted."""
    from PIL import Image

    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        return white
    return image.convert("RGB")


def _too_big(size: int, where: str, policy: ImagePolicy) -> ImageRefusedError:
    return ImageRefusedError(where, f"{size:,} bytes is too large", f"{policy.max_bytes:,} bytes", "bytes")


def _data_uri_bytes(uri: str, where: str, policy: ImagePolicy) -> bytes:
    """The bytes of a base64 `data:` URI, its decoded size checked before decoding."""
    header, comma, payload = uri.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise ImageRefusedError(where, "a data: URI must be base64 (data:image/png;base64,...)", reason="base64")
    return _base64_bytes(payload, where, policy, "the data: URI is not valid base64")


def _base64_bytes(payload: str, where: str, policy: ImagePolicy, invalid: str) -> bytes:
    """`payload` decoded from base64, its decoded size checked first; refused with `invalid` when it is not base64."""
    if len(payload) // 4 * 3 > policy.max_bytes:
        raise _too_big(len(payload) // 4 * 3, where, policy)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRefusedError(where, invalid, reason="base64") from None


def _file_bytes(path: Path, where: str, policy: ImagePolicy) -> bytes:
    if not policy.allow_paths:
        raise ImageRefusedError(where, "must be a URL or a base64 data: URI, not a file path", reason="path")
    try:
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise _too_big(size, where, policy)
        with path.open("rb") as handle:
            return handle.read(policy.max_bytes + 1)
    except OSError as exc:
        raise ImageRefusedError(where, f"cannot read {path} ({exc.strerror})", reason="path") from None


def _fetched(url: str, where: str, policy: ImagePolicy) -> bytes:
    """GET `url` within `policy`: each hop's host allowed and its address checked, then connected to as checked."""
    if not policy.fetch_urls:
        raise ImageRefusedError(where, "fetching image URLs is off; pass the image's bytes", reason="url")
    for _ in range(policy.max_redirects + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImageRefusedError(where, f"not an http(s) URL: {url[:200]}", reason="url")
        host = parts.hostname
        if policy.allowed_hosts and host.lower() not in {h.lower() for h in policy.allowed_hosts}:
            raise ImageRefusedError(where, f"host {host} is not allowed", ", ".join(policy.allowed_hosts), "url")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = _public_address(host, port, where, policy)
        connection = _pinned_connection(parts.scheme, host, address, port, policy.timeout_s)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", path, headers={"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "image/*"})
            reply = connection.getresponse()
            if reply.status in (301, 302, 303, 307, 308) and reply.getheader("Location"):
                url = urljoin(url, reply.getheader("Location"))
                continue
            if reply.status != 200:
                raise ImageRefusedError(where, f"fetching the image URL answered HTTP {reply.status}", reason="url")
            return _capped_body(reply, where, policy)
        except (OSError, HTTPException) as exc:
            raise ImageRefusedError(where, f"fetching the image URL failed ({exc})", reason="url") from None
        finally:
            connection.close()
    raise ImageRefusedError(where, "too many redirects", f"{policy.max_redirects} redirects", "url")


def _public_address(host: str, port: int, where: str, policy: ImagePolicy) -> str:
    """The address `host` resolves to, refused if any of its addresses is not public (unless allowed)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ImageRefusedError(where, f"cannot resolve {host} ({exc})", reason="url") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        plain = address.ipv4_mapped if address.version == 6 and address.ipv4_mapped else address
        if not plain.is_global and not any(plain in network for network in policy.networks):
            raise ImageRefusedError(where, f"{host} resolves to {plain}, which is not a public address", reason="url")
    return str(addresses[0])


class _PinnedHTTPSConnection(HTTPSConnection):
    """HTTPS to a checked address, with the certificate checked against the URL's host name."""

    def __init__(self, host_name: str, address: str, port: int, timeout: float):
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self.host_name = host_name

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host_name)


def _pinned_connection(scheme: str, host: str, address: str, port: int, timeout: float):
    if scheme == "https":
        return _PinnedHTTPSConnection(host, address, port, timeout)
    return HTTPConnection(address, port, timeout=timeout)


def _capped_body(reply, where: str, policy: ImagePolicy) -> bytes:
    """The reply's body, refused as soon as it passes `max_bytes` (a stated length is checked before reading)."""
    stated = reply.getheader("Content-Length")
    if stated and stated.isdigit() and int(stated) > policy.max_bytes:
        raise _too_big(int(stated), where, policy)
    body = bytearray()
    while chunk := reply.read(min(65536, policy.max_bytes + 1 - len(body))):
        body += chunk
        if len(body) > policy.max_bytes:
            raise _too_big(len(body), where, policy)
    return bytes(body)
