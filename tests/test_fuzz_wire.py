"""The tRPC wire layer under attack (issue 8 items 3-4): hostile requests against a running
server, on both backends.

The properties (hypothesis, a modest number of examples each): whatever is sent, the answer
is a well-formed tRPC envelope (or a batch of them) with a 4xx status, never a 500 and never
a hang, and the server still answers a valid call right after. The requests are built so
that no call in them can succeed (a signed-in user without jobs, or no user at all, and
inputs that no procedure accepts), so "4xx" is exact, not "anything below 500".
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rpc.wire.errors import CODES
from tests.support import Server, backend_server

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CREATE = "visionPipeline.createJob"
STATUS = "visionPipeline.getJobStatus"
# Every call to these fails for an anonymous client (or a user with no jobs).
GUARDED = [CREATE, STATUS, "visionPipeline.getJobHistory", "visionPipeline.getWorkerStatus",
           "system.notifyOwner"]  # fmt: skip
REAL = {CREATE, STATUS, "visionPipeline.getJobHistory", "visionPipeline.getWorkerStatus",
        "system.notifyOwner", "system.health", "auth.me", "auth.logout",
        "visionPipeline.onJobProgress", "visionPipeline.onMyJobs"}  # fmt: skip


def _png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


PNG_URL = _png_data_url()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:  # fmt: skip
    """A server without a worker (jobs created by the unicode test stay pending)."""
    with backend_server(request.param, tmp_path_factory.mktemp("fuzz"), "--no-worker",
                        prefix="vp_fuzz") as srv:  # fmt: skip
        yield srv


@pytest.fixture(scope="module")
def user(server: Server) -> Iterator[httpx.Client]:
    with server.client(f"fuzz-{uuid.uuid4().hex[:12]}") as client:
        yield client


@pytest.fixture(scope="module")
def anon(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.trpc, timeout=20) as client:
        yield client


def check_4xx(r: httpx.Response) -> list[dict[str, Any]]:
    """A tRPC envelope (or a batch of them), every call an error with a 4xx status, and the
    HTTP status that tRPC derives from them. Returns the error objects."""
    assert r.status_code < 500, r.text[:500]
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    items = body if isinstance(body, list) else [body]
    errors = []
    for item in items:
        assert isinstance(item, dict) and set(item) == {"error"}, item
        error = item["error"]
        if set(error) == {"json"}:  # superjson-wrapped
            error = error["json"]
        assert isinstance(error["message"], str), error
        data = error["data"]
        assert CODES[data["code"]] == (error["code"], data["httpStatus"]), error
        assert 400 <= data["httpStatus"] < 500, error
        errors.append(error)
    statuses = {e["data"]["httpStatus"] for e in errors}
    assert r.status_code == (statuses.pop() if len(statuses) == 1 else 207)
    return errors


def still_answers(client: httpx.Client) -> None:
    r = client.get("/system.health", params={"input": '{"timestamp":1}'})
    assert r.status_code == 200 and r.json() == {"result": {"data": {"ok": True}}}


# --- strategies -------------------------------------------------------------------------------

text = st.text(max_size=30)
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)


def _nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return "[" * depth  # never closed


hostile_texts = st.one_of(
    st.builds(_nested, st.integers(900, 150_000), st.sampled_from(["array", "object", "open"])),
    st.integers(4_301, 40_000).map(lambda n: "1" * n),  # past Python's int digit limit
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-1e999",
            '{"jobId":1e400}',
            '{"jobId":NaN}',
            '"\\ud800"',
            '{"imageUrl":"\\udfff"}',
            '{"a":"\\u0000"}',
            '{"\\u0000":1}',
            "[1,2",
            '{"a"}',
            "\x00",
            "\ufeff{}",
            "{'a':1}",
            "",
            "   ",
            "[]" * 3,
            '"' + "\\" * 5 + '"',
        ]
    ),
    st.integers(20_001, 60_000).map(lambda n: "[" + ",".join(["{}"] * n) + "]"),
    json_values.map(json.dumps),
    st.tuples(json_values.map(json.dumps), st.integers(0, 50)).map(lambda t: t[0][: t[1]]),
)
annotations = st.one_of(
    st.sampled_from(["Date", "bigint", "number", "undefined", "set", "map", "regexp", "Error",
                     "URL", "custom", "symbol", "class", "", "__proto__", "typed-array"]),
    st.tuples(st.sampled_from(["class", "symbol", "custom", "typed-array", "Date"]),
              st.text(max_size=8)).map(list),
    json_values,
)  # fmt: skip
meta_paths = st.one_of(
    st.text(max_size=20),
    st.lists(st.sampled_from(["a", "0", "1", "jobId", "__proto__", "constructor", "prototype",
                              "\\.", "..", "", "json"]), max_size=6).map(".".join),
)  # fmt: skip
meta_trees = st.one_of(
    st.lists(annotations, max_size=3),
    st.dictionaries(meta_paths, st.lists(annotations, min_size=1, max_size=2) | json_values,
                    max_size=4),
    json_values,
)  # fmt: skip
superjson_payloads = st.fixed_dictionaries(
    {"json": json_values, "meta": st.fixed_dictionaries(
        {"values": meta_trees},
        optional={"v": st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats()),
                  "referentialEqualities": json_values})},
)  # fmt: skip
procedure_names = st.one_of(
    st.sampled_from(GUARDED),
    # "." and ".." are dot segments: the client resolves "/api/trpc/." to "/api/trpc", which
    # the server answers with its redirect to "/api/trpc/" (test_wire pins that), not a call.
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(
        lambda p: p not in REAL and p not in (".", "..")
    ),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x",
                     "application/octet-stream", "application/x-www-form-urlencoded",
                     "text/html", "application/json; charset=latin-1", "APPLICATION/JSON"]),
    # h11 (the client) refuses header values with whitespace at either end.
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip),
)  # fmt: skip


# --- properties -------------------------------------------------------------------------------


@FUZZ
@given(body=hostile_texts)
def test_hostile_json_bodies(user: httpx.Client, body: str) -> None:
    headers = {"content-type": "application/json"}
    r = user.post("/" + CREATE, content=body.encode("utf-8", "surrogatepass"), headers=headers)
    check_4xx(r)
    if len(body) < 4000:  # the same text as a query's input
        check_4xx(user.get("/" + STATUS, params={"input": body}))
    still_answers(user)


@FUZZ
@given(payload=superjson_payloads)
def test_hostile_superjson_meta(user: httpx.Client, payload: dict[str, Any]) -> None:
    check_4xx(user.get("/" + STATUS, params={"input": json.dumps(payload)}))
    headers = {"content-type": "application/json"}
    check_4xx(user.post("/" + CREATE, content=json.dumps(payload), headers=headers))
    still_answers(user)


@FUZZ
@given(
    paths=st.lists(procedure_names, min_size=1, max_size=70),
    batch=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
    value=json_values,
)
def test_hostile_paths_and_batches(
    anon: httpx.Client, paths: list[str], batch: bool, method: str, value: Any
) -> None:
    if not batch:
        paths = paths[:1]
    url = "/" + quote(",".join(paths), safe=",")
    params = {"batch": "1"} if batch else {}
    data = json.dumps({str(i): value for i in range(len(paths))} if batch else value)
    if method == "GET":
        r = anon.get(url, params={**params, "input": data[:2000]})
    else:
        r = anon.post(
            url, params=params, content=data, headers={"content-type": "application/json"}
        )
    errors = check_4xx(r)
    if batch and len(paths) > 50:
        assert [e["message"] for e in errors] == ["Batch call exceeds maximum size"]
    still_answers(anon)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    path=procedure_names,
    content_type=content_types,
    body=st.binary(max_size=300),
    batch=st.booleans(),
)
def test_wrong_methods_and_content_types(
    anon: httpx.Client, method: str, path: str, content_type: str | None, body: bytes,
    batch: bool,
) -> None:  # fmt: skip
    headers = {} if content_type is None else {"content-type": content_type}
    url = "/" + quote(path, safe="") + ("?batch=1" if batch else "")
    check_4xx(anon.request(method, url, content=body, headers=headers))
    still_answers(anon)


@settings(max_examples=80, deadline=None, database=None)
@given(field=st.sampled_from(["analysisPurpose", "imageContext", "additionalInstructions"]),
       value=st.text(min_size=1, max_size=200))  # fmt: skip
def test_any_unicode_is_stored_as_sent_and_nul_is_refused(
    server: Server, user: httpx.Client, field: str, value: str
) -> None:
    payload = {"imageUrl": PNG_URL, "analysisPurpose": "fuzz", "outputFormat": "bullet_points",
               field: value}  # fmt: skip
    r = user.post("/" + CREATE, json=payload)
    if "\x00" in value:
        (error,) = check_4xx(r)
        issues = json.loads(error["message"])
        assert issues[0]["path"] == [field] and "NUL" in issues[0]["message"]
        return
    assert r.status_code == 200, r.text
    job_id = r.json()["result"]["data"]["jobId"]
    column = {"analysisPurpose": '"analysisPurpose"', "imageContext": '"imageContext"',
              "additionalInstructions": '"additionalInstructions"'}[field]  # fmt: skip
    assert server.sql(f'SELECT {column} FROM "visionJobs" WHERE id = ?', job_id) == [(value,)]


# --- targeted cases ---------------------------------------------------------------------------


def test_nul_is_refused_in_every_input_form(server: Server, user: httpx.Client) -> None:
    before = server.sql('SELECT COUNT(*) FROM "visionJobs"')
    payload = {"imageUrl": PNG_URL, "analysisPurpose": "a\x00b", "outputFormat": "bullet_points"}
    for r in [
        user.post("/" + CREATE, json=payload),
        user.post("/" + CREATE, json={"json": payload}),  # superjson
        user.post(f"/{CREATE}?batch=1", json={"0": payload}),
        user.get("/" + STATUS, params={"jobId": "1\x00"}),  # the query-parameter form
        user.get("/" + STATUS, params={"input": json.dumps({"jobId": 1, "x\x00": 1})}),
    ]:
        (error,) = check_4xx(r)
        assert "NUL" in error["message"]
    assert server.sql('SELECT COUNT(*) FROM "visionJobs"') == before


def test_lone_surrogates_are_refused(user: httpx.Client) -> None:
    fields = f'"imageUrl": "{PNG_URL}", "outputFormat": "bullet_points"'
    body = "{" + fields + ', "analysisPurpose": "a\\ud800b"}'
    headers = {"content-type": "application/json"}
    check_4xx(user.post("/" + CREATE, content=body, headers=headers))


def test_the_url_length_cap(server: Server, user: httpx.Client) -> None:
    (error,) = check_4xx(
        user.get("/" + STATUS, params={"input": '{"jobId":1}', "pad": "x" * 20_000})
    )
    assert error["message"].startswith("Request URL is too long")
    # Past 64 KiB, uvicorn's parser refuses the request line itself: a plain 400, no envelope.
    status, _ = raw_request(server, b"GET /api/trpc/auth.me?x=" + b"a" * 70_000 + b" HTTP/1.1\r\n"
                            b"Host: x\r\n\r\n")  # fmt: skip
    assert status == 400
    still_answers(user)


def test_the_batch_size_cap(anon: httpx.Client) -> None:
    fifty = ",".join([STATUS] * 50)
    assert check_4xx(anon.get(f"/{fifty}?batch=1&input={{}}"))[0]["data"]["code"] == "UNAUTHORIZED"
    (error,) = check_4xx(anon.get(f"/{fifty},{STATUS}?batch=1&input={{}}"))
    assert error == {"message": "Batch call exceeds maximum size", "code": -32600,
                     "data": {"code": "BAD_REQUEST", "httpStatus": 400}}  # fmt: skip


def test_a_jsonl_stream_with_hostile_input_is_well_formed(user: httpx.Client) -> None:
    headers = {"content-type": "application/json", "trpc-accept": "application/jsonl"}
    r = user.post(f"/{CREATE},{STATUS}?batch=1", content=b"[" * 5000, headers=headers)
    # A request-level or per-call refusal: either a 4xx envelope, or a 200 stream whose
    # per-call errors are 4xx.
    if r.headers.get("content-type", "").startswith("application/json"):
        check_4xx(r)
    else:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        assert lines and "500" not in json.dumps(lines[1:])
    still_answers(user)


def rss_kib(server: Server) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_floods_are_refused_quickly_and_memory_stays_bounded(
    server: Server, user: httpx.Client
) -> None:
    flood = ("[" + ",".join(["{}"] * 1_500_000) + "]").encode()  # ~4.5 MiB, ~100 MiB parsed
    deep = b"[" * 4_000_000
    headers = {"content-type": "application/json"}
    before = rss_kib(server)
    for _ in range(6):
        started = time.monotonic()
        (error,) = check_4xx(user.post("/" + CREATE, content=flood, headers=headers))
        assert error["data"]["code"] == "PAYLOAD_TOO_LARGE"
        check_4xx(user.post("/" + CREATE, content=deep, headers=headers))
        assert time.monotonic() - started < 5
    growth_mib = (rss_kib(server) - before) / 1024
    assert growth_mib < 150, f"the server grew by {growth_mib:.0f} MiB"
    still_answers(user)


def test_header_floods_are_answered(server: Server, anon: httpx.Client) -> None:
    many = {f"x-flood-{i}": "v" * 500 for i in range(300)}
    r = anon.get("/system.health", params={"input": '{"timestamp":1}'}, headers=many)
    assert r.status_code == 200
    # issue 13: a Cookie header over 8 KiB is refused before anything parses it
    r = anon.get("/auth.me", headers={"cookie": "app_session_id=" + "a" * 200_000})
    assert r.status_code == 431 and r.text.startswith("Request Header Fields Too Large")
    r = anon.get("/auth.me", headers={"cookie": "app_session_id=" + "a" * 8000})
    assert r.status_code == 200 and r.json() == {"result": {"data": None}}
    r = anon.get("/auth.me", headers={"authorization": "Bearer " + "b" * 200_000})
    assert r.status_code == 200
    still_answers(anon)


def test_the_server_logged_no_tracebacks(server: Server, user: httpx.Client) -> None:
    still_answers(user)
    assert server.process.poll() is None
    assert "Traceback" not in server.log()


def raw_request(server: Server, data: bytes) -> tuple[int, bytes]:
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        head = sock.recv(65536)
    return int(head.split(b" ", 2)[1]), head
