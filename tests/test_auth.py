"""Sessions as the frontend's template makes them (SEED_API §2–§3, TEMPLATE_FLOWS §1.5–§1.6,
TRPC_WIRE §9): the ``app_session_id`` cookie or a Bearer token carrying an HS256 JWT, users
created on first sight, per-user jobs, logout, local mode and the ``token`` command.

Every test talks HTTP to a real server process: the shared ``server`` (JWT_SECRET set) or
``local``, a second one started without JWT_SECRET.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import quote

import httpx
import jwt
import pytest

from tests.support import ROOT, SECRET, Server, free_port, server_env, start_server

UNAUTHED: Final = "Please login (10001)"
CREATE: Final = "visionPipeline.createJob"
STATUS: Final = "visionPipeline.getJobStatus"
HISTORY: Final = "visionPipeline.getJobHistory"
USAGE: Final = "visionPipeline.getJobUsage"
NO_INPUT: Final = {"json": None, "meta": {"values": ["undefined"]}}
USER_KEYS: Final = [
    "id",
    "openId",
    "name",
    "email",
    "loginMethod",
    "role",
    "createdAt",
    "updatedAt",
    "lastSignedIn",
]
DATE_KEYS: Final = ("createdAt", "updatedAt", "lastSignedIn")
ISO_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DOC_JOB: Final = (
    '{\n    "imageUrl": "https://www.longevityvalley.ai/test-image.jpg",\n'
    '    "analysisPurpose": "Brand analysis for wellness product",\n'
    '    "outputFormat": "detailed_analysis",\n    "creativityLevel": 1.0\n  }'
)  # the design document's curl body, byte for byte
_MISSING: Final = object()


# --- helpers ------------------------------------------------------------------------------


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: str | None = SECRET,
    digest: Any = hashlib.sha256,
) -> str:
    """A JWT built by hand: any header, HMAC signature with ``key`` (``None``: no signature)."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    if key is None:
        return signing_input + "."
    mac = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + b64url(mac)


def claims(open_id: Any = _MISSING, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "appId": "vision-pipeline",
        "name": "Someone",
        "exp": int(time.time()) + 3600,
    }
    if open_id is not _MISSING:
        out["openId"] = open_id
    out.update(extra)
    return out


def enc(value: Any) -> str:
    return quote(json.dumps(value, separators=(",", ":")), safe="!'()*")


def get(
    client: httpx.Client, path: str, input: Any = _MISSING, *, batch: bool = False, **kw: Any
) -> httpx.Response:
    params = (["batch=1"] if batch else []) + ([] if input is _MISSING else ["input=" + enc(input)])
    return client.get("/" + path + ("?" + "&".join(params) if params else ""), **kw)


def post(
    client: httpx.Client, path: str, input: Any = _MISSING, *, batch: bool = False, **kw: Any
) -> httpx.Response:
    body = b"" if input is _MISSING else json.dumps(input).encode()
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return client.post(
        "/" + path + ("?batch=1" if batch else ""), content=body, headers=headers, **kw
    )


def job(images: str) -> dict[str, Any]:
    return {
        "imageUrl": f"{images}/red.png",
        "analysisPurpose": "Brand analysis",
        "outputFormat": "bullet_points",
        "creativityLevel": 1,
    }


def unauthorized(path: str) -> dict[str, Any]:
    return {
        "message": UNAUTHED,
        "code": -32001,
        "data": {"code": "UNAUTHORIZED", "httpStatus": 401, "path": path},
    }


def me(client: httpx.Client, **kw: Any) -> Any:
    r = get(client, "auth.me", **kw)
    assert r.status_code == 200, r.text
    return r.json()["result"]["data"]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def cookie(token: str) -> dict[str, str]:
    return {"cookie": f"app_session_id={token}"}


def new_open_id() -> str:
    return f"auth-{uuid.uuid4().hex[:16]}"


def set_cookie_parts(header: str) -> tuple[str, str, set[str]]:
    """(name, value, lower-cased attributes) of one Set-Cookie header."""
    first, *attributes = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    return name, value, {a.lower().replace(" ", "") for a in attributes if a}


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def anonymous(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.trpc, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server without JWT_SECRET (local mode) and without a worker (jobs stay pending)."""
    tmp = tmp_path_factory.mktemp("local")
    srv = start_server(tmp / "jobs.db", tmp / "server.log", "--no-worker", JWT_SECRET="")
    assert "JWT_SECRET" not in srv.env
    try:
        yield srv
    finally:
        srv.stop()


# --- where the session comes from ---------------------------------------------------------


def test_a_session_cookie_is_accepted(server: Server, anonymous: httpx.Client) -> None:
    open_id = new_open_id()
    user = me(anonymous, headers=cookie(server.token(open_id, "Cookie User")))
    assert user["openId"] == open_id and user["name"] == "Cookie User"
    # among other cookies, as a browser sends it
    header = {"cookie": f"theme=dark; app_session_id={server.token(open_id)}; lang=en"}
    assert me(anonymous, headers=header)["openId"] == open_id
    r = get(anonymous, HISTORY, headers=header)
    assert r.status_code == 200 and r.json() == {"result": {"data": []}}


def test_a_bearer_token_is_accepted(server: Server, anonymous: httpx.Client) -> None:
    open_id = new_open_id()
    token = server.token(open_id, "Bearer User")
    user = me(anonymous, headers=bearer(token))
    assert user["openId"] == open_id and user["name"] == "Bearer User"
    r = get(anonymous, HISTORY, headers=bearer(token))
    assert r.status_code == 200 and r.json() == {"result": {"data": []}}


def test_the_cookie_wins_over_the_bearer_token(server: Server, anonymous: httpx.Client) -> None:
    by_cookie, by_bearer = new_open_id(), new_open_id()
    headers = {**cookie(server.token(by_cookie)), **bearer(server.token(by_bearer))}
    assert me(anonymous, headers=headers)["openId"] == by_cookie
    # an invalid cookie is not rescued by a valid bearer token (the template reads one token)
    headers = {**cookie("garbage"), **bearer(server.token(by_bearer))}
    assert me(anonymous, headers=headers) is None


def test_a_token_with_only_an_open_id_is_a_session(server: Server, anonymous: httpx.Client) -> None:
    open_id = new_open_id()
    token = jwt.encode({"openId": open_id}, SECRET, algorithm="HS256")
    user = me(anonymous, headers=bearer(token))
    assert user["openId"] == open_id and user["role"] == "user"


def test_a_hand_built_hs256_token_is_a_session(server: Server, anonymous: httpx.Client) -> None:
    # the control for the forged tokens below: the same builder, the accepted algorithm
    open_id = new_open_id()
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(open_id))
    assert me(anonymous, headers=bearer(token))["openId"] == open_id
    assert me(anonymous, headers=cookie(token))["openId"] == open_id


# --- no valid session -----------------------------------------------------------------------


@pytest.mark.parametrize("path", [CREATE, STATUS, HISTORY])
def test_no_token_is_unauthorized_with_the_exact_message(
    anonymous: httpx.Client, images: str, path: str
) -> None:
    if path == CREATE:
        r = post(anonymous, CREATE, job(images))
    elif path == STATUS:
        r = get(anonymous, STATUS, {"jobId": 1})
    else:
        r = get(anonymous, HISTORY)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": unauthorized(path)}


def test_no_token_in_a_superjson_batch_is_unauthorized_per_call(anonymous: httpx.Client) -> None:
    r = get(
        anonymous, f"{HISTORY},{STATUS}", {"0": NO_INPUT, "1": {"json": {"jobId": 1}}}, batch=True
    )
    assert r.status_code == 401
    assert r.json() == [
        {"error": {"json": unauthorized(HISTORY)}},
        {"error": {"json": unauthorized(STATUS)}},
    ]
    r = post(anonymous, CREATE, {"0": {"json": {"imageUrl": "x"}}}, batch=True)
    assert r.status_code == 401
    assert r.json() == [{"error": {"json": unauthorized(CREATE)}}]
    # beside a public procedure: 207, and auth.me is null
    r = get(anonymous, f"auth.me,{HISTORY}", {"0": NO_INPUT, "1": NO_INPUT}, batch=True)
    assert r.status_code == 207
    assert r.json() == [
        {"result": {"data": {"json": None}}},
        {"error": {"json": unauthorized(HISTORY)}},
    ]


def test_authentication_comes_before_input_validation(anonymous: httpx.Client) -> None:
    r = post(anonymous, CREATE, {"imageUrl": "ftp://x", "creativityLevel": 9})
    assert r.status_code == 401 and r.json() == {"error": unauthorized(CREATE)}
    r = get(anonymous, STATUS, {"jobId": "abc"})
    assert r.status_code == 401 and r.json() == {"error": unauthorized(STATUS)}


def _bad_tokens() -> list[tuple[str, Any]]:
    now = int(time.time())
    hs256 = {"alg": "HS256", "typ": "JWT"}
    return [
        ("expired", lambda oid: jwt.encode(claims(oid, exp=now - 60), SECRET, algorithm="HS256")),
        (
            "wrong-signature",
            lambda oid: jwt.encode(claims(oid), SECRET + "-other", algorithm="HS256"),
        ),
        ("tampered-claims", lambda oid: _tamper(jwt.encode(claims(oid), SECRET, "HS256"))),
        ("alg-none", lambda oid: forge({"alg": "none", "typ": "JWT"}, claims(oid), key=None)),
        ("alg-none-signed", lambda oid: forge({"alg": "none", "typ": "JWT"}, claims(oid))),
        # the same secret with another HMAC: only HS256 is accepted
        (
            "hs512",
            lambda oid: forge({"alg": "HS512", "typ": "JWT"}, claims(oid), digest=hashlib.sha512),
        ),
        (
            "hs384",
            lambda oid: forge({"alg": "HS384", "typ": "JWT"}, claims(oid), digest=hashlib.sha384),
        ),
        ("rs256-header", lambda oid: forge({"alg": "RS256", "typ": "JWT"}, claims(oid))),
        ("no-alg", lambda oid: forge({"typ": "JWT"}, claims(oid))),
        ("missing-openId", lambda oid: jwt.encode(claims(), SECRET, algorithm="HS256")),
        ("empty-openId", lambda oid: jwt.encode(claims(""), SECRET, algorithm="HS256")),
        ("blank-openId", lambda oid: jwt.encode(claims("   "), SECRET, algorithm="HS256")),
        ("numeric-openId", lambda oid: jwt.encode(claims(42), SECRET, algorithm="HS256")),
        ("null-openId", lambda oid: jwt.encode(claims(None), SECRET, algorithm="HS256")),
        (
            "not-yet-valid",
            lambda oid: jwt.encode(claims(oid, nbf=now + 3600), SECRET, algorithm="HS256"),
        ),
        ("garbage", lambda oid: "garbage"),
        ("three-garbage-parts", lambda oid: "a.b.c"),
        (
            "payload-not-json",
            lambda oid: (
                b64url(json.dumps(hs256).encode())
                + "."
                + b64url(b"not json")
                + "."
                + b64url(b"sig")
            ),
        ),
        ("empty", lambda oid: ""),
    ]


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["openId"] = "someone-else"
    return ".".join([header, b64url(json.dumps(data).encode()), signature])


BAD_TOKENS: Final = _bad_tokens()


@pytest.mark.parametrize("carrier", ["cookie", "bearer"])
@pytest.mark.parametrize("make", [m for _, m in BAD_TOKENS], ids=[n for n, _ in BAD_TOKENS])
def test_an_invalid_token_is_no_session(anonymous: httpx.Client, make: Any, carrier: str) -> None:
    token = make(new_open_id())
    headers = cookie(token) if carrier == "cookie" else {"authorization": f"Bearer {token}".strip()}
    r = get(anonymous, HISTORY, headers=headers)
    assert r.status_code == 401
    assert r.json() == {"error": unauthorized(HISTORY)}
    assert me(anonymous, headers=headers) is None


def test_a_session_ends_when_its_token_expires(server: Server, anonymous: httpx.Client) -> None:
    open_id = new_open_id()
    expires = int(time.time()) + 2
    token = jwt.encode(claims(open_id, exp=expires), SECRET, algorithm="HS256")
    r = get(anonymous, HISTORY, headers=bearer(token))
    assert r.status_code == 200, r.text  # valid now (and possibly remembered by the server)
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    r = get(anonymous, HISTORY, headers=bearer(token))
    assert r.status_code == 401 and r.json() == {"error": unauthorized(HISTORY)}


# --- auth.me --------------------------------------------------------------------------------


def test_auth_me_logged_out_is_null(anonymous: httpx.Client) -> None:
    r = get(anonymous, "auth.me")
    assert r.status_code == 200 and r.json() == {"result": {"data": None}}
    r = get(anonymous, "auth.me", NO_INPUT)
    assert r.status_code == 200 and r.json() == {"result": {"data": {"json": None}}}
    # the template's exact request (TRPC_WIRE §9), byte for byte
    r = anonymous.get(
        "/auth.me?batch=1&input=%7B%220%22%3A%7B%22json%22%3Anull%2C%22meta%22%3A"
        "%7B%22values%22%3A%5B%22undefined%22%5D%7D%7D%7D"
    )
    assert r.status_code == 200
    assert r.content == b'[{"result":{"data":{"json":null}}}]'


def test_auth_me_logged_in_is_the_user_row(server: Server, anonymous: httpx.Client) -> None:
    open_id = new_open_id()
    headers = bearer(server.token(open_id, "Row User"))
    user = me(anonymous, headers=headers)
    assert list(user) == USER_KEYS
    assert isinstance(user["id"], int) and user["id"] > 0
    assert user["openId"] == open_id and user["name"] == "Row User"
    assert user["role"] == "user"
    assert user["email"] is None or isinstance(user["email"], str)
    assert user["loginMethod"] is None or isinstance(user["loginMethod"], str)
    for key in DATE_KEYS:
        assert isinstance(user[key], str) and ISO_DATE.match(user[key]), user[key]
    assert user["createdAt"] <= user["lastSignedIn"]

    r = get(anonymous, "auth.me", NO_INPUT, headers=headers)
    data = r.json()["result"]["data"]
    assert list(data) == ["json", "meta"]
    assert data["meta"] == {"values": {k: ["Date"] for k in DATE_KEYS}, "v": 1}
    assert list(data["json"]) == USER_KEYS
    assert {k: v for k, v in data["json"].items() if k not in DATE_KEYS} == {
        k: v for k, v in user.items() if k not in DATE_KEYS
    }
    assert data["json"]["createdAt"] == user["createdAt"]


def test_first_sight_of_an_open_id_creates_one_user(
    server: Server, anonymous: httpx.Client
) -> None:
    first, second = new_open_id(), new_open_id()
    a = me(anonymous, headers=bearer(server.token(first, "First")))
    b = me(anonymous, headers=cookie(server.token(second, "Second")))
    assert a["id"] != b["id"] and (a["openId"], b["openId"]) == (first, second)
    # the same openId through another token (other name, other expiry, other carrier)
    again = jwt.encode(
        claims(first, name="First again", exp=int(time.time()) + 7200), SECRET, algorithm="HS256"
    )
    c = me(anonymous, headers=cookie(again))
    assert c["id"] == a["id"] and c["openId"] == first
    assert c["createdAt"] == a["createdAt"]
    assert me(anonymous, headers=bearer(server.token(first)))["id"] == a["id"]


# --- per-user jobs ------------------------------------------------------------------------


def test_a_user_cannot_read_another_users_job(server: Server, images: str) -> None:
    with server.client(new_open_id()) as owner, server.client(new_open_id()) as other:
        r = post(owner, CREATE, job(images))
        assert r.status_code == 200, r.text
        job_id = r.json()["result"]["data"]["jobId"]
        r = get(other, STATUS, {"jobId": job_id})
        assert r.status_code == 403
        assert r.json() == {
            "error": {
                "message": "You do not have access to this job",
                "code": -32003,
                "data": {"code": "FORBIDDEN", "httpStatus": 403, "path": STATUS},
            }
        }
        r = other.get(f"/{STATUS}?jobId={job_id}")
        assert r.status_code == 403
        assert get(other, HISTORY).json() == {"result": {"data": []}}
        owned = get(owner, HISTORY).json()["result"]["data"]
        assert [item["jobId"] for item in owned] == [job_id]
        assert get(owner, STATUS, {"jobId": job_id}).status_code == 200
        # getJobUsage (the page's tokens and cost) follows getJobStatus's rules
        r = get(other, USAGE, {"jobId": job_id})
        assert r.status_code == 403
        assert r.json()["error"]["message"] == "You do not have access to this job"
        assert get(owner, USAGE, {"jobId": 10**9}).json()["error"]["data"]["code"] == "NOT_FOUND"
        usage = get(owner, USAGE, {"jobId": job_id}).json()["result"]["data"]
        assert set(usage) == {"geminiInputTokens", "geminiOutputTokens", "deepseekInputTokens",
                              "deepseekOutputTokens", "attempts", "costUsd", "visionCachedFrom",
                              "contentCachedFrom"}  # fmt: skip


def test_an_unknown_job_is_not_found(server: Server) -> None:
    with server.client(new_open_id()) as client:
        r = get(client, STATUS, {"jobId": 987654321})
        assert r.status_code == 404
        assert r.json() == {
            "error": {
                "message": "Job not found",
                "code": -32004,
                "data": {"code": "NOT_FOUND", "httpStatus": 404, "path": STATUS},
            }
        }
        r = get(client, STATUS, {"json": {"jobId": 987654321}})
        assert r.json() == {
            "error": {
                "json": {
                    "message": "Job not found",
                    "code": -32004,
                    "data": {"code": "NOT_FOUND", "httpStatus": 404, "path": STATUS},
                }
            }
        }


# --- logout ---------------------------------------------------------------------------------


def test_logout_clears_the_session_cookie(server: Server, anonymous: httpx.Client) -> None:
    token = server.token(new_open_id())
    r = post(anonymous, "auth.logout", headers=cookie(token))
    assert r.status_code == 200 and r.json() == {"result": {"data": {"success": True}}}
    headers = r.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    name, value, attributes = set_cookie_parts(headers[0])
    assert (name, value) == ("app_session_id", "")
    assert attributes == {"max-age=0", "path=/", "httponly", "samesite=lax"}
    # logged out without a session is fine too
    r = post(anonymous, "auth.logout")
    assert r.json() == {"result": {"data": {"success": True}}}
    assert set_cookie_parts(r.headers["set-cookie"])[:2] == ("app_session_id", "")


def test_logout_behind_https_marks_the_cleared_cookie_secure(anonymous: httpx.Client) -> None:
    for proto in ("https", "https, http", "http, https"):
        r = post(anonymous, "auth.logout", headers={"x-forwarded-proto": proto})
        name, value, attributes = set_cookie_parts(r.headers["set-cookie"])
        assert (name, value) == ("app_session_id", "")
        assert attributes == {"max-age=0", "path=/", "httponly", "samesite=none", "secure"}
    r = post(anonymous, "auth.logout", headers={"x-forwarded-proto": "http"})
    assert "secure" not in set_cookie_parts(r.headers["set-cookie"])[2]


def test_logout_in_a_superjson_batch_sets_the_cookie_header(
    server: Server, anonymous: httpx.Client
) -> None:
    r = post(
        anonymous,
        "auth.logout",
        {"0": {**NO_INPUT, "meta": {"values": ["undefined"], "v": 1}}},
        batch=True,
        headers=cookie(server.token(new_open_id())),
    )
    assert r.status_code == 200
    assert r.json() == [{"result": {"data": {"json": {"success": True}}}}]
    name, value, attributes = set_cookie_parts(r.headers["set-cookie"])
    assert (name, value) == ("app_session_id", "") and "max-age=0" in attributes


# --- local mode ---------------------------------------------------------------------------


def test_local_mode_says_so_at_start(local: Server) -> None:
    assert "LOCAL MODE" in local.log() and "JWT_SECRET" in local.log()


def test_local_mode_runs_the_design_documents_curl_commands(local: Server) -> None:
    with httpx.Client(base_url=local.trpc, timeout=30) as curl:
        r = curl.post("/" + CREATE, content=DOC_JOB, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        data = r.json()["result"]["data"]
        assert data == {
            "jobId": data["jobId"],
            "status": "pending",
            "message": "Job created and queued for processing",
        }
        r = curl.get(f"/{STATUS}?jobId={data['jobId']}")
        assert r.status_code == 200, r.text
        status = r.json()["result"]["data"]
        assert (status["jobId"], status["status"], status["progress"]) == (
            data["jobId"],
            "pending",
            0,
        )
        assert data["jobId"] in [
            item["jobId"] for item in get(curl, HISTORY).json()["result"]["data"]
        ]


def test_local_mode_serves_every_tokenless_request_as_one_user(local: Server, images: str) -> None:
    with httpx.Client(base_url=local.trpc) as a, httpx.Client(base_url=local.trpc) as b:
        r = post(a, CREATE, {"json": job(images)})
        assert r.status_code == 200, r.text
        job_id = r.json()["result"]["data"]["json"]["jobId"]
        r = get(b, STATUS, {"jobId": job_id})
        assert r.status_code == 200 and r.json()["result"]["data"]["jobId"] == job_id
        ids_a = [item["jobId"] for item in get(a, HISTORY, {"limit": 100}).json()["result"]["data"]]
        ids_b = [item["jobId"] for item in get(b, HISTORY, {"limit": 100}).json()["result"]["data"]]
        assert job_id in ids_a and ids_a == ids_b
        me_a, me_b = me(a), me(b)
        assert me_a is not None and me_a["id"] == me_b["id"]


def serve_in_local_mode(host: str, tmp_path: Any) -> tuple[int, str]:
    """Run ``serve --host HOST`` without JWT_SECRET; (exit code, output) once it exits.
    Fails as soon as it accepts connections instead of refusing."""
    env = server_env(tmp_path / "jobs.db", JWT_SECRET="")
    assert "JWT_SECRET" not in env
    port = free_port()
    command = [sys.executable, "-m", "rpc.cli", "serve", "--host", host, "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 30
    try:
        while process.poll() is None:
            listening = False
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                listening = True
            if listening:
                pytest.fail(f"serve --host {host!r} in local mode is listening on port {port}")
            if time.monotonic() > deadline:
                pytest.fail(f"serve --host {host!r} in local mode neither refused nor listened")
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.stdout is not None
    return process.returncode, process.stdout.read()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_local_mode_refuses_a_non_loopback_host(host: str, tmp_path: Any) -> None:
    code, output = serve_in_local_mode(host, tmp_path)
    assert code != 0
    assert host in output and "JWT_SECRET" in output, output


def test_local_mode_refuses_the_empty_host_which_means_every_interface(tmp_path: Any) -> None:
    code, output = serve_in_local_mode("", tmp_path)
    assert code != 0 and "JWT_SECRET" in output, output


# --- the token command ----------------------------------------------------------------------


def test_the_token_command_prints_a_session_token_the_server_accepts(
    server: Server, anonymous: httpx.Client, tmp_path: Any
) -> None:
    open_id = new_open_id()
    env = server_env(tmp_path / "jobs.db", JWT_SECRET=SECRET)
    done = subprocess.run(
        [sys.executable, "-m", "rpc.cli", "token", "--open-id", open_id, "--name", "API User"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    verified = jwt.decode(token, SECRET, algorithms=["HS256"])
    for claim in ("openId", "appId", "name"):
        assert isinstance(verified[claim], str) and verified[claim], verified
    assert verified["openId"] == open_id and verified["name"] == "API User"
    assert verified["exp"] > time.time() + 86400
    user = me(anonymous, headers=bearer(token))
    assert user["openId"] == open_id and user["name"] == "API User"
    assert get(anonymous, HISTORY, headers=cookie(token)).status_code == 200


@pytest.mark.parametrize("open_id", ["", "   ", "x" * 65], ids=["empty", "blank", "65-chars"])
def test_the_token_command_never_prints_a_token_the_server_rejects(
    anonymous: httpx.Client, tmp_path: Any, open_id: str
) -> None:
    env = server_env(tmp_path / "jobs.db", JWT_SECRET=SECRET)
    done = subprocess.run(
        [sys.executable, "-m", "rpc.cli", "token", "--open-id", open_id, "--name", "N"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:  # refusing, with a reason, is right
        assert "open" in done.stderr.lower(), done.stderr
        return
    user = me(anonymous, headers=bearer(done.stdout.strip()))
    assert user is not None and user["openId"] == open_id
