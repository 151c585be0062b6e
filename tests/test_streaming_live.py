"""Content streamed as it is written (issue 17, part 5), end to end: a real server (API and
worker, offline providers, PARTIAL_CONTENT_MS at its default) on each backend. A subscriber
of the plain SSE stream, of onJobProgress and of onMyJobs sees the job's events carry the
answer so far (``partialContent``, growing; ``partialPieces``, parsed from it) while the
content stage writes, then the complete event with the validated content and neither field;
the column is cleared; a resume by event id replays the partial events as they were sent."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import httpx

from pipeline.streaming import partial_pieces
from tests.support import Server
from tests.test_sse import MINE, PROGRESS, Event, create, parse, read, tracked

PARTIAL = ("partialContent", "partialPieces")


def payload(event: Event) -> Any:
    data = event.json()
    return data["json"] if isinstance(data, dict) and "json" in data else data


def plain_events(server: Server, job_id: int, **headers: str) -> list[Event]:
    url = f"{server.base}/api/jobs/{job_id}/events"
    auth = {"authorization": f"Bearer {server.token('stream-a')}", **headers}
    with httpx.Client(timeout=30) as curl, curl.stream("GET", url, headers=auth) as response:
        assert response.status_code == 200
        return [e for e in parse(response.iter_lines()) if e.event == "progress"]


def check_partials(events: list[Any]) -> list[Any]:
    """The events' payloads as the issue says they must be; returns the partial ones."""
    partial = [p for p in events if "partialContent" in p]
    assert len(partial) >= 2, "the answer so far did not grow in events"
    for p in events:
        if "partialContent" not in p:  # every other event: exactly the old payload
            assert not any(key in p for key in PARTIAL)
    texts = [p["partialContent"] for p in partial]
    assert all(b.startswith(a) and len(b) > len(a) for a, b in pairwise(texts))
    for p in partial:
        assert p["status"] == "deepseek_generating" and p["deepseekOutput"] is None
        assert p["partialPieces"] == partial_pieces(p["partialContent"])
    assert texts[0].startswith('{"content_pieces":')
    final = events[-1]
    assert final["status"] == "complete" and final["deepseekOutput"]
    assert not any(key in final for key in PARTIAL)
    return partial


def test_a_plain_sse_subscriber_sees_the_answer_grow_then_the_content(
    server: Server, images: str
) -> None:
    with server.client("stream-a") as client:
        job_id = create(client, f"{images}/slow/0.3/red.png")
        events = plain_events(server, job_id)  # from now to the end, live
    partial = check_partials([payload(e) for e in events])
    # Pieces parsed so far: the last partial text holds at least the first piece's title.
    assert partial[-1]["partialPieces"] and partial[-1]["partialPieces"][0]["title"]
    assert server.sql('SELECT "partialContent" FROM "visionJobs" WHERE id = ?', job_id) == [(None,)]
    stored = server.sql(
        'SELECT "partialContent" FROM "visionJobEvents" WHERE "jobId" = ? ORDER BY id', job_id
    )
    assert [p["partialContent"] for p in partial] == [r[0] for r in stored if r[0] is not None]

    # A resume by event id replays the partial events as they were sent, ids and all.
    ids = [int(e.id or "") for e in events]
    first_partial = next(i for i, e in enumerate(events) if "partialContent" in payload(e))
    resumed = plain_events(server, job_id, **{"last-event-id": str(ids[first_partial - 1])})
    assert [int(e.id or "") for e in resumed] == ids[first_partial:]
    sent = [{k: payload(e).get(k) for k in PARTIAL} for e in events[first_partial:]]
    again = [{k: payload(e).get(k) for k in PARTIAL} for e in resumed]
    assert again == sent


def test_onjobprogress_and_onmyjobs_carry_the_answer_so_far(server: Server, images: str) -> None:
    no_input = json.dumps({"json": None, "meta": {"values": ["undefined"]}})
    with (
        server.client("stream-b") as client,
        client.stream("GET", f"/{MINE}", params={"input": no_input}) as response,
    ):
        events = parse(response.iter_lines())
        assert next(events).event == "connected"
        job_id = create(client, f"{images}/slow/0.3/red.png")
        mine: list[Any] = []
        for event in events:
            if event.event is None and payload(event)["jobId"] == job_id:
                mine.append(payload(event))
                if mine[-1]["status"] == "complete":
                    break
        check_partials(mine)
        # onJobProgress from the start (superjson input): the same events, in the same order.
        _, progress = read(client, PROGRESS, {"json": {"jobId": job_id, "lastEventId": "0"}})
        replayed = [payload(e) for e in tracked(progress)]
        check_partials(replayed)
        assert [p.get("partialContent") for p in replayed][-len(mine) :] == [
            p.get("partialContent") for p in mine
        ]
