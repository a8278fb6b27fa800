"""rerank_core.image_intake on real images and a real HTTP server on 127.0.0.1: every way of giving an image decodes
to the same pixels, and hostile ones are refused by a typed error naming the input and the limit, before decoding."""

import base64
import io
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from rerank_core.errors import ImageRefusedError
from rerank_core.image_intake import ImagePolicy, take_image

LOOPBACK_ALLOWED = ImagePolicy(fetch_urls=True, allowed_networks=("127.0.0.0/8",))


def encoded(image, fmt="PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB")


def with_header_size(png: bytes, width: int, height: int) -> bytes:
    """`png` whose IHDR claims width × height (its CRC fixed): a few kB that would decode to a huge image."""
    ihdr = png[12:29]  # type + data of the first chunk
    patched = ihdr[:4] + struct.pack(">II", width, height) + ihdr[12:]
    return png[:12] + patched + struct.pack(">I", zlib.crc32(patched)) + png[33:]


class Site(BaseHTTPRequestHandler):
    """/img: the photo; /chunked: an endless body with no length; /to-private, /loop: redirects; else 404."""

    body = b""

    def do_GET(self):
        if self.path == "/img":
            self._reply(200, self.body, {"Content-Type": "image/png"})
        elif self.path == "/to-img":
            self._reply(302, b"", {"Location": "/img"})
        elif self.path == "/to-private":
            self._reply(302, b"", {"Location": "http://10.11.12.13/img"})
        elif self.path == "/loop":
            self._reply(302, b"", {"Location": "/loop"})
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                for _ in range(64):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client stopped reading: what it should do
                pass
        else:
            self._reply(404, b"no", {})

    def _reply(self, status, body, headers):
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(photo):
    Site.body = encoded(photo)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_bytes_data_uri_path_file_uri_pil_and_url_give_the_same_pixels(photo, tmp_path, site):
    png = encoded(photo)
    (tmp_path / "photo.png").write_bytes(png)
    sources = [
        png,
        "data:image/png;base64," + base64.b64encode(png).decode(),
        str(tmp_path / "photo.png"),
        (tmp_path / "photo.png").as_uri(),
        f"{site}/img",
        f"{site}/to-img",  # a redirect, followed and checked
    ]
    taken = [take_image(source, "query.image", LOOPBACK_ALLOWED) for source in sources]
    assert all(t.size == (64, 48) and t.image.mode == "RGB" for t in taken)
    assert all(np.array_equal(np.asarray(t.image), np.asarray(photo)) for t in taken)
    assert len({t.digest for t in taken}) == 1  # keyed by the encoded bytes, however they came
    from_pil = take_image(photo, "query.image")
    assert np.array_equal(np.asarray(from_pil.image), np.asarray(photo)) and from_pil.digest != taken[0].digest
    other = photo.copy()
    other.putpixel((0, 0), (0, 0, 0))
    assert take_image(encoded(other), "d").digest != taken[0].digest  # one pixel apart: another key


def test_transparency_goes_onto_white_and_an_animation_gives_its_first_frame(photo):
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (200, 0, 0, 0))  # fully transparent: white, whatever its color
    got = np.asarray(take_image(encoded(rgba), "d").image)
    assert got[0, 0].tolist() == [255, 255, 255] and got[1, 1].tolist() == [10, 20, 30]
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(take_image(gif, "d").image)[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize(
    ("make", "policy", "reason", "words"),
    [
        (lambda png: b"not an image at all", ImagePolicy(), "format", "allowed format"),
        (lambda png: png[: len(png) // 2], ImagePolicy(), "corrupt", "cannot be decoded"),
        (lambda png: with_header_size(png, 40_000, 40_000), ImagePolicy(), "pixels", "too many pixels"),
        (lambda png: with_header_size(png, 9000, 9000), ImagePolicy(), "pixels", "9000 × 9000 is too many"),
        (lambda png: png, ImagePolicy(max_bytes=100), "bytes", "too large"),
        (lambda png: png, ImagePolicy(formats=frozenset({"JPEG"})), "format", "JPEG"),
        (lambda png: "data:image/png;base64,%%%notbase64", ImagePolicy(), "base64", "not valid base64"),
        (lambda png: "data:image/png," + "x" * 10, ImagePolicy(), "base64", "must be base64"),
        (lambda png: "/etc/hostname", ImagePolicy(allow_paths=False), "path", "not a file path"),
        (lambda png: "/no/such/image.png", ImagePolicy(), "path", "cannot read"),
        (lambda png: "https://example.com/a.png", ImagePolicy(), "url", "fetching image URLs is off"),
        (lambda png: 3.5, ImagePolicy(), "invalid", "got float"),
    ],
)
def test_hostile_inputs_are_refused_naming_the_input_the_limit_and_a_reason(photo, make, policy, reason, words):
    with pytest.raises(ImageRefusedError) as info:
        take_image(make(encoded(photo)), "documents[2].image[1]", policy)
    assert info.value.field == "documents[2].image[1]" and info.value.reason == reason
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)  # an InvalidInputError: what every app turns into a 400


def test_the_pixel_cap_is_read_from_the_header_and_holds_per_call(photo):
    huge = with_header_size(encoded(photo), 9000, 9000)  # 81 M pixels in a few hundred bytes
    with pytest.raises(ImageRefusedError, match=r"9000 × 9000 is too many pixels \(limit: 67,108,864 pixels\)"):
        take_image(huge, "query.image")
    with pytest.raises(ImageRefusedError, match="64 × 48 is too many pixels"):
        take_image(encoded(photo), "d", ImagePolicy(max_pixels=1000))
    assert take_image(encoded(photo), "d", ImagePolicy(max_pixels=64 * 48)).size == (64, 48)


def test_urls_are_fetched_only_from_public_or_listed_addresses_with_redirects_and_bytes_capped(site):
    where = "documents[0].image"
    with pytest.raises(ImageRefusedError, match="resolves to 127.0.0.1, which is not a public address"):
        take_image(f"{site}/img", where, ImagePolicy(fetch_urls=True))  # loopback, unless listed
    with pytest.raises(ImageRefusedError, match="10.11.12.13, which is not a public address"):
        take_image(f"{site}/to-private", where, LOOPBACK_ALLOWED)  # the redirect is checked before connecting
    with pytest.raises(ImageRefusedError, match="too many redirects"):
        take_image(f"{site}/loop", where, LOOPBACK_ALLOWED)
    with pytest.raises(ImageRefusedError, match="too large"):
        take_image(
            f"{site}/chunked", where, ImagePolicy(fetch_urls=True, allowed_networks=("127.0.0.0/8",), max_bytes=2**20)
        )
    with pytest.raises(ImageRefusedError, match="host 127.0.0.1 is not allowed"):
        take_image(f"{site}/img", where, ImagePolicy(fetch_urls=True, allowed_hosts=("images.example.com",)))
    with pytest.raises(ImageRefusedError, match="HTTP 404"):
        take_image(f"{site}/missing", where, LOOPBACK_ALLOWED)
    for address in ("http://[::1]/x.png", "http://169.254.169.254/latest", "http://[::ffff:10.0.0.1]/x"):
        with pytest.raises(ImageRefusedError, match="not a public address"):
            take_image(address, where, ImagePolicy(fetch_urls=True))
