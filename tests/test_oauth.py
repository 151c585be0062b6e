"""The template's login, owner admin and notification, end to end (TEMPLATE_FLOWS §1.3–§1.7,
§3.1; issue 9): a real server process talks to a fake OAuth server and notification service
(tests.fake_oauth); the test plays the browser with httpx, never following redirects.

``platform``: a server whose OAUTH_SERVER_URL and BUILT_IN_FORGE_API_URL point at the fake.
``down``: a server whose OAuth server does not answer and that has no notification settings.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, Final

import anyio
import httpx
import jwt
import pytest

from tests.fake_oauth import NOTIFY_PATH, FakePlatform, fake_platform
from tests.support import ROOT, SECRET, Server, free_port, server_env, start_server

APP_ID: Final = "test-app-id"
OWNER: Final = "owner-open-id"
FORGE_KEY: Final = "forge-key-do-not-log-7f3a"
REDIRECT: Final = "https://app.example.com/api/oauth/callback"
CALLBACK: Final = "/api/oauth/callback"
NOT_ADMIN: Final = "You do not have required permission (10002)"
FAILED: Final = {"error": "OAuth callback failed"}
ONE_YEAR: Final = 31_536_000


# --- helpers ------------------------------------------------------------------------------


def gen1_state(redirect: str = REDIRECT) -> str:
    return base64.b64encode(redirect.encode()).decode()


def gen2_state(nonce: str | None, redirect: str = REDIRECT) -> str:
    state: dict[str, Any] = {"redirectUri": redirect}
    if nonce is not None:
        state["nonce"] = nonce
    return base64.b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def callback(
    srv: Server, *, headers: dict[str, str] | None = None, **params: str
) -> httpx.Response:
    return httpx.get(
        srv.base + CALLBACK, params=params, headers=headers, follow_redirects=False, timeout=30
    )


def set_cookies(response: httpx.Response) -> dict[str, tuple[str, set[str]]]:
    """name → (value, lower-cased attributes) of every Set-Cookie header."""
    out = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        out[name] = (value, {a.lower() for a in attributes if a})
    return out


def session_of(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    return set_cookies(response)["app_session_id"][0]


def trpc(srv: Server, path: str, token: str | None, body: Any = None) -> httpx.Response:
    headers = {"cookie": f"app_session_id={token}"} if token else {}
    if body is None:
        return httpx.get(f"{srv.trpc}/{path}", headers=headers, timeout=30)
    return httpx.post(f"{srv.trpc}/{path}", json=body, headers=headers, timeout=30)


def me(srv: Server, token: str | None) -> Any:
    r = trpc(srv, "auth.me", token)
    assert r.status_code == 200, r.text
    return r.json()["result"]["data"]


def new_id(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def log_of(srv: Server) -> str:
    time.sleep(0.2)  # the server's log lines are written after its answer
    return srv.log()


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePlatform]:
    with fake_platform() as platform:
        yield platform


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    if "fake" in request.fixturenames:
        request.getfixturevalue("fake").reset()


@pytest.fixture(scope="module")
def platform(fake: FakePlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("platform")
    srv = start_server(
        tmp / "jobs.db", tmp / "server.log", "--no-worker",
        OAUTH_SERVER_URL=fake.url, VITE_APP_ID=APP_ID, OWNER_OPEN_ID=OWNER,
        BUILT_IN_FORGE_API_URL=fake.url + "/forge", BUILT_IN_FORGE_API_KEY=FORGE_KEY,
    )  # fmt: skip
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def down(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("down")
    srv = start_server(
        tmp / "jobs.db", tmp / "server.log", "--no-worker",
        OAUTH_SERVER_URL=f"http://127.0.0.1:{free_port()}", APP_ID=APP_ID, OWNER_OPEN_ID=OWNER,
    )  # fmt: skip
    try:
        yield srv
    finally:
        srv.stop()


# --- the login, both generations ----------------------------------------------------------


def test_gen1_login_sends_the_templates_requests_and_sets_the_session(
    platform: Server, fake: FakePlatform
) -> None:
    open_id = new_id()
    code = fake.user(
        "code-" + open_id, openId=open_id, name="Gen One", email="one@example.com",
        platforms=["REGISTERED_PLATFORM_GOOGLE"],
    )  # fmt: skip
    r = callback(platform, code=code, state=gen1_state())
    assert r.status_code == 302 and r.headers["location"] == "/"

    (exchange,) = fake.calls("ExchangeToken")
    assert exchange.json == {
        "clientId": APP_ID, "grantType": "authorization_code", "code": code,
        "redirectUri": REDIRECT,
    }  # fmt: skip
    (info,) = fake.calls("GetUserInfo")
    assert list(info.json) == ["accessToken"] and info.json["accessToken"].startswith("access-")
    for call in (exchange, info):
        assert call.headers["content-type"] == "application/json"
        assert "authorization" not in call.headers
        assert "connect-protocol-version" not in call.headers

    cookies = set_cookies(r)
    assert set(cookies) == {"app_session_id"}  # no state cookie to clear in Gen-1
    token, attributes = cookies["app_session_id"]
    assert {f"max-age={ONE_YEAR}", "path=/", "httponly", "samesite=lax"} <= attributes
    assert "secure" not in attributes
    assert not any(a.startswith("domain") for a in attributes)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert {k: claims[k] for k in ("openId", "appId", "name")} == {
        "openId": open_id, "appId": APP_ID, "name": "Gen One",
    }  # fmt: skip
    assert abs(claims["exp"] - (time.time() + ONE_YEAR)) < 60

    user = me(platform, token)
    assert {k: user[k] for k in ("openId", "name", "email", "loginMethod", "role")} == {
        "openId": open_id, "name": "Gen One", "email": "one@example.com",
        "loginMethod": "google", "role": "user",
    }  # fmt: skip


def test_gen2_login_checks_the_nonce_and_clears_its_cookie(
    platform: Server, fake: FakePlatform
) -> None:
    open_id = new_id()
    code = fake.user("code-" + open_id, openId=open_id, name="Gen Two", platform="custom")
    nonce = str(uuid.uuid4())
    r = callback(
        platform, code=code, state=gen2_state(nonce),
        headers={"cookie": f"__Host-oauth_state={nonce}"},
    )  # fmt: skip
    token = session_of(r)
    value, attributes = set_cookies(r)["__Host-oauth_state"]
    assert value == "" and {"path=/", "secure", "samesite=none"} <= attributes
    assert any(a.startswith("expires=thu, 01 jan 1970") for a in attributes)
    assert fake.calls("ExchangeToken")[0].json["redirectUri"] == REDIRECT
    user = me(platform, token)
    assert (user["openId"], user["loginMethod"], user["email"]) == (open_id, "custom", None)


def test_the_session_cookie_is_secure_behind_a_tls_proxy(
    platform: Server, fake: FakePlatform
) -> None:
    code = fake.user("code-tls", openId=new_id(), name="Behind TLS")
    r = callback(platform, code=code, state=gen1_state(), headers={"x-forwarded-proto": "https"})
    assert "secure" in set_cookies(r)["app_session_id"][1]


@pytest.mark.parametrize(
    ("platforms", "expected"),
    [
        (["REGISTERED_PLATFORM_APPLE", "REGISTERED_PLATFORM_EMAIL"], "email"),
        (["REGISTERED_PLATFORM_AZURE"], "microsoft"),
        (["REGISTERED_PLATFORM_GITHUB"], "github"),
        (["SOMETHING_ELSE", "REGISTERED_PLATFORM_OTHER"], "something_else"),
        ([], None),
    ],
)
def test_login_method_is_derived_as_the_template_does(
    platform: Server, fake: FakePlatform, platforms: list[str], expected: str | None
) -> None:
    code = fake.user(new_id("code"), openId=new_id(), name="M", platforms=platforms)
    token = session_of(callback(platform, code=code, state=gen1_state()))
    assert me(platform, token)["loginMethod"] == expected


def test_an_empty_name_still_signs_a_non_empty_name(platform: Server, fake: FakePlatform) -> None:
    open_id = new_id()
    token = session_of(callback(platform, code=fake.user("c-" + open_id, openId=open_id, name=""),
                                state=gen1_state()))  # fmt: skip
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["name"] == open_id
    with sqlite3.connect(platform.db_path) as db:  # the login stored `name || null`
        assert db.execute('SELECT name FROM users WHERE "openId" = ?', (open_id,)).fetchone() == (
            None,
        )


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query", ["", "?code=abc", "?state=abc", "?code=&state=abc", "?code=a&code=b&state=abc"]
)
def test_code_and_state_are_required(platform: Server, fake: FakePlatform, query: str) -> None:
    r = httpx.get(platform.base + CALLBACK + query, follow_redirects=False)
    assert (r.status_code, r.json()) == (400, {"error": "code and state are required"})
    assert fake.requests == []


@pytest.mark.parametrize(
    "state",
    [gen2_state("another-nonce"), gen2_state(None), gen1_state(), "%%% not base64 %%%"],
    ids=["wrong-nonce", "no-nonce", "gen1-state", "garbage"],
)
def test_a_state_cookie_needs_the_same_nonce_in_state(
    platform: Server, fake: FakePlatform, state: str
) -> None:
    code = fake.user(new_id("code"), openId=new_id(), name="CSRF")
    r = callback(platform, code=code, state=state, headers={"cookie": "__Host-oauth_state=n-1"})
    assert (r.status_code, r.json()) == (403, {"error": "invalid oauth state"})
    cookies = set_cookies(r)
    assert set(cookies) == {"__Host-oauth_state"} and cookies["__Host-oauth_state"][0] == ""
    assert fake.requests == []


def test_a_state_that_is_not_base64_is_refused(platform: Server, fake: FakePlatform) -> None:
    r = callback(platform, code="c", state="%%% not base64 %%%")
    assert (r.status_code, r.json()) == (403, {"error": "invalid oauth state"})
    assert fake.requests == []


def test_user_info_without_an_open_id_is_a_400(platform: Server, fake: FakePlatform) -> None:
    r = callback(platform, code=fake.user("code-no-id", name="Nobody"), state=gen1_state())
    assert (r.status_code, r.json()) == (400, {"error": "openId missing from user info"})
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize(
    ("call", "failure"),
    [("ExchangeToken", 500), ("ExchangeToken", "not-json"), ("GetUserInfo", 503),
     ("GetUserInfo", "not-json")],
)  # fmt: skip
def test_a_failing_oauth_server_is_a_500_and_no_secret_is_logged(
    platform: Server, fake: FakePlatform, call: str, failure: int | str
) -> None:
    code = fake.user(f"secret-code-{uuid.uuid4().hex}", openId=new_id(), name="Fails")
    fake.fail[call] = failure
    r = callback(platform, code=code, state=gen1_state())
    assert (r.status_code, r.json()) == (500, FAILED)
    assert "set-cookie" not in r.headers
    log = log_of(platform)
    assert f"OAuth callback failed: {call}" in log
    for secret in (code, *fake.access_tokens, FORGE_KEY, SECRET):
        assert secret not in log


def test_an_unknown_code_is_a_500(platform: Server, fake: FakePlatform) -> None:
    r = callback(platform, code="never-issued", state=gen1_state())
    assert (r.status_code, r.json()) == (500, FAILED)


def test_an_unreachable_oauth_server_is_a_500(down: Server) -> None:
    code = f"secret-code-{uuid.uuid4().hex}"
    r = callback(down, code=code, state=gen1_state())
    assert (r.status_code, r.json()) == (500, FAILED)
    log = log_of(down)
    assert "OAuth callback failed: ExchangeToken: ConnectError" in log and code not in log


# --- the owner is admin; system.notifyOwner -------------------------------------------------


def login_owner(srv: Server, fake: FakePlatform) -> str:
    code = fake.user(new_id("owner-code"), openId=OWNER, name="The Owner", email="o@example.com")
    return session_of(callback(srv, code=code, state=gen1_state()))


def test_the_owner_is_admin_and_notifies(platform: Server, fake: FakePlatform) -> None:
    token = login_owner(platform, fake)
    assert me(platform, token)["role"] == "admin"
    r = trpc(platform, "system.notifyOwner", token, {"title": "  New lead ", "content": "Hi\n"})
    assert (r.status_code, r.json()) == (200, {"result": {"data": {"success": True}}})
    (sent,) = fake.calls("SendNotification")
    assert sent.path == NOTIFY_PATH
    assert sent.json == {"title": "New lead", "content": "Hi"}
    assert sent.headers["authorization"] == f"Bearer {FORGE_KEY}"
    assert sent.headers["connect-protocol-version"] == "1"
    assert sent.headers["accept"] == "application/json"
    assert sent.headers["content-type"] == "application/json"


def test_the_owner_is_promoted_again_at_login(platform: Server, fake: FakePlatform) -> None:
    login_owner(platform, fake)
    demote = subprocess.run(
        [sys.executable, "-m", "rpc.cli", "users", "set-role", OWNER, "user"],
        cwd=ROOT, env=server_env(platform.db_path), capture_output=True, timeout=60,
    )  # fmt: skip
    assert demote.returncode == 0, demote.stderr
    assert me(platform, login_owner(platform, fake))["role"] == "admin"


def test_a_user_cannot_notify_the_owner(platform: Server, fake: FakePlatform) -> None:
    code = fake.user(new_id("code"), openId=new_id(), name="Not Owner")
    token = session_of(callback(platform, code=code, state=gen1_state()))
    r = trpc(platform, "system.notifyOwner", token, {"title": "t", "content": "c"})
    assert r.status_code == 403
    assert r.json()["error"]["message"] == NOT_ADMIN
    assert r.json()["error"]["data"]["code"] == "FORBIDDEN"
    r = trpc(platform, "system.notifyOwner", None, {"title": "t", "content": "c"})
    assert r.json()["error"]["data"]["code"] == "UNAUTHORIZED"
    assert fake.calls("SendNotification") == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"title": "   ", "content": "c"}, "Notification title is required."),
        ({"title": "t", "content": " \n"}, "Notification content is required."),
        ({"title": "t" * 1201, "content": "c"}, "Notification title must be at most 1200"),
        ({"title": "t", "content": "c" * 20001}, "Notification content must be at most 20000"),
    ],
)
def test_notify_owner_validates_as_the_template(
    platform: Server, fake: FakePlatform, payload: dict[str, str], message: str
) -> None:
    r = trpc(platform, "system.notifyOwner", login_owner(platform, fake), payload)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith(message)
    assert fake.calls("SendNotification") == []


def test_a_failing_notification_service_is_success_false(
    platform: Server, fake: FakePlatform
) -> None:
    token = login_owner(platform, fake)
    fake.fail["SendNotification"] = 500
    r = trpc(platform, "system.notifyOwner", token, {"title": "t", "content": "c"})
    assert r.json() == {"result": {"data": {"success": False}}}
    assert FORGE_KEY not in log_of(platform)


def test_notify_owner_without_forge_settings_is_success_false(down: Server) -> None:
    token = jwt.encode(
        {"openId": OWNER, "appId": APP_ID, "name": "Owner", "exp": int(time.time()) + 600},
        SECRET, algorithm="HS256",
    )  # fmt: skip
    r = trpc(down, "system.notifyOwner", token, {"title": "t", "content": "c"})
    assert r.json() == {"result": {"data": {"success": False}}}
    assert "BUILT_IN_FORGE_API_URL" in log_of(down)


# --- sessions whose user has no row ---------------------------------------------------------


def test_an_unseen_session_is_created_from_get_user_info_with_jwt(
    platform: Server, fake: FakePlatform
) -> None:
    open_id = new_id("preview")
    fake.by_open_id[open_id] = {
        "name": "From Platform",
        "email": "p@example.com",
        "platforms": ["REGISTERED_PLATFORM_APPLE"],
    }
    token = platform.token(open_id, "Claim Name", app_id=APP_ID)
    user = me(platform, token)
    assert {k: user[k] for k in ("openId", "name", "email", "loginMethod", "role")} == {
        "openId": open_id, "name": "From Platform", "email": "p@example.com",
        "loginMethod": "apple", "role": "user",
    }  # fmt: skip
    (call,) = fake.calls("GetUserInfoWithJwt")
    assert call.json == {"jwtToken": token, "projectId": APP_ID}
    me(platform, platform.token(open_id, "Claim Name", app_id=APP_ID, expires_in=999))
    assert len(fake.calls("GetUserInfoWithJwt")) == 1  # the row exists now: no second call


def test_an_unseen_session_falls_back_to_its_claims(platform: Server, down: Server) -> None:
    for srv in (platform, down):  # the fake does not know the user; `down` does not answer
        open_id = new_id("claims")
        user = me(srv, srv.token(open_id, "Claim Name"))
        assert (user["openId"], user["name"], user["email"]) == (open_id, "Claim Name", None)


def test_app_id_is_also_read_as_APP_ID(down: Server) -> None:
    env = {k: v for k, v in down.env.items() if k != "VITE_APP_ID"}
    out = subprocess.run(
        [sys.executable, "-m", "rpc.cli", "token", "--open-id", "someone"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])["appId"] == APP_ID


# --- the store's login upsert on every backend ------------------------------------------------


def test_the_login_upsert_and_touch(database_url: str) -> None:
    from storage.engine import open_store

    async def main() -> None:
        store = await open_store(database_url, create=True)
        try:
            assert await store.touch_user("u-1", "N") is None
            uid, role = await store.upsert_user_login("u-1", "Ann", "a@x.io", "google")
            assert role == "user"
            assert await store.upsert_user_login("u-1", None, None, None, "admin") == (uid, "admin")
            assert await store.upsert_user_login("u-1", "Ann", None, "email") == (uid, "admin")
            assert await store.touch_user("u-1", None, "user") == (uid, "user")
            assert await store.touch_user("u-1", "Anna") == (uid, "user")
            user = await store.get_user(uid)
            assert user is not None
            assert (user.name, user.email, user.login_method) == ("Anna", None, "email")
        finally:
            await store.driver.close()

    anyio.run(main)
