"""The built-in page's serving (issue 16 items 2 and 4), without a browser: where the page and
the dashboard are with and without STATIC_DIR, their headers and CSP, /api/ui/config, and the
size promise. tests/test_page_browser.py drives them in Chromium."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from rpc.ui import PAGE_CSP, STATIC
from tests.support import Server, start_server

INDEX = b"<!doctype html><title>their frontend</title>"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ui-plain")
    srv = start_server(tmp / "jobs.db", tmp / "server.log", "--no-worker", JWT_SECRET="")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def with_static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ui-static")
    (tmp / "dist").mkdir()
    (tmp / "dist" / "index.html").write_bytes(INDEX)
    srv = start_server(
        tmp / "jobs.db", tmp / "server.log", "--no-worker", STATIC_DIR=str(tmp / "dist"),
        OAUTH_SERVER_URL="https://oauth.example.com", OAUTH_PORTAL_URL="https://portal.example.com",
    )  # fmt: skip
    try:
        yield srv
    finally:
        srv.stop()


def get(srv: Server, path: str) -> httpx.Response:
    return httpx.get(srv.base + path, timeout=30, follow_redirects=False)


def is_page(r: httpx.Response, title: str) -> bool:
    return r.status_code == 200 and f"<title>{title}</title>" in r.text


def test_without_static_dir_the_page_is_at_the_root(plain: Server) -> None:
    assert is_page(get(plain, "/"), "Vision pipeline")
    assert is_page(get(plain, "/admin"), "Vision pipeline: dashboard")
    assert is_page(get(plain, "/api/ui/"), "Vision pipeline")  # the same page, either way
    assert get(plain, "/elsewhere").status_code == 404


def test_with_static_dir_the_frontend_owns_the_root(with_static: Server) -> None:
    assert get(with_static, "/").content == INDEX
    assert get(with_static, "/admin").content == INDEX  # the frontend's router decides
    assert is_page(get(with_static, "/api/ui/"), "Vision pipeline")
    assert is_page(get(with_static, "/api/ui/admin"), "Vision pipeline: dashboard")
    assert get(with_static, "/api/ui/static/app.js").status_code == 200


def test_the_pages_carry_the_strict_csp_and_the_security_headers(plain: Server) -> None:
    for path in ("/", "/admin", "/api/ui/", "/api/ui/admin"):
        r = get(plain, path)
        assert r.headers["content-security-policy"] == PAGE_CSP
        assert "script-src 'self';" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-cache"


def test_the_files_are_revalidated_and_answer_304(plain: Server) -> None:
    r = get(plain, "/api/ui/static/app.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert r.headers["cache-control"] == "no-cache"
    again = httpx.get(plain.base + "/api/ui/static/app.js",
                      headers={"if-none-match": r.headers["etag"]})  # fmt: skip
    assert again.status_code == 304
    assert get(plain, "/api/ui/static/nope.js").status_code == 404
    sample = get(plain, "/api/ui/static/sample-brand.png")  # the README walkthrough's image
    assert sample.headers["content-type"] == "image/png"
    assert sample.content == (STATIC / "sample-brand.png").read_bytes()
    assert get(plain, "/api/ui/static/../__init__.py").status_code == 404


def test_config_in_local_mode(plain: Server) -> None:
    assert get(plain, "/api/ui/config").json() == {
        "auth": "local", "loginUrl": None, "pageUrl": "/", "adminUrl": "/admin"}  # fmt: skip


def test_config_gives_the_templates_login_url(with_static: Server) -> None:
    config = get(with_static, "/api/ui/config").json()
    assert (config["auth"], config["pageUrl"], config["adminUrl"]) == (
        "jwt", "/api/ui/", "/api/ui/admin")  # fmt: skip
    url = urlsplit(config["loginUrl"])
    assert (url.scheme, url.netloc, url.path) == ("https", "portal.example.com", "/app-auth")
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    redirect = with_static.base + "/api/oauth/callback"
    state = base64.b64encode(redirect.encode()).decode()  # Gen-1: base64 of the redirect URI
    assert query == {"appId": "vision-pipeline", "redirectUri": redirect, "state": state,
                     "type": "signIn"}  # fmt: skip


def test_the_page_is_small_and_fetches_nothing_from_elsewhere() -> None:
    shipped = sorted(p for p in STATIC.iterdir() if p.is_file())
    # The one image: the README walkthrough's sample, not part of the page.
    files = [p for p in shipped if p.name != "sample-brand.png"]
    assert {p.suffix for p in files} == {".html", ".js", ".css"}
    assert sum(p.stat().st_size for p in shipped) < 150 * 1024
    for path in files:
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text.replace("https://example.com/brand.png", "")
        if path.suffix == ".html":  # no inline script or style: the CSP would refuse them
            assert "<script>" not in text and "<style" not in text and " style=" not in text
