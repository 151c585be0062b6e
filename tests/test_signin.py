"""POST /api/auth/session (issue 16 item 2): a pasted token becomes the session cookie the
OAuth login sets; JSON only, same-site only; 400 in local mode."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rpc.auth.callback import session_cookie
from rpc.auth.tokens import mint_token
from rpc.config import Settings
from tests.inprocess import running_app
from tests.support import Server

PATH = "/api/auth/session"


def post(server: Server, body: object = None, **kw: object) -> httpx.Response:
    return httpx.post(server.base + PATH, json=body, timeout=30, **kw)  # type: ignore[arg-type]


def test_a_valid_token_sets_the_logins_session_cookie(server: Server) -> None:
    token = server.token("signin-ann", "Ann")
    r = post(server, {"token": token}, headers={"origin": server.base})
    assert (r.status_code, r.content) == (204, b"")
    cookie = r.headers["set-cookie"]
    # The OAuth callback's cookie, word for word but for its Expires date.
    expected = session_cookie(token, secure=False)
    assert cookie.split("; Expires=")[0] == expected.split("; Expires=")[0]
    assert cookie.split("; ", 4)[4] == expected.split("; ", 4)[4] == "HttpOnly; SameSite=Lax"
    assert r.headers["x-content-type-options"] == "nosniff"
    # The cookie is a session: auth.me names the token's user.
    with httpx.Client(base_url=server.trpc, cookies={"app_session_id": token}) as client:
        me = client.get("/auth.me").json()["result"]["data"]
    assert (me["openId"], me["name"]) == ("signin-ann", "Ann")


def test_a_token_that_does_not_verify_is_401(server: Server) -> None:
    forged = mint_token("another-secret-of-32-bytes-or-more-0000", "signin-eve")
    expired = server.token("signin-old", expires_in=-10)
    for token in (forged, expired, "not.a.jwt", "x" * 9000):
        r = post(server, {"token": token})
        assert r.status_code == 401, token[:20]
        assert r.json()["error"].startswith("invalid or expired token")
        assert "set-cookie" not in r.headers


def test_bad_bodies_and_content_types_are_refused(server: Server) -> None:
    token = server.token("signin-bob")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        r = httpx.post(server.base + PATH, content=f'{{"token":"{token}"}}',
                       headers={"content-type": content_type})  # fmt: skip
        assert r.status_code == 415, content_type
        assert "application/json" in r.json()["error"]
    r = httpx.post(server.base + PATH, data={"token": token})  # a form, as a page could send
    assert r.status_code == 415 and "set-cookie" not in r.headers
    for body in ('{"token": 1}', "[]", "{", '{"tok": "x"}', '{"token": ""}'):
        r = httpx.post(server.base + PATH, content=body,
                       headers={"content-type": "application/json"})  # fmt: skip
        assert r.status_code == 400, body
        assert r.json() == {"error": 'expected a JSON object {"token": "<session token>"}'}
    r = httpx.post(server.base + PATH, content=b"{" + b" " * 20_000 + b"}",
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413
    assert httpx.get(server.base + PATH).status_code == 405


def test_a_cross_site_sign_in_is_refused(server: Server) -> None:
    token = server.token("signin-carol")
    refused = (
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": server.base.replace("127.0.0.1", "localhost")},  # another site by name
        {"sec-fetch-site": "cross-site"},
        {"origin": server.base, "sec-fetch-site": "cross-site"},
    )
    for headers in refused:
        r = post(server, {"token": token}, headers=headers)
        assert r.status_code == 403, headers
        assert r.json()["error"].startswith("cross-site sign-in refused")
        assert "set-cookie" not in r.headers
    for headers in ({"origin": server.base, "sec-fetch-site": "same-origin"}, {}):
        assert post(server, {"token": token}, headers=headers).status_code == 204, headers


@pytest.mark.anyio
async def test_local_mode_needs_no_sign_in(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", jwt_secret=None)
    async with running_app(settings) as (_, client):
        r = await client.post(PATH, json={"token": "anything"})
        assert (r.status_code, r.json()) == (400, {"error": "local mode: no sign-in needed"})
        assert "set-cookie" not in r.headers
        r = await client.post(PATH, json={"token": "x"}, headers={"origin": "https://evil.example"})
        assert r.status_code == 403  # cross-site is refused in every mode
