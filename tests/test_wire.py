"""The tRPC v11 wire, as the contract promises it (SEED_API §1–§2, TRPC_WIRE §2–§5, §10–§11).

Every test talks HTTP to a real ``vision-pipeline serve`` process. The module-scoped ``server``
(conftest) runs with the worker; ``limited`` is a second server with small body and image
limits and no worker (so job statuses stay put while a test compares listings).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests.support import Server, data_url, start_server, wait_for_status

# TRPC_WIRE §4.3: data.code → (JSON-RPC code, HTTP status).
CODES: Final[dict[str, tuple[int, int]]] = {
    "PARSE_ERROR": (-32700, 400),
    "BAD_REQUEST": (-32600, 400),
    "UNAUTHORIZED": (-32001, 401),
    "PAYMENT_REQUIRED": (-32002, 402),
    "FORBIDDEN": (-32003, 403),
    "NOT_FOUND": (-32004, 404),
    "METHOD_NOT_SUPPORTED": (-32005, 405),
    "TIMEOUT": (-32008, 408),
    "CONFLICT": (-32009, 409),
    "PRECONDITION_FAILED": (-32012, 412),
    "PAYLOAD_TOO_LARGE": (-32013, 413),
    "UNSUPPORTED_MEDIA_TYPE": (-32015, 415),
    "UNPROCESSABLE_CONTENT": (-32022, 422),
    "PRECONDITION_REQUIRED": (-32028, 428),
    "TOO_MANY_REQUESTS": (-32029, 429),
    "CLIENT_CLOSED_REQUEST": (-32099, 499),
    "INTERNAL_SERVER_ERROR": (-32603, 500),
    "NOT_IMPLEMENTED": (-32603, 501),
    "BAD_GATEWAY": (-32603, 502),
    "SERVICE_UNAVAILABLE": (-32603, 503),
    "GATEWAY_TIMEOUT": (-32603, 504),
}

ISO_DATE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CREATED: Final = "Job created and queued for processing"
NO_INPUT: Final = {"json": None, "meta": {"values": ["undefined"]}}  # superjson 1.x
NO_INPUT_V1: Final = {"json": None, "meta": {"values": ["undefined"], "v": 1}}  # superjson 2.x
CREATE: Final = "visionPipeline.createJob"
STATUS: Final = "visionPipeline.getJobStatus"
HISTORY: Final = "visionPipeline.getJobHistory"
STATUS_KEYS: Final = {
    "jobId",
    "status",
    "progress",
    "geminOutput",
    "deepseekOutput",
    "errorMessage",
    "createdAt",
    "completedAt",
}
HISTORY_KEYS: Final = {
    "jobId",
    "status",
    "progress",
    "imageUrl",
    "analysisPurpose",
    "createdAt",
    "completedAt",
}
LIMIT_BODY: Final = 65536
LIMIT_IMAGE: Final = 32768
ANY: Final = object()  # "data.path: any value"
ABSENT: Final = object()  # "data.path must not be there"
_MISSING: Final = object()


# --- helpers ------------------------------------------------------------------------------


def enc(value: Any) -> str:
    """``encodeURIComponent(JSON.stringify(value))``, as the tRPC client builds ``input=``."""
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


def sj(value: Any, values: Any = None, *, v: bool = True) -> dict[str, Any]:
    """A superjson payload as the client sends it (``v`` only from superjson 2.2.3 on)."""
    if values is None:
        return {"json": value}
    return {"json": value, "meta": {"values": values, **({"v": 1} if v else {})}}


def check_error(error: Any, key: str, message: Any = ANY, path: Any = ANY) -> dict[str, Any]:
    """An error shape (TRPC_WIRE §4.2) whose JSON-RPC code and httpStatus match §4.3."""
    assert isinstance(error, dict), error
    assert list(error) == ["message", "code", "data"], error
    data = error["data"]
    assert list(data)[:2] == ["code", "httpStatus"], error
    assert data["code"] == key, error
    assert (error["code"], data["httpStatus"]) == CODES[key], error
    assert isinstance(error["message"], str)
    if message is not ANY:
        assert error["message"] == message
    if path is ABSENT:
        assert "path" not in data, error
    elif path is not ANY:
        assert data.get("path") == path, error
    return error


def consistent(error: dict[str, Any]) -> None:
    """Whatever the error, its ``code`` and ``data.httpStatus`` agree with the code table."""
    check_error(error, error["data"]["code"])


def single_error(
    r: httpx.Response, key: str, message: Any = ANY, path: Any = ANY, *, superjson: bool = False
) -> dict[str, Any]:
    """A non-batch (or request-level) error: one object, status from the code table."""
    assert r.status_code == CODES[key][1], r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    error = body["error"]
    if superjson:
        assert list(error) == ["json"], error  # the shape has no Dates: no meta
        error = error["json"]
    return check_error(error, key, message, path)


def issues(error: dict[str, Any]) -> list[dict[str, Any]]:
    """A validation error's message: a JSON array of issues, each with a path and a message."""
    parsed = json.loads(error["message"])
    assert isinstance(parsed, list) and parsed, error["message"]
    for issue in parsed:
        assert isinstance(issue["path"], list), issue
        assert isinstance(issue["message"], str) and issue["message"], issue
    return parsed


def job(images: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "imageUrl": f"{images}/red.png",
        "imageContext": "a red square",
        "analysisPurpose": "Brand analysis for wellness product",
        "outputFormat": "bullet_points",
        "creativityLevel": 1,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _MISSING}


def create(client: httpx.Client, images: str, **changes: Any) -> int:
    r = post(client, CREATE, job(images, **changes))
    assert r.status_code == 200, r.text
    job_id: int = r.json()["result"]["data"]["jobId"]
    return job_id


def history_ids(client: httpx.Client) -> list[int]:
    r = get(client, HISTORY, {"limit": 100})
    assert r.status_code == 200, r.text
    return [item["jobId"] for item in r.json()["result"]["data"]]


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 * side**2 bytes."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(3 * side * side)).save(buffer, "PNG")
    return buffer.getvalue()


def raw_http(
    server: Server, request: bytes, timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes on a fresh connection and read one response (status, headers, body)."""
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no complete response within {timeout} s: {data!r}") from None
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:])
                }
                if len(body) >= int(headers.get("content-length", "0")):
                    return int(lines[0].split()[1]), headers, body
    raise AssertionError(f"connection closed before a complete response: {data!r}")


# --- fixtures -----------------------------------------------------------------------------


def _open_id() -> str:
    return f"wire-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def user(server: Server) -> Iterator[httpx.Client]:
    """A fresh signed-in user (Bearer token) on the shared server."""
    with server.client(_open_id()) as client:
        yield client


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """MAX_BODY_BYTES=64 KiB, IMAGE_MAX_BYTES=32 KiB, and no worker."""
    tmp = tmp_path_factory.mktemp("limited")
    srv = start_server(
        tmp / "jobs.db",
        tmp / "server.log",
        "--no-worker",
        MAX_BODY_BYTES=str(LIMIT_BODY),
        IMAGE_MAX_BYTES=str(LIMIT_IMAGE),
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def busy(limited: Server, images: str) -> Iterator[tuple[httpx.Client, list[int]]]:
    """A user of ``limited`` with 23 pending jobs, created by one batched POST."""
    with limited.client(_open_id()) as client:
        n = 23
        inputs = {str(i): job(images, analysisPurpose=f"purpose {i}") for i in range(n)}
        r = post(client, ",".join([CREATE] * n), inputs, batch=True)
        assert r.status_code == 200, r.text
        ids = [item["result"]["data"]["jobId"] for item in r.json()]
        assert len(set(ids)) == n
        yield client, ids


# --- envelopes ----------------------------------------------------------------------------


def test_a_query_answers_the_result_data_envelope(user: httpx.Client) -> None:
    r = get(user, "system.health", {"timestamp": 1})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"result": {"data": {"ok": True}}}


def test_a_mutation_answers_the_result_data_envelope(user: httpx.Client, images: str) -> None:
    r = post(user, CREATE, job(images))
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["result"] and list(body["result"]) == ["data"]
    data = body["result"]["data"]
    assert isinstance(data["jobId"], int) and data["jobId"] > 0
    assert data == {"jobId": data["jobId"], "status": "pending", "message": CREATED}


def test_plain_input_gets_plain_json_with_iso_date_strings(user: httpx.Client, images: str) -> None:
    job_id = create(user, images)
    done = wait_for_status(user, job_id)
    r = get(user, STATUS, {"jobId": job_id})
    assert r.status_code == 200
    data = r.json()["result"]["data"]
    assert "json" not in data and STATUS_KEYS <= set(data)
    assert data["jobId"] == job_id and data["status"] == done["status"] == "complete"
    assert data["progress"] == 100
    for field in ("createdAt", "completedAt"):
        assert isinstance(data[field], str) and ISO_DATE.match(data[field]), data[field]
    created = datetime.fromisoformat(data["createdAt"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - created).total_seconds()) < 300  # UTC, not local time
    assert data["completedAt"] >= data["createdAt"]
    # outputs are parsed JSON, not strings
    assert isinstance(data["geminOutput"], dict) and isinstance(data["deepseekOutput"], list)

    history = get(user, HISTORY).json()["result"]["data"]
    assert [item["jobId"] for item in history] == [job_id]
    assert set(history[0]) == HISTORY_KEYS
    assert history[0]["createdAt"] == data["createdAt"]
    assert history[0]["completedAt"] == data["completedAt"]


def test_superjson_input_gets_superjson_output_with_date_annotations(
    user: httpx.Client, images: str
) -> None:
    job_id = create(user, images)
    plain = wait_for_status(user, job_id)
    r = get(user, STATUS, sj({"jobId": job_id}))
    assert r.status_code == 200
    data = r.json()["result"]["data"]
    assert list(data) == ["json", "meta"]
    assert data["meta"] == {"values": {"createdAt": ["Date"], "completedAt": ["Date"]}, "v": 1}
    assert data["json"]["jobId"] == job_id
    assert data["json"]["createdAt"] == plain["createdAt"]
    assert data["json"]["completedAt"] == plain["completedAt"]
    assert ISO_DATE.match(data["json"]["createdAt"])

    history = get(user, HISTORY, sj({"limit": 5})).json()["result"]["data"]
    assert history["meta"] == {
        "values": {"0.createdAt": ["Date"], "0.completedAt": ["Date"]},
        "v": 1,
    }
    assert [item["jobId"] for item in history["json"]] == [job_id]


def test_a_pending_jobs_null_completed_at_carries_no_annotation(
    limited: Server, images: str
) -> None:
    with limited.client(_open_id()) as client:
        job_id = create(client, images)
        data = get(client, STATUS, sj({"jobId": job_id})).json()["result"]["data"]
    assert data["meta"] == {"values": {"createdAt": ["Date"]}, "v": 1}
    assert data["json"]["completedAt"] is None and data["json"]["status"] == "pending"
    assert data["json"]["progress"] == 0


def test_a_superjson_mutation_answers_superjson(user: httpx.Client, images: str) -> None:
    r = post(user, CREATE, sj(job(images)))
    assert r.status_code == 200, r.text
    data = r.json()["result"]["data"]
    assert list(data) == ["json"]
    assert data["json"] == {"jobId": data["json"]["jobId"], "status": "pending", "message": CREATED}


def test_superjson_errors_are_wrapped_in_json(user: httpx.Client) -> None:
    r = get(user, STATUS, sj({"jobId": 987654321}))
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "json": {
                "message": "Job not found",
                "code": -32004,
                "data": {"code": "NOT_FOUND", "httpStatus": 404, "path": STATUS},
            }
        }
    }


def test_plain_errors_are_not_wrapped(user: httpx.Client) -> None:
    r = get(user, STATUS, {"jobId": 987654321})
    assert r.json() == {
        "error": {
            "message": "Job not found",
            "code": -32004,
            "data": {"code": "NOT_FOUND", "httpStatus": 404, "path": STATUS},
        }
    }


@pytest.mark.parametrize("no_input", [NO_INPUT, NO_INPUT_V1], ids=["superjson1", "superjson2"])
def test_the_superjson_no_input_form_means_undefined_and_defaults_apply(
    busy: tuple[httpx.Client, list[int]], no_input: dict[str, Any]
) -> None:
    client, ids = busy
    r = get(client, HISTORY, no_input)
    assert r.status_code == 200, r.text
    data = r.json()["result"]["data"]
    assert data["meta"]["v"] == 1
    got = [item["jobId"] for item in data["json"]]
    explicit = get(client, HISTORY, {"limit": 20, "offset": 0}).json()["result"]["data"]
    assert len(got) == 20  # default limit
    assert got == [item["jobId"] for item in explicit]
    assert set(got) <= set(ids)
    assert data["meta"]["values"] == {f"{i}.createdAt": ["Date"] for i in range(20)}


def test_a_plain_query_without_input_uses_the_defaults(
    busy: tuple[httpx.Client, list[int]],
) -> None:
    client, _ = busy
    for url in (f"/{HISTORY}", f"/{HISTORY}?input="):  # an empty input= is no input
        r = client.get(url)
        assert r.status_code == 200
        data = r.json()["result"]["data"]
        assert isinstance(data, list) and len(data) == 20
    r = client.get(f"/{HISTORY},{HISTORY}?batch=1")  # a batch without any input
    assert r.status_code == 200
    assert [len(item["result"]["data"]) for item in r.json()] == [20, 20]


def test_history_is_oldest_first_and_honours_limit_and_offset(
    busy: tuple[httpx.Client, list[int]],
) -> None:
    client, ids = busy
    everything = get(client, HISTORY, {"limit": 100}).json()["result"]["data"]
    assert sorted(item["jobId"] for item in everything) == sorted(ids)
    keys = [(item["createdAt"], item["jobId"]) for item in everything]
    assert keys == sorted(keys)
    page = get(client, HISTORY, {"limit": 5, "offset": 3}).json()["result"]["data"]
    assert page == everything[3:8]
    assert get(client, HISTORY, {"offset": 23}).json() == {"result": {"data": []}}
    for item in everything:
        assert set(item) == HISTORY_KEYS and item["status"] == "pending"
        assert item["analysisPurpose"].startswith("purpose ")


def test_a_superjson_key_annotated_undefined_is_dropped_before_validation(
    user: httpx.Client, images: str
) -> None:
    payload = job(images, imageContext=None, creativityLevel=None)
    annotated = sj(payload, {"imageContext": ["undefined"], "creativityLevel": ["undefined"]})
    r = post(user, CREATE, annotated)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["data"]["json"]["status"] == "pending"
    # the same null without the annotation is a null, and creativityLevel is a number
    r = post(user, CREATE, sj(payload, {"imageContext": ["undefined"]}))
    error = single_error(r, "BAD_REQUEST", path=CREATE, superjson=True)
    assert [i["path"] for i in issues(error)] == [["creativityLevel"]]


def test_superjson_dates_and_undefined_in_a_batch_item_are_decoded(
    user: httpx.Client,
) -> None:
    # superjson 1.x escape-less meta on one item, 2.x on the other
    r = get(
        user,
        "system.health,system.health",
        {
            "0": sj({"timestamp": 5, "extra": None}, {"extra": ["undefined"]}, v=False),
            "1": sj({"timestamp": "5"}, {"timestamp": ["number"]}),
        },
        batch=True,
    )
    assert r.status_code == 200, r.text
    assert r.json() == [{"result": {"data": {"json": {"ok": True}}}}] * 2


# --- batching -----------------------------------------------------------------------------


def test_a_batch_joins_paths_with_commas_and_answers_an_array_in_order(
    server: Server, user: httpx.Client
) -> None:
    me = get(user, "auth.me").json()["result"]["data"]
    r = get(user, "system.health,auth.me", {"0": {"timestamp": 1}}, batch=True)
    assert r.status_code == 200
    assert r.json() == [{"result": {"data": {"ok": True}}}, {"result": {"data": me}}]


def test_a_percent_encoded_comma_separates_batch_paths(user: httpx.Client) -> None:
    r = user.get(
        "/system.health%2Csystem.health?batch=1&input="
        + enc({"0": {"timestamp": 1}, "1": {"timestamp": 2}})
    )
    assert r.status_code == 200
    assert r.json() == [{"result": {"data": {"ok": True}}}] * 2


def test_only_batch_equal_to_1_is_a_batch(user: httpx.Client) -> None:
    r = user.get("/system.health?batch=true&input=" + enc({"timestamp": 1}))
    assert r.json() == {"result": {"data": {"ok": True}}}


def test_a_v10_client_get_with_a_content_type_and_empty_batch_input_works(
    user: httpx.Client,
) -> None:
    r = user.get("/auth.me?batch=1&input=%7B%7D", headers={"content-type": "application/json"})
    assert r.status_code == 200
    [item] = r.json()
    assert item["result"]["data"]["openId"].startswith("wire-")


def test_a_json_content_type_with_a_charset_is_accepted(user: httpx.Client) -> None:
    r = user.post(
        "/auth.logout", content=b"", headers={"content-type": "application/json; charset=utf-8"}
    )
    assert r.json() == {"result": {"data": {"success": True}}}


def test_a_batch_of_one_answers_a_one_element_array(user: httpx.Client) -> None:
    r = get(user, "system.health", {"0": {"timestamp": 1}}, batch=True)
    assert r.status_code == 200
    assert r.json() == [{"result": {"data": {"ok": True}}}]
    r = get(user, "system.health", {"timestamp": 1}, batch=False)
    assert r.json() == {"result": {"data": {"ok": True}}}


def test_batch_keys_that_are_missing_are_undefined_inputs(
    busy: tuple[httpx.Client, list[int]],
) -> None:
    client, _ = busy
    r = get(client, f"{HISTORY},{HISTORY},auth.me", {"1": {"limit": 2}}, batch=True)
    assert r.status_code == 200, r.text
    first, second, me = r.json()
    assert len(first["result"]["data"]) == 20  # undefined → defaults
    assert second["result"]["data"] == first["result"]["data"][:2]
    assert me["result"]["data"]["openId"].startswith("wire-")


def test_a_batch_with_a_superjson_item_answers_every_item_in_superjson(
    user: httpx.Client,
) -> None:
    r = get(user, f"auth.me,{HISTORY},system.health", {"0": NO_INPUT}, batch=True)
    assert r.status_code == 207  # health has no input: 400
    me, history, health = r.json()
    assert list(me["result"]["data"]) == ["json", "meta"]
    assert history == {"result": {"data": {"json": []}}}
    assert list(health["error"]) == ["json"]
    check_error(health["error"]["json"], "BAD_REQUEST", path="system.health")


def test_a_batch_where_all_succeed_is_200(user: httpx.Client) -> None:
    r = get(user, "system.health,auth.me", {"0": {"timestamp": 0}}, batch=True)
    assert r.status_code == 200 and all("result" in item for item in r.json())


def test_a_batch_mixing_success_and_error_is_207(user: httpx.Client) -> None:
    r = get(user, "system.health,nope", {"0": {"timestamp": 1}}, batch=True)
    assert r.status_code == 207
    ok, missing = r.json()
    assert ok == {"result": {"data": {"ok": True}}}
    assert missing == {
        "error": {
            "message": 'No procedure found on path "nope"',
            "code": -32004,
            "data": {"code": "NOT_FOUND", "httpStatus": 404, "path": "nope"},
        }
    }


def test_a_batch_where_every_call_fails_the_same_way_has_that_status(
    user: httpx.Client, server: Server
) -> None:
    r = get(
        user,
        f"{STATUS},{STATUS}",
        {"0": {"jobId": 987654321}, "1": {"jobId": 987654322}},
        batch=True,
    )
    assert r.status_code == 404
    for item in r.json():
        check_error(item["error"], "NOT_FOUND", "Job not found", STATUS)
    with httpx.Client(base_url=server.trpc) as anonymous:
        r = get(anonymous, f"{HISTORY},{HISTORY}", {}, batch=True)
    assert r.status_code == 401
    # two different errors: 207
    r = get(user, f"nope,{STATUS}", {"1": {"jobId": "x"}}, batch=True)
    assert r.status_code == 207
    check_error(r.json()[0]["error"], "NOT_FOUND", path="nope")
    check_error(r.json()[1]["error"], "BAD_REQUEST", path=STATUS)


def test_repeated_identical_paths_are_independent_calls(user: httpx.Client, images: str) -> None:
    first, second = create(user, images), create(user, images)
    r = get(
        user,
        f"{STATUS},{STATUS},{STATUS}",
        {"0": {"jobId": second}, "1": {"jobId": first}, "2": {"jobId": 987654321}},
        batch=True,
    )
    assert r.status_code == 207
    a, b, c = r.json()
    assert a["result"]["data"]["jobId"] == second
    assert b["result"]["data"]["jobId"] == first
    check_error(c["error"], "NOT_FOUND", "Job not found", STATUS)


def test_batched_mutations_are_posted_with_an_indexed_body(user: httpx.Client, images: str) -> None:
    r = post(
        user,
        f"{CREATE},{CREATE},auth.logout",
        {"0": job(images), "1": job(images, outputFormat="social_media_post")},
        batch=True,
    )
    assert r.status_code == 200, r.text
    one, two, logout = r.json()
    assert one["result"]["data"]["jobId"] != two["result"]["data"]["jobId"]
    assert two["result"]["data"]["message"] == CREATED
    assert logout == {"result": {"data": {"success": True}}}


# --- request-level and per-call failures --------------------------------------------------


def test_mixing_a_query_and_a_mutation_is_a_request_level_400(user: httpx.Client) -> None:
    expected = {
        "error": {
            "message": "Cannot mix procedure types in call: mutation, query",
            "code": -32600,
            "data": {"code": "BAD_REQUEST", "httpStatus": 400},
        }
    }
    r = post(user, f"{CREATE},auth.me", {}, batch=True)
    assert r.status_code == 400 and r.json() == expected
    r = get(user, f"{CREATE},auth.me", {}, batch=True)
    assert r.status_code == 400 and r.json() == expected
    r = get(user, f"{CREATE},auth.me", {"1": NO_INPUT}, batch=True)
    assert r.status_code == 400 and r.json() == {"error": {"json": expected["error"]}}


def test_the_mix_message_lists_the_types_in_call_order(user: httpx.Client) -> None:
    r = get(user, f"auth.me,{CREATE}", {}, batch=True)
    single_error(r, "BAD_REQUEST", "Cannot mix procedure types in call: query, mutation", ABSENT)


def test_a_request_level_error_to_a_superjson_post_is_wrapped(
    user: httpx.Client, images: str
) -> None:
    r = post(user, f"{CREATE},auth.me", {"0": sj(job(images)), "1": NO_INPUT_V1}, batch=True)
    single_error(
        r,
        "BAD_REQUEST",
        "Cannot mix procedure types in call: mutation, query",
        ABSENT,
        superjson=True,
    )


@pytest.mark.parametrize("raw", ["[1]", '"x"', "null", "3"])
def test_a_batch_input_that_is_not_an_object_is_a_per_call_400(
    user: httpx.Client, raw: str
) -> None:
    r = user.get("/system.health,auth.me?batch=1&input=" + quote(raw, safe=""))
    assert r.status_code == 400
    body = r.json()
    assert isinstance(body, list) and len(body) == 2
    for item, path in zip(body, ["system.health", "auth.me"], strict=True):
        check_error(
            item["error"],
            "BAD_REQUEST",
            '"input" needs to be an object when doing a batch call',
            path,
        )
    r = post(user, f"{CREATE},{CREATE}", [1], batch=True)
    assert r.status_code == 400 and len(r.json()) == 2


def test_an_unknown_procedure_is_a_404_object(user: httpx.Client) -> None:
    r = get(user, "x")
    single_error(r, "NOT_FOUND", 'No procedure found on path "x"', "x")
    r = post(user, "visionPipeline.deleteJob", {"jobId": 1})
    single_error(
        r,
        "NOT_FOUND",
        'No procedure found on path "visionPipeline.deleteJob"',
        "visionPipeline.deleteJob",
    )


def test_an_unknown_procedure_in_a_batch_is_a_per_item_404(user: httpx.Client) -> None:
    r = get(user, "x,y", {}, batch=True)
    assert r.status_code == 404
    body = r.json()
    assert isinstance(body, list) and len(body) == 2
    check_error(body[0]["error"], "NOT_FOUND", 'No procedure found on path "x"', "x")
    check_error(body[1]["error"], "NOT_FOUND", 'No procedure found on path "y"', "y")


def test_get_to_a_mutation_is_405_with_allow_post(user: httpx.Client, images: str) -> None:
    r = get(user, CREATE, job(images))
    assert r.json() == {
        "error": {
            "message": "Unsupported GET-request to mutation procedure at path "
            '"visionPipeline.createJob"',
            "code": -32005,
            "data": {"code": "METHOD_NOT_SUPPORTED", "httpStatus": 405, "path": CREATE},
        }
    }
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = get(user, "auth.logout")
    single_error(r, "METHOD_NOT_SUPPORTED", path="auth.logout")
    assert r.headers["allow"] == "POST"


def test_post_to_a_query_is_405_with_allow_get(user: httpx.Client) -> None:
    r = post(user, STATUS, {"jobId": 1})
    single_error(
        r,
        "METHOD_NOT_SUPPORTED",
        f'Unsupported POST-request to query procedure at path "{STATUS}"',
        STATUS,
    )
    assert r.headers["allow"] == "GET"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_with_a_content_type_are_405(user: httpx.Client, method: str) -> None:
    r = user.request(
        method, "/" + STATUS, content=b'{"jobId":1}', headers={"content-type": "application/json"}
    )
    single_error(
        r,
        "METHOD_NOT_SUPPORTED",
        f'Unsupported {method}-request to query procedure at path "{STATUS}"',
        STATUS,
    )
    r = user.request(
        method, "/" + CREATE, content=b"{}", headers={"content-type": "application/json"}
    )
    single_error(
        r,
        "METHOD_NOT_SUPPORTED",
        f'Unsupported {method}-request to mutation procedure at path "{CREATE}"',
        CREATE,
    )


@pytest.mark.parametrize("method", ["DELETE", "OPTIONS", "PUT"])
def test_non_get_methods_without_a_content_type_are_415(user: httpx.Client, method: str) -> None:
    r = user.request(method, "/" + STATUS)
    assert "content-type" not in r.request.headers
    assert r.json() == {
        "error": {
            "message": "Missing content-type header",
            "code": -32015,
            "data": {"code": "UNSUPPORTED_MEDIA_TYPE", "httpStatus": 415},
        }
    }
    assert r.status_code == 415


def test_a_multipart_post_is_415(user: httpx.Client, images: str) -> None:
    before = history_ids(user)
    r = user.post(
        "/" + CREATE, files={"file": ("a.png", b"x", "image/png")}, data={"analysisPurpose": "p"}
    )
    assert r.request.headers["content-type"].startswith("multipart/form-data")
    error = single_error(r, "UNSUPPORTED_MEDIA_TYPE")
    assert error["message"].startswith('Unsupported content-type "multipart/form-data')
    assert history_ids(user) == before


def test_head_is_204_with_an_empty_body(user: httpx.Client) -> None:
    for path in (STATUS, CREATE, "nope"):
        r = user.head("/" + path)
        assert r.status_code == 204 and r.content == b""


def test_invalid_json_in_input_is_400_with_a_path_and_the_server_keeps_answering(
    user: httpx.Client,
) -> None:
    r = user.get(f"/{STATUS}?input=notjson")
    error = single_error(r, "BAD_REQUEST", path=STATUS)
    assert error["message"]
    r = user.get(f"/{STATUS},auth.me?batch=1&input=" + quote('{"0":', safe=""))
    assert r.status_code == 400
    for item, path in zip(r.json(), [STATUS, "auth.me"], strict=True):
        check_error(item["error"], "BAD_REQUEST", path=path)
    assert get(user, "system.health", {"timestamp": 1}).json() == {"result": {"data": {"ok": True}}}


def test_invalid_json_in_a_post_body_is_400_with_a_path(user: httpx.Client) -> None:
    before = history_ids(user)
    r = user.post(
        "/" + CREATE,
        content=b'{"imageUrl": "http://a/b.png",',
        headers={"content-type": "application/json"},
    )
    single_error(r, "BAD_REQUEST", path=CREATE)
    r = user.post(
        "/" + CREATE, content=b"\xff\xfe not utf-8", headers={"content-type": "application/json"}
    )
    single_error(r, "BAD_REQUEST")
    assert history_ids(user) == before
    assert get(user, "system.health", {"timestamp": 1}).status_code == 200


def test_an_empty_post_body_to_a_no_input_mutation_is_undefined(user: httpx.Client) -> None:
    r = user.post("/auth.logout", headers={"content-type": "application/json"})
    assert r.request.content == b""
    assert r.status_code == 200
    assert r.json() == {"result": {"data": {"success": True}}}
    # superjson clients send the no-input form as the body instead
    r = post(user, "auth.logout", NO_INPUT_V1)
    assert r.json() == {"result": {"data": {"json": {"success": True}}}}


def test_an_empty_post_body_to_a_mutation_needing_input_is_400(user: httpx.Client) -> None:
    r = user.post("/" + CREATE, headers={"content-type": "application/json"})
    error = single_error(r, "BAD_REQUEST", path=CREATE)
    assert [i["path"] for i in issues(error)] == [[]]


# --- validation ---------------------------------------------------------------------------

BAD_JOBS: Final[list[tuple[str, dict[str, Any], list[str]]]] = [
    ("bad-outputFormat", {"outputFormat": "poem"}, ["outputFormat"]),
    ("creativity-5", {"creativityLevel": 5}, ["creativityLevel"]),
    ("creativity-negative", {"creativityLevel": -1}, ["creativityLevel"]),
    ("creativity-string", {"creativityLevel": "1"}, ["creativityLevel"]),
    ("creativity-bool", {"creativityLevel": True}, ["creativityLevel"]),
    ("not-a-url", {"imageUrl": "not a url"}, ["imageUrl"]),
    ("ftp-url", {"imageUrl": "ftp://example.com/a.png"}, ["imageUrl"]),
    ("data-not-image", {"imageUrl": "data:text/plain;base64,aGVsbG8="}, ["imageUrl"]),
    ("missing-purpose", {"analysisPurpose": _MISSING}, ["analysisPurpose"]),
    ("purpose-number", {"analysisPurpose": 42}, ["analysisPurpose"]),
    ("missing-format", {"outputFormat": _MISSING}, ["outputFormat"]),
    ("missing-url", {"imageUrl": _MISSING}, ["imageUrl"]),
    ("context-number", {"imageContext": 7}, ["imageContext"]),
]


@pytest.mark.parametrize("superjson", [False, True], ids=["plain", "superjson"])
@pytest.mark.parametrize(
    ("changes", "paths"), [(c, p) for _, c, p in BAD_JOBS], ids=[name for name, _, _ in BAD_JOBS]
)
def test_create_job_rejects_invalid_input_with_a_list_of_issues(
    user: httpx.Client, images: str, changes: dict[str, Any], paths: list[str], superjson: bool
) -> None:
    payload = job(images, **changes)
    r = post(user, CREATE, sj(payload) if superjson else payload)
    error = single_error(r, "BAD_REQUEST", path=CREATE, superjson=superjson)
    assert paths in [issue["path"] for issue in issues(error)]
    assert error["message"].startswith("[\n  {")  # pretty-printed like zod's


GOOD_JOBS: Final[list[tuple[str, dict[str, Any]]]] = [
    ("creativity-0", {"creativityLevel": 0}),
    ("creativity-2", {"creativityLevel": 2}),
    ("creativity-fraction", {"creativityLevel": 1.5}),
    ("creativity-default", {"creativityLevel": _MISSING}),
    ("detailed-analysis", {"outputFormat": "detailed_analysis"}),
    ("social-media-post", {"outputFormat": "social_media_post"}),
    ("https-url", {"imageUrl": "https://example.com/images/brand.jpg?size=large"}),
    ("data-url", {"imageUrl": data_url((200, 10, 10))}),
    ("no-context", {"imageContext": _MISSING}),
    ("instructions", {"additionalInstructions": "Keep it short."}),
    ("unknown-extra-key", {"somethingElse": True}),
]


@pytest.mark.parametrize("changes", [c for _, c in GOOD_JOBS], ids=[n for n, _ in GOOD_JOBS])
def test_create_job_accepts_every_valid_input(
    limited: Server, images: str, changes: dict[str, Any]
) -> None:
    with limited.client(_open_id()) as client:
        r = post(client, CREATE, job(images, **changes))
        assert r.status_code == 200, r.text
        data = r.json()["result"]["data"]
        assert data == {"jobId": data["jobId"], "status": "pending", "message": CREATED}
        assert history_ids(client) == [data["jobId"]]


def test_create_job_reports_every_invalid_field(user: httpx.Client, images: str) -> None:
    r = post(
        user, CREATE, job(images, imageUrl="ftp://x/y.png", outputFormat="x", creativityLevel="1")
    )
    error = single_error(r, "BAD_REQUEST", path=CREATE)
    assert sorted(i["path"] for i in issues(error)) == [
        ["creativityLevel"],
        ["imageUrl"],
        ["outputFormat"],
    ]


@pytest.mark.parametrize("value", [[], "job", 3, None])
def test_create_job_input_must_be_an_object(user: httpx.Client, value: Any) -> None:
    r = post(user, CREATE, value)
    error = single_error(r, "BAD_REQUEST", path=CREATE)
    assert [i["path"] for i in issues(error)] == [[]]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"jobId": "abc"}, ["jobId"]),
        ({"jobId": "1"}, ["jobId"]),
        ({"jobId": 1.5}, ["jobId"]),
        ({}, ["jobId"]),
        ({"jobId": None}, ["jobId"]),
    ],
    ids=["abc", "numeric-string", "fraction", "missing", "null"],
)
def test_get_job_status_rejects_a_non_integer_job_id(
    user: httpx.Client, value: dict[str, Any], path: list[str]
) -> None:
    error = single_error(get(user, STATUS, value), "BAD_REQUEST", path=STATUS)
    assert [i["path"] for i in issues(error)] == [path]
    error = single_error(user.get("/" + STATUS), "BAD_REQUEST", path=STATUS)
    assert [i["path"] for i in issues(error)] == [[]]


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"limit": 0}, ["limit"]),
        ({"limit": 101}, ["limit"]),
        ({"offset": -1}, ["offset"]),
        ({"limit": "5"}, ["limit"]),
        ({"limit": 2.5}, ["limit"]),
    ],
    ids=["limit-0", "limit-101", "offset-negative", "limit-string", "limit-fraction"],
)
def test_get_job_history_rejects_out_of_range_paging(
    user: httpx.Client, value: dict[str, Any], path: list[str]
) -> None:
    error = single_error(get(user, HISTORY, value), "BAD_REQUEST", path=HISTORY)
    assert [i["path"] for i in issues(error)] == [path]
    r = get(user, HISTORY, {"limit": 1, "offset": 0})
    assert r.status_code == 200  # the bounds themselves are accepted
    assert get(user, HISTORY, {"limit": 100}).status_code == 200


@pytest.mark.parametrize("form", ["plain", "bigint", "query-parameter", "offset"])
def test_a_huge_integer_is_a_client_error_never_a_500(user: httpx.Client, form: str) -> None:
    huge = 2**63
    if form == "plain":
        r = get(user, STATUS, {"jobId": huge})
    elif form == "bigint":
        r = get(user, STATUS, sj({"jobId": str(huge)}, {"jobId": ["bigint"]}))
    elif form == "query-parameter":
        r = user.get(f"/{STATUS}?jobId={huge}")
    else:
        r = get(user, HISTORY, {"offset": huge})
    assert r.status_code in (200, 400, 404), r.text


def test_system_health_needs_a_non_negative_timestamp(user: httpx.Client) -> None:
    assert get(user, "system.health", {"timestamp": 1}).json() == {"result": {"data": {"ok": True}}}
    r = get(user, "system.health", sj({"timestamp": 0}))
    assert r.json() == {"result": {"data": {"json": {"ok": True}}}}
    error = single_error(
        get(user, "system.health", {"timestamp": -1}), "BAD_REQUEST", path="system.health"
    )
    assert [i["path"] for i in issues(error)] == [["timestamp"]]
    error = single_error(user.get("/system.health"), "BAD_REQUEST", path="system.health")
    assert [i["path"] for i in issues(error)] == [[]]
    nan = sj({"timestamp": "NaN"}, {"timestamp": ["number"]})
    single_error(get(user, "system.health", nan), "BAD_REQUEST", superjson=True)


# --- the lenient forms of the docs' curl commands -----------------------------------------


def test_get_job_status_accepts_the_job_id_as_a_query_parameter(
    user: httpx.Client, images: str
) -> None:
    job_id = create(user, images)
    r = user.get(f"/{STATUS}?jobId={job_id}")
    assert r.status_code == 200, r.text
    data = r.json()["result"]["data"]
    assert data["jobId"] == job_id and STATUS_KEYS <= set(data)
    error = single_error(user.get(f"/{STATUS}?jobId=abc"), "BAD_REQUEST", path=STATUS)
    assert [i["path"] for i in issues(error)] == [["jobId"]]


def test_get_job_history_coerces_query_parameters(
    busy: tuple[httpx.Client, list[int]],
) -> None:
    client, _ = busy
    everything = get(client, HISTORY, {"limit": 100}).json()["result"]["data"]
    r = client.get(f"/{HISTORY}?limit=2&offset=1")
    assert r.status_code == 200
    assert r.json()["result"]["data"] == everything[1:3]
    single_error(client.get(f"/{HISTORY}?limit=0"), "BAD_REQUEST", path=HISTORY)


def test_create_job_accepts_the_design_documents_raw_json_body(
    user: httpx.Client, images: str
) -> None:
    body = (
        '{\n    "imageUrl": "IMAGES/red.png",\n    "analysisPurpose": "Brand analysis for '
        'wellness product",\n    "outputFormat": "detailed_analysis",\n'
        '    "creativityLevel": 1.0\n  }'
    ).replace("IMAGES", images)
    r = user.post("/" + CREATE, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    data = r.json()["result"]["data"]
    assert data == {"jobId": data["jobId"], "status": "pending", "message": CREATED}
    assert user.get(f"/{STATUS}?jobId={data['jobId']}").status_code == 200


# --- sizes --------------------------------------------------------------------------------


def test_a_body_over_max_body_bytes_is_payload_too_large(limited: Server, images: str) -> None:
    with limited.client(_open_id()) as client:
        before = history_ids(client)
        r = post(client, CREATE, job(images, analysisPurpose="x" * (LIMIT_BODY + 10)))
        error = single_error(r, "PAYLOAD_TOO_LARGE")
        assert error["code"] == -32013 and str(LIMIT_BODY) in error["message"]
        # just under the limit is read
        r = post(client, CREATE, job(images, additionalInstructions="y" * 9000))
        assert r.status_code == 200, r.text
        assert len(history_ids(client)) == len(before) + 1


def test_a_chunked_body_over_max_body_bytes_is_payload_too_large(
    limited: Server, images: str
) -> None:
    body = json.dumps(job(images, analysisPurpose="x" * (LIMIT_BODY + 10))).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    with limited.client(_open_id()) as client:
        r = client.post(
            "/" + CREATE, content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in r.request.headers
        single_error(r, "PAYLOAD_TOO_LARGE")
        assert history_ids(client) == []


def test_a_declared_huge_content_length_is_refused_without_reading_the_body(
    limited: Server,
) -> None:
    token = limited.token(_open_id())
    started = time.monotonic()
    status, headers, body = raw_http(
        limited,
        (
            f"POST /api/trpc/{CREATE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
            "Content-Length: 1000000000\r\n\r\n{"
        ).encode(),
    )
    assert time.monotonic() - started < 5
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    check_error(json.loads(body)["error"], "PAYLOAD_TOO_LARGE")
    # and the server is still there
    with limited.client(_open_id()) as client:
        assert get(client, "system.health", {"timestamp": 1}).status_code == 200


def test_a_data_url_image_over_image_max_bytes_is_refused_by_create_job(
    limited: Server, images: str
) -> None:
    png = noise_png(110)
    assert LIMIT_IMAGE < len(png) and len(png) * 4 // 3 + 1000 < LIMIT_BODY
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    with limited.client(_open_id()) as client:
        r = post(client, CREATE, job(images, imageUrl=url))
        key = r.json()["error"]["data"]["code"]
        assert key in ("PAYLOAD_TOO_LARGE", "BAD_REQUEST"), r.text
        error = single_error(r, key, path=CREATE)
        assert "larger than" in error["message"]
        assert "32 KiB" in error["message"] or str(LIMIT_IMAGE) in error["message"]
        r = post(client, CREATE, sj(job(images, imageUrl=url)))
        assert list(r.json()["error"]) == ["json"]
        assert history_ids(client) == []
        # an image under the limit is accepted as a data: URL
        r = post(client, CREATE, job(images, imageUrl=data_url((10, 200, 30))))
        assert r.status_code == 200, r.text


# --- malformed superjson --------------------------------------------------------------------

MALFORMED_META: Final[list[tuple[str, Any, Any]]] = [
    ("missing-path", {"jobId": 1}, {"values": {"nope": ["Date"]}}),
    ("missing-nested-path", {"jobId": 1}, {"values": {"jobId.x": ["Date"]}}),
    ("unknown-type", {"jobId": 1}, {"values": {"jobId": ["Weird"]}}),
    ("unknown-root-type", {"jobId": 1}, {"values": ["Weird"]}),
    ("values-not-a-tree", {"jobId": 1}, {"values": 5}),
    ("values-empty-list", {"jobId": 1}, {"values": []}),
    ("annotation-not-a-string", {"jobId": 1}, {"values": {"jobId": [{"a": 1}]}}),
    ("children-not-an-object", {"jobId": 1}, {"values": ["map", 3]}),
    ("meta-not-an-object", {"jobId": 1}, "meta"),
    ("v-not-a-number", {"jobId": 1}, {"values": {"jobId": ["bigint"]}, "v": "1"}),
    ("date-not-a-date", {"jobId": 1}, {"values": {"jobId": ["Date"]}}),
    ("bad-date-string", {"jobId": "yesterday"}, {"values": {"jobId": ["Date"]}}),
    ("bad-bigint", {"jobId": "12x"}, {"values": {"jobId": ["bigint"]}}),
    ("bad-number", {"jobId": "many"}, {"values": {"jobId": ["number"]}}),
    ("map-not-pairs", {"jobId": 1}, {"values": ["map"]}),
    ("proto-path", {"jobId": 1}, {"values": {"__proto__": ["undefined"]}}),
    ("bad-escape-v1", {"a\\b": 1}, {"values": {"a\\b": ["undefined"]}, "v": 1}),
    ("index-past-the-end", [1], {"values": {"5": ["Date"]}}),
    ("too-deep", {"jobId": 1}, {"values": json.loads('{"a":' * 80 + '["Date"]' + "}" * 80)}),
]


@pytest.mark.parametrize(
    ("value", "meta"),
    [(v, m) for _, v, m in MALFORMED_META],
    ids=[name for name, _, _ in MALFORMED_META],
)
def test_malformed_superjson_meta_is_a_400_never_a_500(
    user: httpx.Client, value: Any, meta: Any
) -> None:
    r = get(user, STATUS, {"json": value, "meta": meta})
    single_error(r, "BAD_REQUEST", path=STATUS, superjson=True)
    r = post(user, CREATE, {"json": value, "meta": meta})
    single_error(r, "BAD_REQUEST", path=CREATE, superjson=True)


# --- every response ------------------------------------------------------------------------


def test_every_response_is_application_json_and_every_error_is_consistent(
    server: Server, user: httpx.Client, images: str
) -> None:
    anonymous = httpx.Client(base_url=server.trpc)
    other = server.client(_open_id())
    job_id = create(user, images)
    json_ct = {"content-type": "application/json"}
    responses = [
        get(user, "system.health", {"timestamp": 1}),
        post(user, CREATE, job(images)),
        get(user, STATUS, sj({"jobId": job_id})),
        get(user, "system.health,nope", {"0": {"timestamp": 1}}, batch=True),
        get(user, "system.health", {"timestamp": -1}),
        user.get(f"/{STATUS}?input=notjson"),
        get(anonymous, HISTORY),
        get(anonymous, HISTORY, {}, batch=True),
        get(other, STATUS, {"jobId": job_id}),
        get(user, STATUS, {"jobId": 987654321}),
        get(user, "nope"),
        get(user, CREATE, job(images)),
        post(user, STATUS, {"jobId": 1}),
        user.put("/" + STATUS, content=b"{}", headers=json_ct),
        user.request("OPTIONS", "/" + STATUS),
        user.delete("/" + STATUS),
        user.post("/" + CREATE, files={"f": ("a", b"x")}),
        get(user, f"{CREATE},auth.me", {}, batch=True),
        get(user, STATUS, {"json": {"jobId": 1}, "meta": {"values": {"x": ["Date"]}}}),
        post(user, "auth.logout"),
        user.get(f"/{STATUS}?jobId={job_id}"),
    ]
    anonymous.close()
    other.close()
    seen = set()
    for r in responses:
        assert r.headers.get("content-type", "").startswith("application/json"), r.request.url
        body = r.json()
        items = body if isinstance(body, list) else [body]
        statuses = set()
        for item in items:
            if "error" in item:
                error = item["error"].get("json", item["error"])
                consistent(error)
                seen.add(error["data"]["code"])
                statuses.add(error["data"]["httpStatus"])
            else:
                statuses.add(200)
        assert r.status_code == (statuses.pop() if len(statuses) == 1 else 207), r.request.url
    assert seen == {
        "BAD_REQUEST",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "METHOD_NOT_SUPPORTED",
        "UNSUPPORTED_MEDIA_TYPE",
    }


def test_a_bad_request_changes_nothing(user: httpx.Client, images: str) -> None:
    create(user, images)
    before = history_ids(user)
    assert len(before) == 1
    attempts = [
        post(user, CREATE, job(images, creativityLevel=5)),
        post(user, CREATE, job(images, analysisPurpose=_MISSING)),
        post(user, CREATE, job(images, imageUrl="ftp://x/y.png")),
        user.post("/" + CREATE, content=b"{not json", headers={"content-type": "application/json"}),
        get(user, CREATE, job(images)),
        user.put(
            "/" + CREATE,
            content=json.dumps(job(images)),
            headers={"content-type": "application/json"},
        ),
        post(user, f"{CREATE},auth.me", {"0": job(images)}, batch=True),
        post(user, f"{CREATE},{CREATE}", [job(images), job(images)], batch=True),
        post(user, CREATE, {"json": job(images), "meta": {"values": {"nope": ["Date"]}}}),
        post(user, CREATE, job(images, imageUrl="data:image/png;base64")),
    ]
    for r in attempts:
        assert 400 <= r.status_code < 500, r.text
    assert history_ids(user) == before
