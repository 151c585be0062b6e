"""Security headers on every response, and CORS (issue 8 item 5; TRPC_WIRE §8.2).

Two servers (SQLite: the headers do not depend on the backend), both serving a built
frontend from STATIC_DIR: ``plain`` with the defaults (CORS off, no CSP on static files)
and ``cors`` with CORS_ALLOW_ORIGINS and STATIC_CONTENT_SECURITY_POLICY set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rpc.config import Settings
from rpc.security import API_CSP, middleware
from tests.support import Server, start_server

FRONTEND = "https://app.example.com"
STATIC_CSP = "default-src 'self'; img-src * data:"
JSON = {"content-type": "application/json"}
COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
    "cross-origin-resource-policy": "same-origin",
}


def _static_dir(tmp: Path) -> Path:
    root = tmp / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(
        "<!doctype html><script src='/assets/app-4f3a9c1b.js'></script>"
    )
    (root / "assets" / "app-4f3a9c1b.js").write_text("console.log('app')")
    return root


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("plain")
    srv = start_server(tmp / "jobs.db", tmp / "server.log", "--no-worker",
                       STATIC_DIR=str(_static_dir(tmp)))  # fmt: skip
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cors")
    srv = start_server(tmp / "jobs.db", tmp / "server.log", "--no-worker",
                       STATIC_DIR=str(_static_dir(tmp)), STATIC_CONTENT_SECURITY_POLICY=STATIC_CSP,
                       CORS_ALLOW_ORIGINS=f"{FRONTEND}, https://admin.example.com/")  # fmt: skip
    yield srv
    srv.stop()


def assert_api_headers(r: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert r.headers.get(name) == value, (r.request.url, name)
    assert r.headers["content-security-policy"] == API_CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert "strict-transport-security" not in r.headers  # plain http


# --- security headers -------------------------------------------------------------------------


def test_every_api_response_carries_the_headers(plain: Server) -> None:
    user = plain.client("headers-user")
    anon = httpx.Client(base_url=plain.base)
    with user, anon:
        responses = [
            user.get("/auth.me"),  # 200
            user.get("/nope"),  # 404 envelope
            user.post("/visionPipeline.createJob", content=b"{", headers=JSON),  # 400
            user.request("OPTIONS", "/auth.me"),  # 415 without CORS
            user.head("/auth.me"),  # 204
            anon.get("/healthz"),
            anon.get("/api/oauth/callback"),  # the OAuth callback's error answer
            anon.get("/api/unknown"),  # a plain 404 outside the router
        ]  # fmt: skip
        for r in responses:
            assert_api_headers(r)


def test_an_event_stream_carries_the_headers(plain: Server) -> None:
    with plain.client("headers-sse") as client, client.stream(
        "GET", "/visionPipeline.onMyJobs", headers={"accept": "text/event-stream"}
    ) as r:  # fmt: skip
        assert r.headers["content-type"].startswith("text/event-stream")
        assert_api_headers(r)


def test_hsts_only_over_https(plain: Server) -> None:
    with httpx.Client(base_url=plain.base) as anon:
        assert "strict-transport-security" not in anon.get("/healthz").headers
        r = anon.get("/healthz", headers={"x-forwarded-proto": "https"})
        assert r.headers["strict-transport-security"] == "max-age=31536000"


def test_static_files_keep_their_own_policy(plain: Server, cors: Server) -> None:
    with httpx.Client(base_url=plain.base) as anon:
        for path in ("/", "/some/spa/route", "/assets/app-4f3a9c1b.js"):
            r = anon.get(path)
            assert r.status_code == 200
            for name, value in COMMON.items():
                assert r.headers[name] == value
            assert r.headers["x-frame-options"] == "SAMEORIGIN"
            assert "content-security-policy" not in r.headers  # none unless configured
    with httpx.Client(base_url=cors.base) as anon:
        r = anon.get("/")
        assert r.headers["content-security-policy"] == STATIC_CSP
        assert anon.get("/healthz").headers["content-security-policy"] == API_CSP


# --- CORS -------------------------------------------------------------------------------------


def preflight(base: str, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(
        base + "/api/trpc/visionPipeline.createJob",
        headers={
            "origin": origin,
            "access-control-request-method": method,
            "access-control-request-headers": "content-type, trpc-accept, authorization",
        },
    )


def test_cors_is_off_by_default(plain: Server) -> None:
    r = preflight(plain.base, FRONTEND)
    assert r.status_code == 415  # tRPC's own answer to OPTIONS (TRPC_WIRE §2.3)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(plain.trpc + "/auth.me", headers={"origin": FRONTEND})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_allows_the_listed_origins_with_credentials(cors: Server) -> None:
    for origin in (FRONTEND, "https://admin.example.com"):
        r = preflight(cors.base, origin)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert r.headers["access-control-allow-credentials"] == "true"
        allowed = {h.strip() for h in r.headers["access-control-allow-headers"].split(",")}
        assert {"content-type", "trpc-accept", "authorization", "last-event-id"} <= allowed
        assert set(r.headers["access-control-allow-methods"].split(", ")) >= {"GET", "POST"}
        for name, value in COMMON.items():
            assert r.headers[name] == value
    r = httpx.get(cors.trpc + "/auth.me", headers={"origin": FRONTEND})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == FRONTEND
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "origin" in r.headers["vary"].lower()


def test_cors_refuses_other_origins_and_methods(cors: Server) -> None:
    r = preflight(cors.base, "https://evil.example.net")
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers
    r = preflight(cors.base, FRONTEND, method="DELETE")
    assert r.status_code == 400
    r = httpx.get(cors.trpc + "/auth.me", headers={"origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in r.headers


def test_a_wildcard_origin_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="cannot carry cookies"):
        middleware(Settings(_env_file=None, cors_allow_origins="*"))  # type: ignore[call-arg]
    assert len(middleware(Settings(_env_file=None))) == 1  # type: ignore[call-arg]
