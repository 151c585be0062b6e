"""Live progress (issue 6): tRPC subscriptions over SSE (TRPC_WIRE §7), httpBatchStreamLink
(§6) and the plain ``GET /api/jobs/{id}/events``, against real server processes.

Jobs use the ``images`` fixture's ``/slow/<s>/…`` paths to take a moment. The genuine
``@trpc/client`` checks run from ``tests/client/subscribe.mjs`` (last test).
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from rpc.wire import superjson
from tests.support import (
    CLIENT_DIR,
    Server,
    backend_server,
    install_client,
    start_process,
    start_server,
    wait_for_status,
)

PROGRESS = "visionPipeline.onJobProgress"
MINE = "visionPipeline.onMyJobs"
ORDER = ["pending", "gemini_analyzing", "deepseek_generating", "complete"]


@dataclass
class Event:
    event: str | None
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


def parse(lines: Iterator[str]) -> Iterator[Event]:
    """SSE events from lines (a blank line ends an event; ``:`` lines are comments)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if fields:
                yield Event(fields.get("event"), fields.get("data", ""), fields.get("id"))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def read(
    client: httpx.Client, path: str, input: Any = None, *, until: Any = None,
    headers: dict[str, str] | None = None, **params: str,
) -> tuple[httpx.Response, list[Event]]:  # fmt: skip
    """Reads a stream to its end (or until ``until(events)``); returns the response and events."""
    if input is not None:
        params["input"] = json.dumps(input)
    events: list[Event] = []
    with client.stream("GET", path, params=params, headers=headers) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for event in parse(response.iter_lines()):
                events.append(event)
                if until is not None and until(events):
                    break
        else:
            response.read()
    return response, events


def tracked(events: list[Event]) -> list[Event]:
    return [e for e in events if e.event is None]


def create(client: httpx.Client, image: str) -> int:
    body = {"imageUrl": image, "analysisPurpose": "live", "outputFormat": "bullet_points"}
    r = client.post("/visionPipeline.createJob", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


def status(client: httpx.Client, job_id: int, *, sj: bool = False) -> Any:
    input = {"json": {"jobId": job_id}} if sj else {"jobId": job_id}
    data = client.get("/visionPipeline.getJobStatus", params={"input": json.dumps(input)})
    return data.json()["result"]["data"]


def history(client: httpx.Client, job_id: int) -> list[Event]:
    """Every event of a finished job (replayed after id 0)."""
    _, events = read(client, PROGRESS, {"jobId": job_id, "lastEventId": "0"})
    assert events[-1].event == "return"
    return tracked(events)


def ids(events: list[Event]) -> list[int]:
    return [int(e.id or "") for e in events]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:  # fmt: skip
    """conftest's server with PARTIAL_CONTENT_MS=0: these tests count a job's events exactly,
    and a streamed answer's partial texts would add some (tests/test_streaming_live.py)."""
    tmp = tmp_path_factory.mktemp("server")
    with backend_server(request.param, tmp, PARTIAL_CONTENT_MS="0") as srv:
        yield srv


@pytest.fixture
def alice(server: Server) -> Iterator[httpx.Client]:
    with server.client("sse-alice") as client:
        yield client


# --- the tRPC stream ------------------------------------------------------------------------


@pytest.mark.parametrize("sj", [False, True], ids=["plain", "superjson"])
def test_a_finished_jobs_stream_is_trpcs_exact_bytes(alice: httpx.Client, images: str,
                                                      sj: bool) -> None:  # fmt: skip
    job_id = create(alice, f"{images}/red.png")
    wait_for_status(alice, job_id)
    input = {"json": {"jobId": job_id}} if sj else {"jobId": job_id}
    r = alice.get(f"/{PROGRESS}", params={"input": json.dumps(input)})
    assert r.status_code == 200
    for name, value in [("content-type", "text/event-stream"), ("x-accel-buffering", "no"),
                        ("cache-control", "no-cache, no-transform"),
                        ("vary", "trpc-accept, accept")]:  # fmt: skip
        assert r.headers[name] == value  # §7.2
    m = re.fullmatch(
        r'event: connected\ndata: \{"reconnectAfterInactivityMs":30000\}\n\n\n'
        r"data: (.*)\nid: (\d+)\n\n\nevent: return\ndata: \n\n\n",
        r.text,
    )  # §7.3, with tRPC's two blank lines after each event
    assert m, r.text
    assert json.loads(m.group(1)) == status(alice, job_id, sj=sj)
    assert int(m.group(2)) == ids(history(alice, job_id))[-1]


def test_onmyjobs_sees_a_new_job_from_pending_to_complete(server: Server, images: str) -> None:
    no_input = json.dumps({"json": None, "meta": {"values": ["undefined"]}})  # superjson 1.x
    with (
        server.client("sse-mine") as client,
        client.stream("GET", f"/{MINE}", params={"input": no_input}) as response,
    ):
        events = parse(response.iter_lines())
        assert next(events).event == "connected"  # sent once listening: nothing can be missed
        job_id = create(client, f"{images}/slow/0.3/red.png")
        seen: list[Event] = []
        for event in events:
            seen.append(event)
            if event.json()["json"]["status"] == "complete":
                break
    assert [e.json()["json"]["status"] for e in seen] == ORDER
    assert {e.json()["json"]["jobId"] for e in seen} == {job_id}
    assert ids(seen) == sorted(set(ids(seen)))
    assert [e.json()["json"]["progress"] for e in seen] == [0, 25, 60, 100]
    assert seen[-1].json()["meta"]["values"]["completedAt"] == ["Date"]


def test_onjobprogress_sends_the_state_then_every_change_then_return(
    alice: httpx.Client, images: str
) -> None:
    job_id = create(alice, f"{images}/slow/0.5/red.png")
    _, events = read(alice, PROGRESS, {"jobId": job_id})
    assert events[0].event == "connected" and events[-1].event == "return"
    got = tracked(events)
    statuses = [e.json()["status"] for e in got]
    assert statuses == ORDER[ORDER.index(statuses[0]) :] and len(got) >= 2
    assert ids(got) == ids(history(alice, job_id))[-len(got) :]
    assert got[0].json()["deepseekOutput"] is None and got[-1].json() == status(alice, job_id)


def test_resuming_after_any_id_replays_exactly_the_rest(alice: httpx.Client, images: str) -> None:
    job_id = create(alice, f"{images}/red.png")
    wait_for_status(alice, job_id)
    full = ids(history(alice, job_id))
    assert len(full) == 4
    for k, last in enumerate(full):
        forms: list[tuple[dict[str, Any], dict[str, str], dict[str, str]]] = [
            ({"jobId": job_id}, {"last-event-id": str(last)}, {}),  # EventSource's reconnect
            ({"jobId": job_id, "lastEventId": str(last)}, {}, {}),  # reconnect after inactivity
            ({"json": {"jobId": job_id, "lastEventId": str(last)}}, {}, {}),
            ({"jobId": job_id}, {}, {"lastEventId": str(last)}),  # §7.1 query form
        ]
        for input, headers, params in forms:
            _, events = read(alice, PROGRESS, input, headers=headers, **params)
            assert ids(tracked(events)) == full[k + 1 :], (input, headers, params)
            assert events[-1].event == "return"


def test_a_dropped_connection_resumes_with_nothing_missed_or_repeated(
    alice: httpx.Client, images: str
) -> None:
    job_id = create(alice, f"{images}/slow/1.5/red.png")
    got: list[Event] = []
    while not got or got[-1].json()["status"] != "complete":
        headers = {"last-event-id": got[-1].id or ""} if got else {}
        _, events = read(alice, PROGRESS, {"jobId": job_id}, headers=headers,
                         until=lambda ev: ev[-1].event is None)  # fmt: skip
        got += tracked(events)  # one event, then the client drops the connection
    full = ids(history(alice, job_id))
    assert ids(got) == full[full.index(ids(got)[0]) :]


@pytest.mark.parametrize(
    ("who", "input", "method", "code", "message"),
    [
        (None, {"jobId": 1}, "GET", "UNAUTHORIZED", "Please login (10001)"),
        ("sse-bob", "alice's", "GET", "FORBIDDEN", "You do not have access to this job"),
        ("sse-alice", {"jobId": 987654321}, "GET", "NOT_FOUND", "Job not found"),
        ("sse-alice", {"jobId": "x"}, "GET", "BAD_REQUEST", None),
        ("sse-alice", {"jobId": 1, "lastEventId": "abc"}, "GET", "BAD_REQUEST", None),
        ("sse-alice", {"jobId": 1}, "POST", "METHOD_NOT_SUPPORTED", None),
    ],
)
@pytest.mark.parametrize("sj", [False, True], ids=["plain", "superjson"])
def test_errors_are_a_serialized_error_event_after_connected(
    server: Server, alice: httpx.Client, images: str, who: str | None, input: Any,
    method: str, code: str, message: str | None, sj: bool,
) -> None:  # fmt: skip
    if input == "alice's":
        input = {"jobId": create(alice, f"{images}/red.png")}
    with server.client(who) as client:
        payload = json.dumps({"json": input} if sj else input)
        if method == "GET":
            r = client.get(f"/{PROGRESS}", params={"input": payload})
        else:
            r = client.post(f"/{PROGRESS}", content=payload,
                            headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    events = list(parse(iter(r.text.split("\n"))))
    assert [e.event for e in events] == ["connected", "serialized-error"]  # then it closes
    shape = events[1].json()["json"] if sj else events[1].json()
    assert shape["data"]["code"] == code and shape["data"]["path"] == PROGRESS
    assert message is None or shape["message"] == message


def test_an_unknown_path_is_a_json_404_and_a_batched_subscription_a_400(
    alice: httpx.Client,
) -> None:
    r = alice.get("/visionPipeline.onNothing", headers={"accept": "text/event-stream"})
    assert r.status_code == 404 and r.json()["error"]["data"]["code"] == "NOT_FOUND"
    r = alice.get(f"/{PROGRESS}", params={"batch": "1", "input": '{"0":{"jobId":1}}'})
    assert r.json()[0]["error"]["message"] == "Cannot batch subscription calls"


@pytest.mark.anyio
async def test_a_subscriber_that_falls_behind_catches_up_from_the_table() -> None:
    from datetime import UTC, datetime

    from rpc.procedures.live import Hub
    from storage.changes import EventsOf, JobEvent

    class Feed:  # the ChangeFeed's surface the hub uses; the "table" is a list
        def __init__(self) -> None:
            self.table: list[JobEvent] = []
            self.subscribers: list[Any] = []
            self.last_id = 0

        def subscribe(self, callback: Any) -> Any:
            self.subscribers.append(callback)
            return lambda: self.subscribers.remove(callback)

        def publish(self, n: int) -> None:
            for _ in range(n):
                event = JobEvent(self.last_id + 1, 1, 1, "pending", 0, None, datetime.now(UTC))
                self.table.append(event)
                self.last_id = event.id
                for callback in self.subscribers:
                    callback([event])

        async def read_after(self, query: Any, key: int, after: int, limit: int) -> Any:
            return [e for e in self.table if e.job_id == key and e.id > after][:limit]

    class Store:
        feed = Feed()

    hub = Hub(Store(), queue_limit=3)  # type: ignore[arg-type]
    got: list[int] = []
    with hub.listen(job_id=1) as listener:
        Store.feed.publish(10)  # more than the buffer holds: it overflows
        async for batch in hub.events(listener, EventsOf.JOB, 1, 0):
            got += [e.id for e in batch]
            if len(got) == 10:
                Store.feed.publish(2)  # live again after catching up
            if len(got) == 12:
                break
    assert got == list(range(1, 13))
    assert hub.listeners == 0


# --- the plain endpoint ---------------------------------------------------------------------


def test_the_plain_endpoint_streams_progress_like_curl_and_resumes(
    server: Server, alice: httpx.Client, images: str
) -> None:
    job_id = create(alice, f"{images}/slow/0.3/red.png")
    url = f"{server.base}/api/jobs/{job_id}/events"
    token = server.token("sse-alice")
    with httpx.Client(timeout=30) as curl:
        r = curl.get(url, headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        events = list(parse(iter(r.text.split("\n"))))
        assert {e.event for e in events[:-1]} == {"progress"} and events[-1].event == "end"
        assert events[-1 - 1].json() == status(alice, job_id)
        full = ids(history(alice, job_id))
        assert ids(events[:-1]) == full[-len(events) + 1 :]
        cookie = {"cookie": f"app_session_id={token}", "last-event-id": str(full[1])}
        resumed = list(parse(iter(curl.get(url, headers=cookie).text.split("\n"))))
        assert ids(resumed[:-1]) == full[2:]
        assert curl.get(url, headers={**cookie, "last-event-id": str(full[-1])}).status_code == 204
        bob = {"authorization": f"Bearer {server.token('sse-bob')}"}
        assert curl.get(url, headers=bob).json()["error"]["code"] == "FORBIDDEN"
        r = curl.get(f"{server.base}/api/jobs/987654321/events", headers=bob)
        assert (r.status_code, r.json()["error"]["message"]) == (404, "Job not found")
        assert curl.get(url).status_code == 401
        assert curl.get(f"{server.base}/api/jobs/x/events", headers=bob).status_code == 400


def test_a_replayed_event_carries_the_outputs_only_from_the_event_that_produced_them(
    server: Server, alice: httpx.Client, images: str
) -> None:
    """The job's row is read after the event (long after, in a replay): the analysis shows
    from the event that wrote it (deepseek_generating) on, the content from complete."""
    job_id = create(alice, f"{images}/red.png")
    assert wait_for_status(alice, job_id)["status"] == "complete"
    url = f"{server.base}/api/jobs/{job_id}/events"
    auth = {"authorization": f"Bearer {server.token('sse-alice')}", "last-event-id": "0"}
    with httpx.Client(timeout=30) as curl:
        text = curl.get(url, headers=auth).text
    plain = [e.json() for e in parse(iter(text.split("\n"))) if e.event == "progress"]
    subscribed = [e.json() for e in history(alice, job_id)]
    for events in (plain, subscribed):
        assert [e["status"] for e in events] == ORDER
        assert [e["geminOutput"] is not None for e in events] == [False, False, True, True]
        assert [e["deepseekOutput"] is not None for e in events] == [False, False, False, True]


EVENT_ID_MESSAGE = "lastEventId must be an event id sent by this server"
PAST_BIGINT = ["9223372036854775808", "9999999999999999999", "10000000000000000000"]


def test_an_event_id_past_bigint_is_a_400_on_the_plain_endpoint(
    server: Server, alice: httpx.Client, images: str
) -> None:
    job_id = create(alice, f"{images}/red.png")
    wait_for_status(alice, job_id)  # a finished job: the resume reads the table at once
    url = f"{server.base}/api/jobs/{job_id}/events"
    auth = {"authorization": f"Bearer {server.token('sse-alice')}"}
    with httpx.Client(timeout=30) as curl:
        for big in [*PAST_BIGINT, str(10**30)]:
            for r in (curl.get(url, headers={**auth, "last-event-id": big}),
                      curl.get(url, headers=auth, params={"lastEventId": big})):  # fmt: skip
                assert r.status_code == 400, (big, r.text)
                assert r.json() == {"error": {"message": EVENT_ID_MESSAGE, "code": "BAD_REQUEST"}}
        largest = str(2**63 - 1)  # still an id: nothing after it to send
        assert curl.get(url, headers={**auth, "last-event-id": largest}).status_code == 204


@pytest.mark.parametrize("path", [PROGRESS, MINE])
@pytest.mark.parametrize("sj", [False, True], ids=["plain", "superjson"])
def test_an_event_id_past_bigint_is_bad_request_on_the_subscriptions(
    alice: httpx.Client, images: str, path: str, sj: bool
) -> None:
    job_id = create(alice, f"{images}/red.png")
    wait_for_status(alice, job_id)
    base = {"jobId": job_id} if path == PROGRESS else {}
    tries: list[tuple[Any, dict[str, str]]] = []
    for big in PAST_BIGINT:
        tries += [({**base, "lastEventId": big}, {}), ({**base, "lastEventId": int(big)}, {}),
                  (base or None, {"last-event-id": big})]  # fmt: skip
    for input, headers in tries:
        payload = None if input is None else ({"json": input} if sj else input)
        r, events = read(alice, path, payload, headers=headers)
        assert r.status_code == 200
        assert [e.event for e in events] == ["connected", "serialized-error"], (input, headers)
        shape = events[1].json()["json"] if sj and input is not None else events[1].json()
        assert shape["data"]["code"] == "BAD_REQUEST", (input, headers, shape)
        assert shape["message"] == EVENT_ID_MESSAGE


# --- httpBatchStreamLink --------------------------------------------------------------------


def jsonl_results(text: str, sj: bool) -> dict[int, Any]:
    """Decodes a §6.2 body (head + promise chunks) into {batch index: envelope}."""
    lines = [json.loads(line) for line in text.splitlines()]
    if sj:
        lines = [superjson.deserialize(line) for line in lines]
    chunks = {line[0]: line for line in lines[1:]}

    def resolve(encoded: list[Any]) -> Any:
        if not encoded[0]:
            return superjson.UNDEFINED
        value = encoded[0][0]
        for key, kind, chunk_id in encoded[1:]:
            assert kind == 0 and chunks[chunk_id][1] == 0  # promises, fulfilled
            inner = resolve(chunks[chunk_id][2])
            if key is None:
                value = inner
            else:
                value[key] = inner
        return value

    return {int(k): resolve(v) for k, v in lines[0].items()}


@pytest.mark.parametrize("sj", [False, True], ids=["plain", "superjson"])
def test_a_streamed_batch_answers_jsonl_with_results_and_errors(
    alice: httpx.Client, images: str, sj: bool
) -> None:
    job_id = create(alice, f"{images}/red.png")
    wait_for_status(alice, job_id)
    items = [{"jobId": job_id}, {"jobId": 987654321}]
    inputs = {str(i): ({"json": v} if sj else v) for i, v in enumerate(items)}
    paths = "visionPipeline.getJobStatus,visionPipeline.getJobStatus,nope"
    r = alice.get(f"/{paths}", params={"batch": "1", "input": json.dumps(inputs)},
                  headers={"trpc-accept": "application/jsonl"})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    got = jsonl_results(r.text, sj)
    expected = (
        superjson.deserialize(status(alice, job_id, sj=True)) if sj else status(alice, job_id)
    )
    assert got[0] == {"result": {"data": expected}}
    assert got[1]["error"]["message"] == "Job not found"
    assert got[2]["error"]["data"] == {"code": "NOT_FOUND", "httpStatus": 404, "path": "nope"}
    # `accept` containing application/jsonl asks for it too (client ≥ 11.13.1, §6.1)
    r = alice.get(f"/{paths}", params={"batch": "1", "input": json.dumps(inputs)},
                  headers={"accept": "text/html, application/jsonl"})  # fmt: skip
    assert jsonl_results(r.text, sj)[0] == got[0]


def test_a_stream_request_that_is_not_a_batch_is_a_400(alice: httpx.Client) -> None:
    r = alice.get("/visionPipeline.getJobStatus", headers={"trpc-accept": "application/jsonl"})
    assert r.status_code == 400  # §6.1
    assert r.json()["error"]["message"] == (
        "Streaming requests must be batched (you can do a batch of 1)"
    )


@pytest.mark.anyio
async def test_streamed_results_come_in_completion_order() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    from rpc.config import Settings
    from rpc.context import Services
    from rpc.wire.dispatch import Dispatcher
    from rpc.wire.router import Router

    router = Router()

    @router.procedure("slow", "query")
    async def slow(ctx: Any, _: None) -> str:
        await anyio.sleep(0.3)
        return "slow"

    @router.procedure("fast", "query")
    async def fast(ctx: Any, _: None) -> str:
        return "fast"

    dispatcher = Dispatcher(router, Services(Settings(), None, None))  # type: ignore[arg-type]
    app = Starlette(routes=[Route("/api/trpc/{path:path}", dispatcher.handle)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/api/trpc/slow,fast?batch=1",
                             headers={"trpc-accept": "application/jsonl"})  # fmt: skip
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines == [
        {"0": [[0], [None, 0, 0]], "1": [[0], [None, 0, 1]]},
        [1, 0, [[{"result": 0}], ["result", 0, 2]]],  # fast (index 1) first
        [2, 0, [[{"data": 0}], ["data", 0, 3]]],
        [3, 0, [["fast"]]],
        [0, 0, [[{"result": 0}], ["result", 0, 4]]],
        [4, 0, [[{"data": 0}], ["data", 0, 5]]],
        [5, 0, [["slow"]]],
    ]


# --- other processes, many subscribers, the genuine client ----------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_worker_in_another_process_streams_events(
    tmp_path: Path, images: str, backend: str, request: pytest.FixtureRequest
) -> None:
    env = {"DATABASE_URL": request.getfixturevalue("pg_url")} if backend == "postgresql" else {}
    api = start_server(tmp_path / "jobs.db", tmp_path / "api.log", "--no-worker", **env)
    worker = None
    try:
        with api.client("sse-remote") as client:
            job_id = create(client, f"{images}/slow/0.3/red.png")
            params = {"input": json.dumps({"jobId": job_id})}
            with client.stream("GET", f"/{PROGRESS}", params=params) as response:
                events = parse(response.iter_lines())
                assert next(events).event == "connected"
                assert next(events).json()["status"] == "pending"  # no worker here
                worker = start_process(
                    ["worker"],
                    tmp_path / "jobs.db",
                    tmp_path / "w.log",
                    PARTIAL_CONTENT_MS="0",
                    **env,
                )
                rest = list(events)
        assert [e.json()["status"] for e in tracked(rest)] == ORDER[1:]
        assert rest[-1].event == "return"
    finally:
        if worker is not None:
            worker.stop()
        api.stop()


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


@pytest.mark.anyio
async def test_2000_idle_subscribers_all_get_the_state_and_a_later_change(
    tmp_path: Path, images: str
) -> None:
    subscribers, jobs = 2000, 20
    _raise_nofile(2 * subscribers + 1000)  # the server inherits it
    srv = start_server(tmp_path / "jobs.db", tmp_path / "api.log", "--no-worker")
    worker = None
    try:
        with srv.client("crowd") as client:
            job_ids = [create(client, f"{images}/red.png") for _ in range(jobs)]
        ready, gate = 0, anyio.Semaphore(100)  # connection attempts in flight
        all_ready = anyio.Event()
        seen: list[list[Event]] = [[] for _ in range(subscribers)]

        async def subscribe(i: int, clients: list[httpx.AsyncClient]) -> None:
            nonlocal ready
            input = json.dumps({"jobId": job_ids[i % jobs]})
            await gate.acquire()
            async with clients[i % len(clients)].stream(
                "GET", f"/{PROGRESS}", params={"input": input}
            ) as r:
                fields: dict[str, str] = {}
                async for line in r.aiter_lines():
                    if line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                        continue
                    if fields:
                        seen[i].append(Event(fields.get("event"), fields["data"], fields.get("id")))
                        fields = {}
                        if len(seen[i]) == 2:
                            gate.release()
                            ready += 1
                            if ready == subscribers:
                                all_ready.set()

        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        headers = {"authorization": f"Bearer {srv.token('crowd')}"}
        async with AsyncExitStack() as stack:
            # Several clients: one httpx pool holding thousands of connections is slow to use.
            timeout = httpx.Timeout(120, connect=60)
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=srv.trpc, headers=headers, limits=limits, timeout=timeout
                    )
                )
                for _ in range(subscribers // 100)
            ]
            with anyio.fail_after(300):  # the task group ends when every stream has ended
                async with anyio.create_task_group() as tg:
                    for i in range(subscribers):
                        tg.start_soon(subscribe, i, clients)
                    await all_ready.wait()
                    # Every subscriber is connected and idle: the server still answers.
                    params = {"input": json.dumps({"jobId": job_ids[0]})}
                    r = await clients[0].get("/visionPipeline.getJobStatus", params=params)
                    assert r.json()["result"]["data"]["status"] == "pending"
                    # A later change for everyone: a worker (another process) runs the jobs.
                    worker = start_process(
                        ["worker"], tmp_path / "jobs.db", tmp_path / "w.log", PARTIAL_CONTENT_MS="0"
                    )
        for events in seen:
            assert events[0].event == "connected"
            assert json.loads(events[1].data)["status"] == "pending"
            assert json.loads(events[-2].data)["status"] == "complete"
            assert events[-1].event == "return"
    finally:
        if worker is not None:
            worker.stop()
        srv.stop()


@pytest.mark.node
def test_the_genuine_trpc_client_subscribes_resumes_and_streams(
    server: Server, images: str, tmp_path: Path
) -> None:
    if "postgresql" in server.database_url:
        pytest.skip("the client's behaviour does not depend on the backend: SQLite run only")
    install_client()
    drop = start_server(tmp_path / "drop.db", tmp_path / "drop.log", PARTIAL_CONTENT_MS="0",
                        SSE_MAX_DURATION_MS="600", SSE_RETRY_MS="100")  # fmt: skip
    idle = start_server(tmp_path / "idle.db", tmp_path / "idle.log", PARTIAL_CONTENT_MS="0",
                        SSE_PING_MS="0", SSE_RECONNECT_AFTER_INACTIVITY_MS="600")  # fmt: skip
    try:
        result = subprocess.run(
            ["node", "subscribe.mjs", server.trpc, drop.trpc, idle.trpc,
             server.token("live-a", "Live A"), server.token("live-b", "Live B"), images],
            cwd=CLIENT_DIR, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        drop.stop()
        idle.stop()
    failures = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert result.returncode == 0 and not failures, (
        "\n".join(failures) or result.stdout[-3000:] + result.stderr[-3000:]
    )
    assert result.stdout.splitlines()[-1].endswith(" 0 failed")
