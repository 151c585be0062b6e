"""load_image: data: URLs, http(s) fetching against a local server, SSRF refusals, sniffing.

Everything runs on 127.0.0.1; no test needs the internet.
"""

from __future__ import annotations

import base64
import io
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import anyio
import pytest
from PIL import Image as PILImage

from pipeline import fetching
from pipeline.errors import ImageError, RetryableError
from pipeline.images import format_size, is_public_address, load_image
from pipeline.providers.base import Image

MiB = 1 << 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def encode(fmt: str, size: tuple[int, int] = (64, 48), color: Any = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


PNG = encode("PNG")
JPEG = encode("JPEG", (80, 60), (20, 40, 220))
GIF = encode("GIF", (10, 20))
WEBP = encode("WEBP", (30, 30))
BMP = encode("BMP")
TIFF = encode("TIFF")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# --- a local HTTP server ------------------------------------------------------------------

HITS: Counter[str] = Counter()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path
        HITS[path] += 1
        try:
            self.route(path)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on purpose (size cap, deadline)

    def route(self, path: str) -> None:
        if path == "/image.png":
            self.send(200, PNG, "image/png")
        elif path == "/photo.jpg":
            self.send(200, JPEG, "image/jpeg")
        elif path == "/jpeg-labelled-png":
            self.send(200, JPEG, "image/png")
        elif path == "/octet":
            self.send(200, PNG, "application/octet-stream")
        elif path == "/page.html":
            self.send(200, b"<!doctype html><p>hello</p>", "text/html; charset=utf-8")
        elif path == "/fake.png":
            self.send(200, b"just some text, not an image\n" * 10, "image/png")
        elif path == "/image.bmp":
            self.send(200, BMP, "image/bmp")
        elif path == "/missing":
            self.send(404, b"not found", "text/plain")
        elif path == "/error":
            self.send(500, b"boom", "text/plain")
        elif path == "/busy":
            self.send(503, b"busy", "text/plain", Retry_After="7")
        elif path == "/limited":
            self.send(429, b"slow down", "text/plain", Retry_After=formatdate(time.time() + 120))
        elif path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            # Relative Locations, to check they are resolved against the current URL.
            self.redirect(f"/redirect/{hops - 1}" if hops > 1 else "/image.png")
        elif path == "/redirect-ftp":
            self.redirect("ftp://127.0.0.1/image.png")
        elif path == "/redirect-nowhere":
            self.redirect("")
        elif path.startswith("/redirect-to-host/"):
            host = path.rsplit("/", 1)[1]
            port = cast(ThreadingHTTPServer, self.server).server_port
            self.redirect(f"http://{host}:{port}/image.png", 301)
        elif path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(5 * MiB))
            self.end_headers()
            self.wfile.write(PNG)
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"\0" * 65536
            for _ in range(100):  # 6.4 MiB unless the client hangs up first
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(100):  # one byte every 50 ms: no read timeout, but a deadline
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/stall":
            time.sleep(3)
            self.send(200, PNG, "image/png")
        elif path == "/hang-up":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.send(404, b"unknown", "text/plain")


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def load(url: str, **kwargs: Any) -> Image:
    kwargs.setdefault("max_bytes", MiB)
    kwargs.setdefault("allow_private", True)
    return await load_image(url, **kwargs)


# --- data: URLs ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_data_url_png() -> None:
    image = await load(data_url(PNG))
    assert (image.mime_type, image.width, image.height, image.data) == ("image/png", 64, 48, PNG)


@pytest.mark.anyio
async def test_data_url_mime_comes_from_the_bytes_not_the_label() -> None:
    image = await load(data_url(JPEG, "image/png"))
    assert image.mime_type == "image/jpeg"


@pytest.mark.anyio
async def test_data_url_tolerates_line_breaks_and_missing_padding() -> None:
    encoded = base64.b64encode(PNG).decode().rstrip("=")
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    image = await load(f"data:image/png;base64,{wrapped}")
    assert image.data == PNG


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,iVBOR!!!not-base64***", "base64"),
        ("data:image/png," + base64.b64encode(PNG).decode(), "base64-encoded"),
        (
            "data:text/plain;base64," + base64.b64encode(PNG).decode(),
            r"not an image \(text/plain\)",
        ),
        ("data:;base64," + base64.b64encode(PNG).decode(), "not an image"),
        ("data:image/png;base64", "malformed"),
        ("data:image/png;base64,", "no image data"),
        (data_url(b"hello, I am a text file\n" * 20), "not an image"),
        (data_url(PNG[:-20]), "damaged"),
        (data_url(JPEG[: len(JPEG) // 2]), "damaged"),
    ],
)
@pytest.mark.anyio
async def test_bad_data_urls_are_final_errors(url: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        await load(url)


@pytest.mark.anyio
async def test_data_url_over_the_limit() -> None:
    with pytest.raises(ImageError, match="larger than the 100 bytes limit"):
        await load(data_url(PNG), max_bytes=100)


@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
@pytest.mark.anyio
async def test_allowed_formats(data: bytes, mime: str) -> None:
    assert (await load(data_url(data))).mime_type == mime


@pytest.mark.parametrize(("data", "name"), [(BMP, "BMP"), (TIFF, "TIFF")])
@pytest.mark.anyio
async def test_other_formats_are_refused_by_name(data: bytes, name: str) -> None:
    with pytest.raises(ImageError, match=f"Unsupported image format {name}"):
        await load(data_url(data, "image/x-whatever"))


@pytest.mark.anyio
async def test_decompression_bomb_header_is_refused() -> None:
    # 30000 x 30000 is past Pillow's own hard limit, so Pillow raises while opening.
    with pytest.raises(ImageError, match="too many pixels"):
        await load(data_url(png_claiming(30_000, 30_000)))


@pytest.mark.anyio
async def test_pixel_limit_is_checked_explicitly() -> None:
    with pytest.raises(ImageError, match="too many pixels"):
        await load(data_url(PNG), max_pixels=64 * 48 - 1)
    assert (await load(data_url(PNG), max_pixels=64 * 48)).width == 64


# --- http(s) ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_fetch_png_and_jpeg(base: str) -> None:
    png = await load(f"{base}/image.png")
    jpeg = await load(f"{base}/photo.jpg")
    assert (png.mime_type, png.width, png.height) == ("image/png", 64, 48)
    assert (jpeg.mime_type, jpeg.width, jpeg.height) == ("image/jpeg", 80, 60)


@pytest.mark.anyio
async def test_fetch_ignores_the_content_type_for_the_mime(base: str) -> None:
    assert (await load(f"{base}/jpeg-labelled-png")).mime_type == "image/jpeg"
    assert (await load(f"{base}/octet")).mime_type == "image/png"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/page.html", r"did not return an image \(text/html\)"),
        ("/fake.png", "not an image"),
        ("/image.bmp", "Unsupported image format BMP"),
        ("/missing", "Image URL returned HTTP 404"),
        ("/redirect-ftp", "must start with http"),
        ("/redirect-nowhere", "HTTP 302 without a target"),
        ("/redirect/4", "redirected more than 3 times"),
        ("/big-declared", "larger than the 1 MiB limit"),
        ("/big-chunked", "larger than the 1 MiB limit"),
    ],
)
@pytest.mark.anyio
async def test_fetch_final_errors(base: str, path: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        await load(base + path)


@pytest.mark.parametrize("hops", [1, 3])
@pytest.mark.anyio
async def test_redirects_up_to_three_are_followed(base: str, hops: int) -> None:
    assert (await load(f"{base}/redirect/{hops}")).mime_type == "image/png"


@pytest.mark.anyio
async def test_server_errors_are_retryable(base: str) -> None:
    with pytest.raises(RetryableError, match="HTTP 500") as caught:
        await load(f"{base}/error")
    assert caught.value.retry_after is None and caught.value.retryable


@pytest.mark.anyio
async def test_503_retry_after_seconds(base: str) -> None:
    with pytest.raises(RetryableError, match="HTTP 503") as caught:
        await load(f"{base}/busy")
    assert caught.value.retry_after == 7.0


@pytest.mark.anyio
async def test_429_retry_after_http_date(base: str) -> None:
    with pytest.raises(RetryableError, match="HTTP 429") as caught:
        await load(f"{base}/limited")
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 121


@pytest.mark.anyio
async def test_overall_deadline_fires_on_a_trickling_body(base: str) -> None:
    started = time.monotonic()
    with pytest.raises(RetryableError, match=r"did not arrive within 0\.5 seconds"):
        await load(f"{base}/drip", timeout=0.5)
    assert time.monotonic() - started < 2.5


@pytest.mark.anyio
async def test_a_server_that_never_answers_times_out(base: str) -> None:
    with pytest.raises(RetryableError, match="Could not fetch the image"):
        await load(f"{base}/stall", timeout=0.5)


@pytest.mark.anyio
async def test_hang_up_is_retryable(base: str) -> None:
    with pytest.raises(RetryableError, match="closed the connection"):
        await load(f"{base}/hang-up")


@pytest.mark.anyio
async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(RetryableError, match="Could not fetch the image: connection refused"):
        await load(f"http://127.0.0.1:{port}/image.png")


@pytest.mark.anyio
async def test_dns_failure_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(anyio, "getaddrinfo", no_dns)
    with pytest.raises(RetryableError, match="could not be resolved"):
        await load("http://images.example.test/logo.png", allow_private=False)


# --- address and URL checks ----------------------------------------------------------------


@pytest.mark.anyio
async def test_loopback_is_refused_unless_allowed(base: str) -> None:
    before = HITS["/image.png"]
    with pytest.raises(ImageError, match="private or local address"):
        await load(f"{base}/image.png", allow_private=False)
    assert HITS["/image.png"] == before  # refused before connecting
    assert (await load(f"{base}/image.png", allow_private=True)).width == 64


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/image.png",
        "http://[::1]/image.png",
        "http://[::ffff:127.0.0.1]/image.png",
        "http://2130706433/image.png",  # 127.0.0.1 in decimal
        "http://127.1/image.png",
        "http://0.0.0.0/image.png",
        "http://10.1.2.3/image.png",
        "http://192.168.0.10/image.png",
        "http://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/image.png",
        "http://224.0.0.1/image.png",
    ],
)
@pytest.mark.anyio
async def test_private_and_local_targets_are_refused(url: str) -> None:
    with pytest.raises(ImageError, match="private or local address"):
        await load(url, allow_private=False)


@pytest.mark.anyio
async def test_every_redirect_hop_is_rechecked(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend 127.0.0.1 is public so the first hop passes; the redirect to 127.0.0.2 must
    # then be refused by the real check, before any connection to it.
    real = fetching.is_public_address
    monkeypatch.setattr(fetching, "is_public_address", lambda a: a == "127.0.0.1" or real(a))
    assert (await load(f"{base}/image.png", allow_private=False)).width == 64
    with pytest.raises(ImageError, match="private or local address"):
        await load(f"{base}/redirect-to-host/127.0.0.2", allow_private=False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/logo.png", "must start with http"),
        ("file:///etc/passwd", "must start with http"),
        ("javascript:alert(1)", "must start with http"),
        ("example.com/logo.png", "must start with http"),
        ("http://user:secret@example.com/logo.png", "user name or password"),
        ("http:///logo.png", "no host name"),
        ("http://exa mple.com/logo.png", "not a valid"),
    ],
)
@pytest.mark.anyio
async def test_bad_urls_are_final_errors(url: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        await load(url, allow_private=False)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),
        ("2002:808:808::", True),
        ("not an address", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    ("size", "text"),
    [(10 * MiB, "10 MiB"), (1536, "1.5 KiB"), (100, "100 bytes"), (3 * (1 << 30), "3 GiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
