"""A redirect to a Location that is not a valid URL is a permanent image error, with the
message the same URL gets when submitted directly, at the first attempt (issue 13 item 6)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from pipeline.errors import ImageError, RetryableError, StageError
from pipeline.images import load_image
from tests.support import Server, wait_for_status


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Redirector(BaseHTTPRequestHandler):
    """``/to?url=<location>``: a 302 whose Location is ``<location>``, sent byte for byte."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        location = parse_qs(urlsplit(self.path).query)["url"][0]
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def redirector() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def to(base: str, location: str) -> str:
    return f"{base}/to?url={quote(location, safe='')}"


async def failure(url: str) -> StageError:
    with pytest.raises(StageError) as caught:
        await load_image(url, max_bytes=1 << 20, allow_private=True, timeout=10)
    return caught.value


@pytest.mark.parametrize(
    ("location", "message"),
    [
        # numeric spellings of an address (httpx itself refuses the first three)
        ("http://0177.0.0.1/x.png", "must write its IP address as 127.0.0.1"),
        ("http://01.02.03.04/x.png", "must write its IP address as 1.2.3.4"),
        ("//0177.0.0.1/x.png", "must write its IP address as 127.0.0.1"),
        ("http://0x7f.1/x.png", "must write its IP address as 127.0.0.1"),
        ("http://2130706433/x.png", "must write its IP address as 127.0.0.1"),
        # bad ports
        ("http://images.example.com:abc/x.png", "not a valid http(s) URL"),
        ("http://images.example.com:1:2/x.png", "not a valid http(s) URL"),
        ("http://images.example.com:99999/x.png", "invalid port"),
        # garbage
        ("http://1.2.3.256/x.png", "not a valid http(s) URL"),
        ("http://[::g]/x.png", "not a valid http(s) URL"),
        ("http://[::1/x.png", "not a valid http(s) URL"),
        ("http://images\texample.com/x.png", "not a valid http(s) URL"),
        ("http://1.2.3.4.5/x.png", "not a valid http(s) URL"),
    ],
)
@pytest.mark.anyio
async def test_a_redirect_to_an_invalid_location_is_a_permanent_image_error(
    redirector: str, location: str, message: str
) -> None:
    redirected = await failure(to(redirector, location))
    assert isinstance(redirected, ImageError) and not isinstance(redirected, RetryableError)
    assert message in redirected.message
    # Word for word what the URL it points to gets when submitted directly.
    target = location if location.startswith("http") else "http:" + location
    assert redirected.message == (await failure(target)).message


@pytest.mark.anyio
async def test_an_invalid_location_after_a_valid_hop_is_refused_the_same_way(
    redirector: str,
) -> None:
    url = to(redirector, to(redirector, "http://0177.0.0.1/x.png"))
    error = await failure(url)
    assert isinstance(error, ImageError) and "as 127.0.0.1" in error.message


def test_a_job_redirected_to_an_invalid_location_fails_at_its_first_attempt(
    server: Server, redirector: str
) -> None:
    body = {"imageUrl": to(redirector, "http://0177.0.0.1/x.png"),
            "analysisPurpose": "Brand analysis", "outputFormat": "bullet_points"}  # fmt: skip
    with server.client("bad-redirect") as client:
        r = client.post("/visionPipeline.createJob", json=body)
        assert r.status_code == 200, r.text
        status = wait_for_status(client, int(r.json()["result"]["data"]["jobId"]))
    assert (status["status"], status["errorStage"], status["retryCount"]) == ("error", "gemini", 1)
    assert status["errorMessage"] == (
        "gemini: Image URL must write its IP address as 127.0.0.1 (four decimal numbers)"
    )
