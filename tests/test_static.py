"""STATIC_DIR: the same process serves the frontend's build, as the template's production
server does (issue 9): files, the single-page fallback to index.html, cache headers, and the
API untouched. One real server process; httpx plays the browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from rpc.static import is_hashed, is_hidden
from tests.support import Server, start_server

INDEX: Final = b"<!doctype html><html><body><div id=root></div></body></html>"
APP_JS: Final = b"console.log('app');"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
SECRET: Final = "DATABASE_PASSWORD=hunter2"
SECURITY_TXT: Final = b"Contact: mailto:security@example.com\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("static")
    dist = tmp / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    (dist / "assets" / "app-abc123.js").write_bytes(APP_JS)
    (dist / "favicon.ico").write_bytes(b"\x00\x00\x01\x00")
    (dist / "logo_d1d871ea.png").write_bytes(b"png")
    (tmp / "secret.txt").write_text("outside the build")
    # dotfiles a build directory may hold (issue 13 item 6), and RFC 8615's well-known files
    (dist / ".env").write_text(SECRET)
    (dist / ".git").mkdir()
    (dist / ".git" / "config").write_text(SECRET)
    (dist / "assets" / ".hidden").write_text(SECRET)
    (dist / ".well-known").mkdir()
    (dist / ".well-known" / "security.txt").write_bytes(SECURITY_TXT)
    (dist / ".well-known" / ".private").write_text(SECRET)
    srv = start_server(tmp / "jobs.db", tmp / "server.log", "--no-worker", STATIC_DIR=str(dist))
    try:
        yield srv
    finally:
        srv.stop()


def get(srv: Server, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(srv.base + path, headers=headers, follow_redirects=False, timeout=30)


def test_root_serves_index_without_caching(site: Server) -> None:
    r = get(site, "/")
    assert (r.status_code, r.content) == (200, INDEX)
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"


def test_index_html_by_name_is_not_cached_either(site: Server) -> None:
    r = get(site, "/index.html")
    assert (r.status_code, r.content, r.headers["cache-control"]) == (200, INDEX, "no-cache")


def test_hashed_assets_are_cached_for_a_year(site: Server) -> None:
    r = get(site, "/assets/app-abc123.js")
    assert (r.status_code, r.content) == (200, APP_JS)
    assert "javascript" in r.headers["content-type"]
    assert r.headers["cache-control"] == IMMUTABLE
    assert get(site, "/logo_d1d871ea.png").headers["cache-control"] == IMMUTABLE


def test_other_files_are_revalidated(site: Server) -> None:
    r = get(site, "/favicon.ico")
    assert (r.status_code, r.headers["cache-control"]) == (200, "no-cache")
    again = get(site, "/favicon.ico", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/some/client/route", "/login", "/jobs/12?tab=2"])
def test_client_routes_fall_back_to_index(site: Server, path: str) -> None:
    r = get(site, path)
    assert (r.status_code, r.content, r.headers["cache-control"]) == (200, INDEX, "no-cache")


def test_head_falls_back_too(site: Server) -> None:
    r = httpx.head(site.base + "/some/client/route")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(INDEX))


@pytest.mark.parametrize("path", ["/api/unknown", "/api", "/api/oauth/nothing"])
def test_api_paths_keep_their_404(site: Server, path: str) -> None:
    r = get(site, path)
    assert r.status_code == 404 and r.content != INDEX


def test_the_api_still_works(site: Server) -> None:
    r = get(site, '/api/trpc/system.health?input={"timestamp":1}')
    assert (r.status_code, r.json()) == (200, {"result": {"data": {"ok": True}}})
    assert get(site, "/healthz").json() == {"ok": True}
    callback = get(site, "/api/oauth/callback")
    assert (callback.status_code, callback.json()) == (
        400,
        {"error": "code and state are required"},
    )


def test_a_post_to_a_client_route_is_not_the_index(site: Server) -> None:
    r = httpx.post(site.base + "/some/client/route", content=b"x")
    assert r.status_code == 404 and r.content != INDEX


def test_nothing_outside_the_build_is_served(site: Server) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"):
        r = get(site, path)
        assert b"outside the build" not in r.content


@pytest.mark.parametrize(
    "path",
    ["/.env", "/.git/config", "/.git/", "/.git", "/x/.git/config", "/assets/.hidden",
     "/%2eenv", "/%2Egit/config", "/assets/%2ehidden", "/.nothing-here", "/x/.y/z",
     "/.well-known/.private", "/assets/../.env"],
)  # fmt: skip
def test_dotfiles_are_404(site: Server, path: str) -> None:
    for r in (get(site, path), httpx.head(site.base + path)):
        assert r.status_code == 404, (path, r.request.method)
        assert SECRET.encode() not in r.content and r.content != INDEX


def test_well_known_files_are_served(site: Server) -> None:
    r = get(site, "/.well-known/security.txt")
    assert (r.status_code, r.content, r.headers["cache-control"]) == (200, SECURITY_TXT, "no-cache")
    r = get(site, "/.well-known/nothing-here")  # as any other path: the single-page fallback
    assert (r.status_code, r.content) == (200, INDEX)


@pytest.mark.parametrize(
    ("path", "hidden"),
    [(".", False), ("index.html", False), ("assets/app.js", False), ("a..b", False),
     (".env", True), ("..", True), ("../x", True), ("x/.git/config", True), (".well-known", False),
     (".well-known/security.txt", False), (".well-known/.x", True), ("x/.well-known/y", True)],
)  # fmt: skip
def test_what_counts_as_hidden(path: str, hidden: bool) -> None:
    assert is_hidden(path) is hidden


def test_without_static_dir_unknown_paths_are_404(tmp_path: Path) -> None:
    """``/`` and ``/admin`` are then the built-in page and dashboard (rpc.ui); nothing else."""
    srv = start_server(tmp_path / "jobs.db", tmp_path / "server.log", "--no-worker")
    try:
        assert get(srv, "/").status_code == 200
        assert get(srv, "/some/client/route").status_code == 404
        assert get(srv, "/index.html").status_code == 404
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("path", "hashed"),
    [
        ("assets/app-abc123.js", True),
        ("index-B2xK9q1Z.js", True),
        ("logo_d1d871ea.png", True),
        ("favicon.ico", False),
        ("my-background.png", False),
        ("report-20240101.pdf", False),
        ("site.webmanifest", False),
    ],
)
def test_what_counts_as_hashed(path: str, hashed: bool) -> None:
    assert is_hashed(path) is hashed
