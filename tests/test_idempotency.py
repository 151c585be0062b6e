"""createJob's idempotencyKey (issue 17 item 2), on both backends.

The same user, key and inputs within 24 hours: the same job, with its current status and
"Job already created"; other inputs: CONFLICT (409); never a second job, also when the calls
race on two API processes of one database (the unique index decides); keys older than a day
are cleared by the housekeeping and can be used again.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest

from pipeline.config import PipelineSettings
from pipeline.retention import Housekeeping
from rpc.procedures.idempotency import CONFLICT_MESSAGE, EXISTING_MESSAGE
from storage.engine import open_store
from storage.records import NewJob
from storage.store import JobStore
from storage.timeutil import to_sqlite
from tests.support import Server, backend_server, png_bytes, rows, start_server

CREATE = "/visionPipeline.createJob"


def png_data_url(color: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(color)).decode()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def servers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Server, Server]]:  # fmt: skip
    """Two API processes (no worker: jobs stay pending) on one database."""
    tmp = tmp_path_factory.mktemp("idem")
    with backend_server(request.param, tmp, "--no-worker", prefix="vp_idem") as first:
        second = start_server(tmp / "jobs.db", tmp / "second.log", "--no-worker",
                              DATABASE_URL=first.database_url)  # fmt: skip
        try:
            yield first, second
        finally:
            second.stop()


def job(**overrides: Any) -> dict[str, Any]:
    return {"imageUrl": "https://images.example.com/logo.png", "analysisPurpose": "idem test",
            "outputFormat": "bullet_points", **overrides}  # fmt: skip


def new_user(server: Server) -> tuple[httpx.Client, int, str]:
    open_id = f"idem-{uuid.uuid4().hex[:12]}"
    client = server.client(open_id)
    me = client.get("/auth.me").json()["result"]["data"]
    return client, int(me["id"]), open_id


def jobs_of(server: Server, user_id: int) -> list[int]:
    found = server.sql('SELECT id FROM "visionJobs" WHERE "userId" = ? ORDER BY id', user_id)
    return [int(r[0]) for r in found]


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["result"]["data"]
    return data


def refused(r: httpx.Response, code: str, status: int) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["data"]["code"] == code
    return str(error["message"])


def test_same_key_same_inputs_is_the_same_job_with_its_current_status(
    servers: tuple[Server, Server],
) -> None:
    first, second = servers
    client, user_id, open_id = new_user(first)
    with closing(client), second.client(open_id) as other_process:
        created = ok(client.post(CREATE, json=job(idempotencyKey="k-1")))
        assert created["status"] == "pending"
        assert created["message"] == "Job created and queued for processing"
        again = ok(client.post(CREATE, json=job(idempotencyKey="k-1")))
        assert again == {"jobId": created["jobId"], "status": "pending",
                         "message": EXISTING_MESSAGE}  # fmt: skip
        first.sql('UPDATE "visionJobs" SET status = ? WHERE id = ?', "complete", created["jobId"])
        later = ok(other_process.post(CREATE, json=job(idempotencyKey="k-1")))
        assert later == {"jobId": created["jobId"], "status": "complete",
                         "message": EXISTING_MESSAGE}  # fmt: skip
        assert jobs_of(first, user_id) == [created["jobId"]]
        # Without a key, or with another one: new jobs, as before.
        plain = ok(client.post(CREATE, json=job()))
        other = ok(client.post(CREATE, json=job(idempotencyKey="k-2")))
        assert len({created["jobId"], plain["jobId"], other["jobId"]}) == 3


def test_same_key_other_inputs_is_a_conflict_and_nothing_is_created(
    servers: tuple[Server, Server],
) -> None:
    first, _ = servers
    client, user_id, _ = new_user(first)
    with closing(client):
        created = ok(client.post(CREATE, json=job(idempotencyKey="same")))
        for changed in ({"analysisPurpose": "another"}, {"outputFormat": "social_media_post"},
                        {"creativityLevel": 1.5}, {"additionalInstructions": "shorter"},
                        {"imageUrl": "https://images.example.com/other.png"},
                        {"imageContext": "a context"}):  # fmt: skip
            r = client.post(CREATE, json=job(idempotencyKey="same", **changed))
            assert refused(r, "CONFLICT", 409) == CONFLICT_MESSAGE
        assert jobs_of(first, user_id) == [created["jobId"]]


def test_keys_are_per_user(servers: tuple[Server, Server]) -> None:
    first, _ = servers
    alice, alice_id, _ = new_user(first)
    bob, bob_id, _ = new_user(first)
    with closing(alice), closing(bob):
        a = ok(alice.post(CREATE, json=job(idempotencyKey="shared")))
        b = ok(bob.post(CREATE, json=job(idempotencyKey="shared", analysisPurpose="bob's")))
        assert a["jobId"] != b["jobId"]
        assert jobs_of(first, alice_id) == [a["jobId"]]
        assert jobs_of(first, bob_id) == [b["jobId"]]


def test_an_inline_image_with_a_key(servers: tuple[Server, Server]) -> None:
    first, _ = servers
    client, user_id, _ = new_user(first)
    url = png_data_url((10, 200, 30))
    with closing(client):
        created = ok(client.post(CREATE, json=job(imageUrl=url, idempotencyKey="img")))
        again = ok(client.post(CREATE, json=job(imageUrl=url, idempotencyKey="img")))
        assert again["jobId"] == created["jobId"]
        assert again["message"] == EXISTING_MESSAGE
        other = png_data_url((200, 10, 30))
        r = client.post(CREATE, json=job(imageUrl=other, idempotencyKey="img"))
        assert refused(r, "CONFLICT", 409) == CONFLICT_MESSAGE
        assert jobs_of(first, user_id) == [created["jobId"]]
        # The job refers to the stored image, which the key's job was made with.
        (stored,) = first.sql('SELECT "imageUrl" FROM "visionJobs" WHERE id = ?',
                              created["jobId"])  # fmt: skip
        assert str(stored[0]).startswith("/api/images/")
        named = ok(client.post(CREATE, json=job(imageUrl=stored[0], idempotencyKey="img")))
        assert named["jobId"] == created["jobId"]  # the same inputs, named by the image


def test_a_stored_image_the_user_lacks_is_refused_with_a_key(
    servers: tuple[Server, Server],
) -> None:
    first, _ = servers
    client, user_id, _ = new_user(first)
    with closing(client):
        r = client.post(CREATE, json=job(imageUrl="/api/images/" + "ab" * 32,
                                          idempotencyKey="missing"))  # fmt: skip
        assert refused(r, "BAD_REQUEST", 400) == "Image not found"
        assert jobs_of(first, user_id) == []


@pytest.mark.parametrize("key", ["", "x" * 201])
def test_a_key_of_0_or_201_characters_is_bad_request(
    servers: tuple[Server, Server], key: str
) -> None:
    first, _ = servers
    client, user_id, _ = new_user(first)
    with closing(client):
        r = client.post(CREATE, json=job(idempotencyKey=key))
        message = refused(r, "BAD_REQUEST", 400)
        assert "idempotencyKey" in message
        assert jobs_of(first, user_id) == []
        assert ok(client.post(CREATE, json=job(idempotencyKey="x" * 200)))["jobId"] > 0


def test_racing_calls_on_two_api_processes_make_one_job(servers: tuple[Server, Server]) -> None:
    first, second = servers
    _, user_id, open_id = new_user(first)
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(8)

    def call(server: Server) -> None:
        with server.client(open_id) as client:
            start.wait()
            answers.append(ok(client.post(CREATE, json=job(idempotencyKey="race"))))

    threads = [threading.Thread(target=call, args=(s,)) for s in (first, second) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 8
    ids = {a["jobId"] for a in answers}
    assert len(ids) == 1
    assert jobs_of(first, user_id) == list(ids)
    created = [a for a in answers if a["message"] != EXISTING_MESSAGE]
    assert len(created) == 1


def _age(server: Server, job_id: int, hours: float) -> None:
    when = datetime.now(UTC) - timedelta(hours=hours)
    value: Any = to_sqlite(when) if server.database_url.startswith("sqlite") else when
    server.sql('UPDATE "visionJobs" SET "createdAt" = ? WHERE id = ?', value, job_id)


def _key_of(server: Server, job_id: int) -> Any:
    return server.sql('SELECT "idempotencyKey" FROM "visionJobs" WHERE id = ?', job_id)[0][0]


def test_keys_older_than_a_day_are_cleared_by_the_housekeeping_then_free(
    servers: tuple[Server, Server],
) -> None:
    first, _ = servers
    client, user_id, _ = new_user(first)
    with closing(client):
        old = ok(client.post(CREATE, json=job(idempotencyKey="daily")))["jobId"]
        young = ok(client.post(CREATE, json=job(idempotencyKey="young")))["jobId"]
        _age(first, old, 25)
        _age(first, young, 23)

        async def housekeeping() -> Any:
            store = await open_store(first.database_url)
            try:
                return await Housekeeping(store, PipelineSettings()).run_once()
            finally:
                await store.driver.close()

        pruned = anyio.run(housekeeping)
        assert pruned is not None and pruned.keys >= 1
        assert _key_of(first, old) is None
        assert _key_of(first, young) == "young"
        again = ok(client.post(CREATE, json=job(idempotencyKey="daily")))
        assert again["jobId"] != old
        assert again["message"] != EXISTING_MESSAGE
        assert ok(client.post(CREATE, json=job(idempotencyKey="young")))["jobId"] == young
        assert jobs_of(first, user_id) == sorted([old, young, again["jobId"]])


def test_a_key_older_than_a_day_is_free_before_the_housekeeping_ran(
    servers: tuple[Server, Server],
) -> None:
    first, _ = servers
    client, user_id, _ = new_user(first)
    with closing(client):
        old = ok(client.post(CREATE, json=job(idempotencyKey="stale")))["jobId"]
        _age(first, old, 25)
        # Other inputs: no conflict, the old key no longer names a job.
        new = ok(client.post(CREATE, json=job(idempotencyKey="stale", analysisPurpose="new")))
        assert new["jobId"] != old
        assert _key_of(first, old) is None
        assert _key_of(first, new["jobId"]) == "stale"
        assert jobs_of(first, user_id) == [old, new["jobId"]]


def _new_job(user_id: int) -> NewJob:
    return NewJob(user_id, "https://images.example.com/a.png", None, "race", "bullet_points",
                  1.0, None, 3)  # fmt: skip


@pytest.mark.anyio
async def test_two_stores_inserting_one_key_at_once_make_one_job(
    store: JobStore, database_url: str
) -> None:
    other = await open_store(database_url)
    try:
        results: list[Any] = []

        async def create(s: JobStore) -> None:
            results.append(await s.create_keyed_job(_new_job(7), None, "k", "f" * 64))

        async with anyio.create_task_group() as tg:
            for s in (store, other) * 5:
                tg.start_soon(create, s)
        assert len({r.id for r in results}) == 1
        assert sum(r.created for r in results) == 1
        assert all(r.fingerprint == "f" * 64 for r in results)
        found = await rows(store, 'SELECT id FROM "visionJobs" WHERE "userId" = $1', 7)
        assert [r[0] for r in found] == [results[0].id]
    finally:
        await other.driver.close()
