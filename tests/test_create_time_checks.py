"""createJob refuses, at once and with the worker's own message, an http(s) image URL the
worker would refuse without asking DNS: scheme, port, an address written out that is not
public, a malformed host. Nothing is created. Names that need DNS still make a job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.errors import ImageError
from pipeline.images import check_url_offline
from tests.support import Server, backend_server

PORTS = frozenset({80, 443})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def strict_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Server]:  # fmt: skip
    """A server as shipped: private fetching off, ports 80 and 443 only."""
    with backend_server(request.param, tmp_path_factory.mktemp("strict"),
                        IMAGE_FETCH_ALLOW_PRIVATE="false",
                        IMAGE_FETCH_ALLOWED_PORTS="80,443") as srv:  # fmt: skip
        yield srv


PRIVATE = "Image URL points to a private or local address"
REFUSED = [
    ("http://127.0.0.1:8000/logo.png",
     "Image URL uses port 8000; only ports 80 and 443 may be used"),
    ("http://127.0.0.1/logo.png", PRIVATE),
    ("http://[::1]/logo.png", PRIVATE),
    ("http://10.1.2.3/logo.png", PRIVATE),
    ("http://169.254.169.254/latest/meta-data", PRIVATE),
    ("http://2130706433/logo.png", PRIVATE),
    ("http://user:pw@images.example.com/logo.png",
     "Image URL must not contain a user name or password"),
    ("http://images..example.com/logo.png", "Image URL is not a valid http(s) URL"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "message"), REFUSED)
def test_the_offline_check_gives_the_fetchs_message(url: str, message: str) -> None:
    with pytest.raises(ImageError) as caught:
        check_url_offline(url, allow_private=False, allowed_ports=PORTS)
    assert caught.value.message == message


@pytest.mark.parametrize(
    "url",
    ["https://images.example.com/logo.png", "http://93.184.216.34/logo.png",
     "https://images.example.com:443/a.png"],
)  # fmt: skip
def test_public_urls_and_names_pass_the_offline_check(url: str) -> None:
    check_url_offline(url, allow_private=False, allowed_ports=PORTS)


def test_private_addresses_and_any_port_pass_when_private_fetching_is_on() -> None:
    check_url_offline("http://127.0.0.1:8000/logo.png", allow_private=True, allowed_ports=None)


def _jobs(server: Server) -> int:
    return int(server.sql('SELECT COUNT(*) FROM "visionJobs"')[0][0])


@pytest.mark.parametrize(("url", "message"), REFUSED[:3])
def test_create_job_refuses_them_and_creates_nothing(strict_server: Server, url: str,
                                                     message: str) -> None:  # fmt: skip
    before = _jobs(strict_server)
    with strict_server.client("create-time") as client:
        body = {"imageUrl": url, "analysisPurpose": "Brand", "outputFormat": "bullet_points"}
        r = client.post("/visionPipeline.createJob", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["message"] == message
    assert error["data"]["code"] == "BAD_REQUEST"
    assert _jobs(strict_server) == before


def test_a_name_that_needs_dns_still_makes_a_job(strict_server: Server) -> None:
    before = _jobs(strict_server)
    with strict_server.client("create-time") as client:
        r = client.post("/visionPipeline.createJob", json={
            "imageUrl": "https://images.invalid/logo.png", "analysisPurpose": "Brand",
            "outputFormat": "bullet_points"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert _jobs(strict_server) == before + 1
