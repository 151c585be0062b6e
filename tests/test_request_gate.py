"""What every request passes before its route (issue 13 items 1 and 2; ``rpc.gate``,
``rpc.dispatch``): the 8 KiB cap on Cookie headers (431), JSON-only bodies on the tRPC path
(415: no cross-site request forgery by form or no-cors fetch), and local mode's loopback-only
Host check (403: no DNS rebinding). Real server processes; ``server`` runs on both backends.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import httpx
import pytest

from rpc.auth.cookies import MAX_COOKIE_BYTES
from rpc.gate import LOCAL_MODE_MESSAGE, check, is_loopback_host
from rpc.security import API_CSP
from tests.support import Server, start_server
from tests.test_operators import cli

CREATE: Final = "visionPipeline.createJob"
ME: Final = "auth.me"
JSON: Final = {"content-type": "application/json"}
# The 64 KB cookie of the report: 15 s of http.cookies' unquoting on Python < 3.11.10.
HOSTILE: Final = 'a="' + "\\" * 64_000 + '"'
EVERY_KIND_OF_PATH: Final = [
    "/api/trpc/auth.me", "/api/trpc/visionPipeline.getJobHistory", "/healthz",
    "/api/jobs/1/events", "/api/oauth/callback?code=c&state=s", "/", "/some/page",
]  # fmt: skip


def job_body(images: str) -> str:
    return json.dumps({"imageUrl": f"{images}/red.png", "analysisPurpose": "csrf",
                       "outputFormat": "bullet_points"})  # fmt: skip


def job_count(server: Server) -> int:
    return int(server.sql('SELECT COUNT(*) FROM "visionJobs"')[0][0])


def me(server: Server, headers: dict[str, str] | list[tuple[str, str]]) -> Any:
    r = httpx.get(f"{server.trpc}/{ME}", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["result"]["data"]


def assert_security_headers(r: httpx.Response, path: str) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cross-origin-resource-policy"] == "same-origin"
    if path.startswith(("/api/", "/healthz")):
        assert r.headers["content-security-policy"] == API_CSP
        assert r.headers["x-frame-options"] == "DENY"
    else:
        assert r.headers["x-frame-options"] == "SAMEORIGIN"


# --- the Cookie header cap ------------------------------------------------------------------


def test_a_64_kib_backslash_cookie_is_431_on_every_path_and_healthz_answers_meanwhile(
    server: Server,
) -> None:
    def hostile(path: str) -> httpx.Response:
        return httpx.get(server.base + path, headers={"cookie": HOSTILE}, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        answers = pool.map(hostile, EVERY_KIND_OF_PATH * 2)
        # Before the fix each of those held the event loop for seconds; /healthz waited.
        for _ in range(5):
            r = httpx.get(server.base + "/healthz", timeout=10)
            assert (r.status_code, r.json()) == (200, {"ok": True})
        for path, r in zip(EVERY_KIND_OF_PATH * 2, answers, strict=True):
            assert r.status_code == 431, (path, r.status_code)
            assert r.reason_phrase == "Request Header Fields Too Large"
            assert r.text.startswith("Request Header Fields Too Large") and len(r.text) < 200
            assert_security_headers(r, path)


def test_cookie_headers_are_capped_at_8_kib_in_all(server: Server) -> None:
    open_id = f"gate-{uuid.uuid4().hex[:12]}"
    session = f"app_session_id={server.token(open_id)}"
    padding = "; pad=" + "p" * (MAX_COOKIE_BYTES - len(session) - len("; pad="))
    assert len(session + padding) == MAX_COOKIE_BYTES
    assert me(server, {"cookie": session + padding})["openId"] == open_id  # at the cap: read
    r = httpx.get(f"{server.trpc}/{ME}", headers={"cookie": session + padding + "x"})
    assert r.status_code == 431
    # Several Cookie headers (HTTP/2 splits one so) are one list, summed against the cap.
    split = [("cookie", padding[2:]), ("cookie", session)]
    assert me(server, split)["openId"] == open_id
    over = [*split, ("cookie", "x=1")]
    assert httpx.get(f"{server.trpc}/{ME}", headers=over).status_code == 431
    assert httpx.get(server.base + "/healthz", headers=over).status_code == 431


def test_a_7_kib_hostile_quoted_cookie_beside_the_session_is_read(server: Server) -> None:
    open_id = f"gate-{uuid.uuid4().hex[:12]}"
    hostile = 'a="' + "\\" * 7_000 + '"'
    header = f'{hostile}; app_session_id={server.token(open_id)}; b="x\\"y"'
    assert len(header) <= MAX_COOKIE_BYTES
    assert me(server, {"cookie": header})["openId"] == open_id
    # a quoted session cookie is unquoted, as browsers' and Starlette's readers do
    assert me(server, {"cookie": f'app_session_id="{server.token(open_id)}"'})["openId"] == open_id


# --- JSON-only bodies ------------------------------------------------------------------------


CROSS_SITE_TYPES: Final = [
    None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/octet-stream",
]  # fmt: skip


@pytest.fixture(scope="module")
def admin(server: Server) -> dict[str, str]:
    open_id = f"gate-admin-{uuid.uuid4().hex[:8]}"
    done = cli(server, "users", "set-role", open_id, "admin", "--create")
    assert done.returncode == 0, done.stderr
    return {"authorization": f"Bearer {server.token(open_id)}"}


def post(server: Server, path: str, body: str, content_type: str | None, auth: dict[str, str],
         query: str = "") -> httpx.Response:  # fmt: skip
    headers = {**auth, **({} if content_type is None else {"content-type": content_type})}
    return httpx.post(f"{server.trpc}/{path}{query}", content=body, headers=headers, timeout=30)


def test_json_bodies_are_still_accepted(server: Server, images: str, admin: dict[str, str]) -> None:
    """The control of the refusals below: the same requests as application/json act."""
    before = job_count(server)
    for content_type in ("application/json", "Application/JSON; charset=utf-8"):
        r = post(server, CREATE, job_body(images), content_type, admin)
        assert r.status_code == 200, r.text
    assert job_count(server) == before + 2
    r = post(server, "auth.logout", "", "application/json", admin)
    assert r.status_code == 200 and r.headers["set-cookie"].startswith("app_session_id=;")
    title = f"control-{uuid.uuid4().hex}"
    r = post(server, "system.notifyOwner", json.dumps({"title": title, "content": "c"}),
             "application/json", admin)  # fmt: skip
    assert r.json() == {"result": {"data": {"success": False}}}  # no notification service
    assert title in server.log()


@pytest.mark.parametrize("content_type", CROSS_SITE_TYPES)
def test_bodies_a_page_can_send_cross_site_are_415_and_change_nothing(
    server: Server, images: str, admin: dict[str, str], content_type: str | None
) -> None:
    before = job_count(server)
    title = f"csrf-{uuid.uuid4().hex}"
    requests = [
        (CREATE, job_body(images), ""),
        (CREATE, json.dumps({"0": json.loads(job_body(images))}), "?batch=1"),
        ("auth.logout", "", ""),
        ("auth.logout", "{}", ""),
        ("system.notifyOwner", json.dumps({"title": title, "content": "c"}), ""),
    ]
    for path, body, query in requests:
        r = post(server, path, body, content_type, admin, query)
        assert r.status_code == 415, (path, r.text)
        media = (content_type or "").split(";")[0].strip()
        message = f'Unsupported content-type "{media}' if media else "Missing content-type header"
        assert r.json() == {"error": {"message": message, "code": -32015, "data": {
            "code": "UNSUPPORTED_MEDIA_TYPE", "httpStatus": 415}}}  # fmt: skip
        assert "set-cookie" not in r.headers
    assert job_count(server) == before
    assert title not in server.log()


def test_get_accepts_any_content_type(server: Server) -> None:
    open_id = f"gate-{uuid.uuid4().hex[:12]}"
    auth = {"authorization": f"Bearer {server.token(open_id)}"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        assert me(server, {**auth, "content-type": content_type})["openId"] == open_id


# --- local mode: loopback Host names only ----------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server without JWT_SECRET (local mode), without a worker."""
    tmp = tmp_path_factory.mktemp("gate-local")
    srv = start_server(tmp / "jobs.db", tmp / "server.log", "--no-worker", JWT_SECRET="")
    assert "JWT_SECRET" not in srv.env
    try:
        yield srv
    finally:
        srv.stop()


LOOPBACK: Final = ["localhost", "LOCALHOST:{port}", "127.0.0.1", "127.0.0.1:{port}",
                   "127.1.2.3:8080", "[::1]", "[::1]:{port}", "LocalHost:80"]  # fmt: skip
FOREIGN: Final = [
    "attacker.example", "attacker.example:{port}", "localhost.attacker.example",
    "127.0.0.1.nip.io", "0177.0.0.1", "2130706433", "[::2]", "[::1]x", "localhost:x",
    "192.168.1.10:{port}", "0.0.0.0",
]  # fmt: skip


def port_of(server: Server) -> str:
    return server.base.rsplit(":", 1)[1]


@pytest.mark.parametrize("host", LOOPBACK)
def test_local_mode_answers_loopback_hosts(local: Server, host: str) -> None:
    host = host.format(port=port_of(local))
    assert me(local, {"host": host})["openId"] == "local"
    assert httpx.get(local.base + "/healthz", headers={"host": host}).status_code == 200


def test_local_mode_answers_a_request_without_a_host(local: Server) -> None:
    with socket.create_connection(("127.0.0.1", int(port_of(local))), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head


@pytest.mark.parametrize("host", FOREIGN)
def test_local_mode_refuses_other_hosts_on_every_path(local: Server, images: str,
                                                      host: str) -> None:  # fmt: skip
    headers = {"host": host.format(port=port_of(local))}
    before = local.sql('SELECT COUNT(*) FROM "visionJobs"')
    forbidden = {"message": LOCAL_MODE_MESSAGE, "code": -32003,
                 "data": {"code": "FORBIDDEN", "httpStatus": 403}}  # fmt: skip
    r = httpx.get(f"{local.trpc}/{ME}", headers=headers)
    assert (r.status_code, r.json()) == (403, {"error": forbidden})
    assert_security_headers(r, "/api/trpc/")
    r = httpx.get(f"{local.trpc}/{ME}", params={"input": '{"json":null}'}, headers=headers)
    assert (r.status_code, r.json()) == (403, {"error": {"json": forbidden}})  # superjson
    r = httpx.post(f"{local.trpc}/{CREATE}", content=job_body(images), headers={**headers, **JSON})
    assert (r.status_code, r.json()) == (403, {"error": forbidden})
    assert local.sql('SELECT COUNT(*) FROM "visionJobs"') == before
    for path in EVERY_KIND_OF_PATH[2:]:
        r = httpx.get(local.base + path, headers=headers)
        assert (r.status_code, r.text) == (403, LOCAL_MODE_MESSAGE), path
        assert_security_headers(r, path)
    assert "localhost" in LOCAL_MODE_MESSAGE and "set JWT_SECRET" in LOCAL_MODE_MESSAGE


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8443", "10.0.0.7"])
def test_with_a_jwt_secret_any_host_is_answered(server: Server, host: str) -> None:
    assert me(server, {"host": host}) is None
    r = httpx.get(server.base + "/healthz", headers={"host": host})
    assert (r.status_code, r.json()) == (200, {"ok": True})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [*((h.format(port=3000), True) for h in LOOPBACK),
     *((h.format(port=3000), False) for h in FOREIGN), ("", False), ("[::1", False),
     ("localhost:", False), ("localhost:३०००", False), ("127.0.0.1:80:80", False)],
)  # fmt: skip
def test_what_counts_as_a_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host.encode("utf-8")) is loopback


def test_the_gate_sums_cookie_headers_and_checks_every_host() -> None:
    half = b"a=" + b"x" * (MAX_COOKIE_BYTES // 2)
    assert check([(b"cookie", half)], loopback_only=False) is None
    assert check([(b"cookie", half), (b"cookie", half)], loopback_only=False) == "cookie"
    assert check([(b"host", b"evil.example")], loopback_only=False) is None
    assert check([(b"host", b"evil.example")], loopback_only=True) == "host"
    assert check([(b"host", b"localhost"), (b"host", b"evil")], loopback_only=True) == "host"
    assert check([], loopback_only=True) is None
