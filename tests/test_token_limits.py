"""Sessions at their limits (issue 13, item 6): tokens whose openId or name no database can
store, an OAuth account id longer than the users.openId column, a short JWT_SECRET, and the
clock-skew leeway on ``iat``/``nbf``. Each case was a 500, a login loop, a silent weak key or a
refused session before."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from rpc.auth.tokens import LEEWAY_SECONDS, mint_token, verify_token
from tests.fake_oauth import FakePlatform, fake_platform
from tests.support import ROOT, SECRET, Server, backend_server, server_env, start_server
from tests.test_oauth import CALLBACK, gen1_state, set_cookies

# This process signs and checks tokens with short secrets too; what it prints is not tested.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
HISTORY = "visionPipeline.getJobHistory"
UNSTORABLE = {"nul": "a\x00b", "lone-high-surrogate": "a\ud800b", "lone-low-surrogate": "\udc00"}


def me(server: Server, token: str) -> Any:
    r = httpx.get(f"{server.trpc}/auth.me", headers={"cookie": f"app_session_id={token}"})
    assert r.status_code == 200, r.text
    return r.json()["result"]["data"]


def user_count(server: Server) -> int:
    return int(server.sql("SELECT COUNT(*) FROM users")[0][0])


# --- tokens carrying what no database can store ---------------------------------------------


@pytest.mark.parametrize("claim", ["openId", "name"])
@pytest.mark.parametrize("bad", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
def test_a_token_with_an_unstorable_open_id_or_name_is_no_session(
    server: Server, claim: str, bad: str
) -> None:
    claims = {"openId": f"ok-{uuid.uuid4().hex[:8]}", "name": "Fine", "appId": "vision-pipeline",
              "exp": int(time.time()) + 600, claim: f"{claim}-{bad}"}  # fmt: skip
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    before = user_count(server)
    for carrier in ({"authorization": f"Bearer {token}"}, {"cookie": f"app_session_id={token}"}):
        r = httpx.get(f"{server.trpc}/{HISTORY}", headers=carrier, timeout=30)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["data"]["code"] == "UNAUTHORIZED"
    assert me(server, token) is None
    assert user_count(server) == before  # nothing written


def test_a_name_with_a_surrogate_pair_is_a_session(server: Server) -> None:
    # the control: an escaped pair is one real character, stored as such
    open_id = f"emoji-{uuid.uuid4().hex[:8]}"
    token = mint_token(SECRET, open_id, name="Smile \ud83d\ude00")
    user = me(server, token)
    assert user["openId"] == open_id and user["name"] == "Smile \U0001f600"


# --- clock skew -------------------------------------------------------------------------------


def signed(**claims: Any) -> str:
    return jwt.encode({"openId": "skewed", "name": "Skew", **claims}, SECRET, algorithm="HS256")


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_iat_and_nbf_a_little_ahead_of_our_clock_are_accepted(claim: str) -> None:
    now = int(time.time())
    for ahead in (5, LEEWAY_SECONDS - 5):
        assert verify_token(SECRET, signed(**{claim: now + ahead})) is not None, ahead
    for ahead in (LEEWAY_SECONDS + 30, 3600):
        assert verify_token(SECRET, signed(**{claim: now + ahead})) is None, ahead


def test_the_leeway_does_not_extend_expiry() -> None:
    now = int(time.time())
    assert verify_token(SECRET, signed(exp=now + 30)) is not None
    for ago in (1, 5, LEEWAY_SECONDS - 5):
        assert verify_token(SECRET, signed(exp=now - ago)) is None, ago


def test_a_token_issued_by_a_clock_slightly_ahead_is_a_session(server: Server) -> None:
    open_id = f"ahead-{uuid.uuid4().hex[:8]}"
    now = int(time.time())
    token = jwt.encode({"openId": open_id, "iat": now + 10, "nbf": now + 10, "exp": now + 600},
                       SECRET, algorithm="HS256")  # fmt: skip
    assert me(server, token)["openId"] == open_id


# --- a short JWT_SECRET ---------------------------------------------------------------------

PYJWT_WORDS = ("InsecureKeyLengthWarning", "HMAC key")


def token_command(tmp_path: Path, secret: str) -> subprocess.CompletedProcess[str]:
    env = server_env(tmp_path / "jobs.db", JWT_SECRET=secret)
    return subprocess.run(
        [sys.executable, "-m", "rpc.cli", "token", "--open-id", "someone"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("secret", [" ", "change-me"], ids=["one-space", "change-me"])
def test_the_token_command_warns_once_in_our_words_about_a_short_secret(
    tmp_path: Path, secret: str
) -> None:
    done = token_command(tmp_path, secret)
    assert done.returncode == 0, done.stderr
    ours = f"JWT_SECRET is {len(secret)} bytes; use at least 32 random bytes"
    assert done.stderr.count(ours) == 1, done.stderr
    assert "secrets.token_hex(32)" in done.stderr
    assert not any(words in done.stderr for words in PYJWT_WORDS), done.stderr
    assert jwt.decode(done.stdout.strip(), secret, algorithms=["HS256"])["openId"] == "someone"


def test_a_32_byte_secret_gives_no_warning(tmp_path: Path) -> None:
    done = token_command(tmp_path, "k" * 32)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_server_with_a_short_secret_warns_once_in_our_words(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "jobs.db", tmp_path / "server.log", "--no-worker",
                       JWT_SECRET="change-me")  # fmt: skip
    try:
        for n in range(3):  # first sights verify the signature; the first is cached
            token = mint_token("change-me", f"short-{n}")
            assert me(srv, token)["openId"] == f"short-{n}"
            assert me(srv, token)["openId"] == f"short-{n}"
    finally:
        srv.stop()
    log = srv.log()
    assert log.count("JWT_SECRET is 9 bytes; use at least 32 random bytes") == 1, log
    assert not any(words in log for words in PYJWT_WORDS), log


def test_a_server_with_a_long_secret_does_not_warn(server: Server) -> None:
    assert len(SECRET) >= 32
    assert "JWT_SECRET is" not in server.log()


# --- OAuth accounts whose id cannot name a user here ----------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePlatform]:
    with fake_platform() as platform:
        yield platform


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(
    request: pytest.FixtureRequest, fake: FakePlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    with backend_server(request.param, tmp, "--no-worker", prefix="vp_limits",
                        OAUTH_SERVER_URL=fake.url) as srv:  # fmt: skip
        yield srv


def login(srv: Server, fake: FakePlatform, **profile: Any) -> httpx.Response:
    code = fake.user(f"code-{uuid.uuid4().hex}", **profile)
    return httpx.get(srv.base + CALLBACK, params={"code": code, "state": gen1_state()},
                     follow_redirects=False, timeout=30)  # fmt: skip


BAD_OPEN_IDS = {"65-chars": "x" * 65, "1000-chars": "y" * 1000, **UNSTORABLE}


@pytest.mark.parametrize("open_id", list(BAD_OPEN_IDS.values()), ids=list(BAD_OPEN_IDS))
def test_an_account_id_that_cannot_name_a_user_is_a_clear_400_without_a_cookie(
    platform: Server, fake: FakePlatform, open_id: str
) -> None:
    before = user_count(platform)
    r = login(platform, fake, openId=open_id, name="Too Long")
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error.startswith("this account's id cannot be used here")
    if len(open_id) > 64:
        assert "longer than 64 characters" in error
    assert "set-cookie" not in r.headers
    assert user_count(platform) == before  # nothing written


def test_a_64_character_account_id_logs_in(platform: Server, fake: FakePlatform) -> None:
    open_id = uuid.uuid4().hex * 2
    assert len(open_id) == 64
    r = login(platform, fake, openId=open_id, name="Just Fits")
    assert r.status_code == 302, r.text
    assert me(platform, set_cookies(r)["app_session_id"][0])["openId"] == open_id


def test_an_unstorable_profile_name_or_email_is_left_out(
    platform: Server, fake: FakePlatform
) -> None:
    open_id = f"nul-name-{uuid.uuid4().hex[:8]}"
    r = login(platform, fake, openId=open_id, name="Bad\x00Name", email="a\ud800@example.com")
    assert r.status_code == 302, r.text
    token = set_cookies(r)["app_session_id"][0]
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["name"] == open_id
    stored = platform.sql('SELECT name, email FROM users WHERE "openId" = ?', open_id)
    assert stored == [(None, None)]  # the login stored `name || null`, as for an empty name
    assert me(platform, token)["openId"] == open_id
