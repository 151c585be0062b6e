"""The admin dashboard's procedures (issue 16 item 3) on both backends: the overview after jobs
ran through the API, admins only, retry / cancel by id, and the workers table that every
worker process's heartbeat writes (two `vision-pipeline worker` processes beside the server's
own, each row gone when its process stops)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest

from storage.batches import insert_jobs
from storage.dashboard import STALE_WORKER_AFTER, WorkerRow, bucket_starts
from storage.driver import execute
from storage.records import NewJob
from storage.store import JobStore
from storage.timeutil import to_sqlite, utcnow
from tests.support import ROOT, Server, adhoc, data_url, sql, start_process, wait_for_status

ADMIN = "dash-admin"


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rpc.cli", *args], cwd=ROOT, env=server.env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture(scope="module")
def admin(server: Server) -> str:
    done = cli(server, "users", "set-role", ADMIN, "admin", "--create")
    assert done.returncode == 0, done.stderr
    return ADMIN


def overview(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/visionPipeline.admin.overview")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["result"]["data"]
    return data


def mutate(client: httpx.Client, path: str, body: object) -> httpx.Response:
    return client.post(f"/visionPipeline.admin.{path}", json=body)


def create(client: httpx.Client, image_url: str) -> int:
    body = {"imageUrl": image_url, "analysisPurpose": "brand", "outputFormat": "bullet_points"}
    r = client.post("/visionPipeline.createJob", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


def wait_until(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what}")
        time.sleep(0.05)


def _day_jobs(view: dict[str, Any]) -> int:
    today = utcnow().strftime("%Y-%m-%d")
    return sum(d["jobs"] for d in view["spendPerDay"] if d["day"] == today)


def test_the_overview_counts_jobs_run_through_the_api(
    server: Server, admin: str, images: str
) -> None:
    with server.client(admin) as ops, server.client("dash-user") as user:
        before = overview(ops)
        done = [create(user, data_url((200, 30, 30))) for _ in range(2)]
        failed = create(user, f"{images}/missing.png")
        for job_id in [*done, failed]:
            wait_for_status(user, job_id)
        slow = create(user, f"{images}/slow/3/red.png")
        wait_for_status(user, slow, ("gemini_analyzing",))
        after = overview(ops)
        worker_id = ops.get("/visionPipeline.getWorkerStatus").json()["result"]["data"]["workerId"]
    delta = {s: after["counts"][s] - before["counts"][s] for s in after["counts"]}
    assert delta == {"pending": 0, "gemini_analyzing": 1, "deepseek_generating": 0,
                     "complete": 2, "error": 1}  # fmt: skip
    # The last hour: 12 buckets of 5 minutes, oldest first, the last one holding now.
    starts = [datetime.fromisoformat(b["start"].replace("Z", "+00:00")) for b in after["lastHour"]]
    assert len(starts) == 12
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(starts))
    assert starts[-1] <= utcnow() < starts[-1] + timedelta(minutes=5)
    for key, grew in (("completed", 2), ("failed", 1)):
        total = sum(b[key] for b in after["lastHour"])
        # Jobs of the window's first minutes may have left it between the two reads.
        assert total >= grew and total - sum(b[key] for b in before["lastHour"]) <= grew
    flying = [j for j in after["inFlight"] if j["jobId"] == slow]
    assert len(flying) == 1
    assert flying[0]["status"] == "gemini_analyzing" and flying[0]["workerId"] == worker_id
    assert flying[0]["attempt"] == 1 and flying[0]["leaseAgeMs"] >= 0
    assert flying[0]["streamedChars"] is None  # stage 1: no content yet
    assert isinstance(after["waitingByUser"], list)
    own = [w for w in after["workers"] if w["workerId"] == worker_id]
    assert len(own) == 1 and own[0]["alive"] is True
    assert own[0]["host"] == socket.gethostname() and own[0]["concurrency"] == 16
    failure = next(f for f in after["recentFailures"] if f["jobId"] == failed)
    assert failure["errorStage"] == "gemini" and failure["retryCount"] >= 1
    assert "404" in failure["errorMessage"] and failure["updatedAt"].endswith("Z")
    assert after["recentFailures"][0]["jobId"] == failed  # newest first
    assert _day_jobs(after) - _day_jobs(before) == 3  # two complete, one failed, today
    assert after["oldestWaitingAgeMs"] is None or after["oldestWaitingAgeMs"] >= 0
    with server.client("dash-user") as user:
        assert wait_for_status(user, slow)["status"] == "complete"


def test_the_admin_procedures_are_for_admins_only(server: Server, admin: str) -> None:
    calls = [("GET", "overview", None), ("POST", "retryJobs", {"jobIds": [1]}),
             ("POST", "cancelJobs", {"jobIds": [1]})]  # fmt: skip
    for open_id, code in (("dash-plain-user", "FORBIDDEN"), (None, "UNAUTHORIZED")):
        with server.client(open_id) as client:
            for method, name, body in calls:
                r = client.request(method, f"/visionPipeline.admin.{name}", json=body)
                assert r.json()["error"]["data"]["code"] == code, (name, r.text)


def test_retry_and_cancel_by_id(server: Server, admin: str, images: str) -> None:
    with server.client(admin) as ops:
        failed = create(ops, f"{images}/missing.png")
        complete = create(ops, data_url((10, 10, 200)))
        for job_id in (failed, complete):
            wait_for_status(ops, job_id)
        r = mutate(ops, "retryJobs", {"jobIds": [failed, complete, 99_999_999, failed]})
        assert r.json()["result"]["data"] == {
            "changed": [failed],
            "skipped": [
                {"jobId": complete,
                 "reason": "it is complete: only a job in error can be retried"},
                {"jobId": 99_999_999, "reason": "no such job"},
            ],
        }  # fmt: skip
        again = wait_for_status(ops, failed)
        assert again["status"] == "error" and again["retryCount"] == 1  # reset, failed once more
        slow = create(ops, f"{images}/slow/2/blue.png")
        wait_for_status(ops, slow, ("gemini_analyzing",))
        r = mutate(ops, "cancelJobs", {"jobIds": [slow, complete]})
        assert r.json()["result"]["data"] == {
            "changed": [slow],
            "skipped": [{"jobId": complete, "reason":
                         "it is complete: only a waiting or running job can be cancelled"}],
        }  # fmt: skip
        ended = wait_for_status(ops, slow)
        assert (ended["status"], ended["errorStage"]) == ("error", "cancelled")
        # A cancel is not a failure: not among the recent failures.
        assert slow not in [f["jobId"] for f in overview(ops)["recentFailures"]]
        # Bad input is BAD_REQUEST and changes nothing.
        for bad in ({"jobIds": []}, {"jobIds": list(range(1, 102))}, {"jobIds": ["x"]},
                    {"jobIds": [0]}, {}):  # fmt: skip
            r = mutate(ops, "retryJobs", bad)
            assert r.json()["error"]["data"]["code"] == "BAD_REQUEST", bad
        assert wait_for_status(ops, failed)["retryCount"] == 1


def _workers(server: Server) -> list[dict[str, Any]]:
    done = cli(server, "workers", "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def _pids(server: Server) -> set[int]:
    return {int(w["pid"]) for w in _workers(server)}


def test_each_worker_process_has_its_row_until_it_stops(server: Server, tmp_path: Path) -> None:
    own = {w["workerId"] for w in _workers(server)}
    env = {"DATABASE_URL": server.database_url}
    started = [start_process(["worker"], server.db_path, tmp_path / f"worker{i}.log", **env)
               for i in range(2)]  # fmt: skip
    try:
        pids = {p.process.pid for p in started}
        rows = wait_until(
            lambda: len(found := [w for w in _workers(server) if w["pid"] in pids]) == 2 and found,
            "two worker rows",
        )
        assert {w["host"] for w in rows} == {socket.gethostname()}
        assert all(w["running"] == 0 and w["concurrency"] == 16 for w in rows)
        assert all(w["workerId"].split(":")[1] == str(w["pid"]) for w in rows)
        with server.client(ADMIN) as ops:
            listed = {w["workerId"] for w in overview(ops)["workers"]}
        assert {w["workerId"] for w in rows} <= listed and own <= listed
        first, second = started
        assert first.stop() == 0
        wait_until(lambda: first.process.pid not in _pids(server), "the stopped worker's row gone")
        assert second.process.pid in _pids(server)
        table = cli(server, "workers")
        assert str(second.process.pid) in table.stdout and "alive" in table.stdout
        assert second.stop() == 0
        wait_until(lambda: second.process.pid not in _pids(server), "the second row gone")
        assert own <= {w["workerId"] for w in _workers(server)}  # the server's own stays
    finally:
        for process in started:
            process.stop()


@pytest.mark.anyio
async def test_a_heartbeat_refreshes_its_row_and_deletes_rows_silent_for_a_day(
    store: JobStore,
) -> None:
    now = utcnow()
    killed = WorkerRow("gone:1:aaaaaa", "old-host", 1, now - timedelta(days=3),
                       now - STALE_WORKER_AFTER - timedelta(seconds=1), 4, 2)  # fmt: skip
    quiet = WorkerRow("quiet:2:bbbbbb", "h", 2, now, now - timedelta(hours=23), 4, 0)
    await store.worker_seen(killed)
    await store.worker_seen(quiet)
    assert len(await store.list_workers()) == 2
    beat = WorkerRow("live:3:cccccc", "h", os.getpid(), now, now, 8, 0)
    await store.worker_seen(beat)  # deletes the row silent for over a day, not the other
    assert {w.worker_id for w in await store.list_workers()} == {quiet.worker_id, beat.worker_id}
    await store.worker_seen(WorkerRow(beat.worker_id, "h", os.getpid(), now,
                                      now + timedelta(seconds=10), 8, 5))  # fmt: skip
    rows = {w.worker_id: w for w in await store.list_workers()}
    assert set(rows) == {"quiet:2:bbbbbb", "live:3:cccccc"}
    live = rows["live:3:cccccc"]
    assert (live.running, live.concurrency, live.started_at) == (5, 8, now)
    assert live.last_seen_at == now + timedelta(seconds=10)
    await store.forget_worker("live:3:cccccc")
    assert [w.worker_id for w in await store.list_workers()] == ["quiet:2:bbbbbb"]


def test_the_last_hours_buckets_are_aligned_to_five_minutes() -> None:
    now = datetime.fromisoformat("2026-03-04T10:07:30+00:00")
    starts = bucket_starts(now)
    assert starts[0].isoformat() == "2026-03-04T09:10:00+00:00"
    assert starts[-1].isoformat() == "2026-03-04T10:05:00+00:00"


async def _finished_job(
    url: str, status: str, at: datetime, cost: float, stage: str | None
) -> None:
    stamp: object = to_sqlite(at) if url.startswith("sqlite") else at
    await anyio.to_thread.run_sync(
        sql,
        url, """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose",
        "outputFormat", "creativityLevel", status, progress, "retryCount", "maxRetries",
        "createdAt", "updatedAt", "runAfter", attempt, "cancelRequested", "costUsd",
        "errorStage") VALUES (1, 'http://x/a.png', 'p', 'bullet_points', 1.0, ?, 100, 0, 3,
        ?, ?, ?, 1, FALSE, ?, ?)""",
        status, stamp, stamp, stamp, cost, stage,
    )  # fmt: skip


@pytest.mark.anyio
async def test_spend_per_day_and_the_last_hour_by_when_jobs_finished(
    store: JobStore, database_url: str
) -> None:
    now = utcnow().replace(hour=12, minute=32, second=0)  # buckets from 11:35 to 12:30
    ago = [now - timedelta(minutes=m) for m in (1, 7, 90)]
    await _finished_job(database_url, "complete", ago[0], 0.25, None)
    await _finished_job(database_url, "error", ago[1], 0.125, "gemini")
    await _finished_job(database_url, "error", ago[0], 0.0, "cancelled")  # not a failure
    await _finished_job(database_url, "complete", ago[2], 0.5, None)  # over an hour ago
    await _finished_job(database_url, "complete", now - timedelta(days=1), 1.0, None)
    await _finished_job(database_url, "complete", now - timedelta(days=14), 9.0, None)  # too old
    view = await store.overview(now)
    day = [(d.day, d.cost_usd, d.jobs) for d in view.spend_per_day]
    assert day == [(now.strftime("%Y-%m-%d"), 0.875, 4),
                   ((now - timedelta(days=1)).strftime("%Y-%m-%d"), 1.0, 1)]  # fmt: skip
    assert [b.completed for b in view.last_hour] == [0] * 11 + [1]  # 12:31
    assert [b.failed for b in view.last_hour] == [0] * 10 + [1, 0]  # 12:25
    assert [(f.job_id, f.error_stage) for f in view.recent_failures] == [(2, "gemini")]
    assert view.counts == {"pending": 0, "gemini_analyzing": 0, "deepseek_generating": 0,
                           "complete": 4, "error": 2}  # fmt: skip
    # Today's spend is read each time; the days before are kept by the process a while.
    await _finished_job(database_url, "complete", now - timedelta(minutes=2), 2.0, None)
    await _finished_job(database_url, "complete", now - timedelta(days=2), 4.0, None)
    again = [(d.day, d.cost_usd, d.jobs) for d in (await store.overview(now)).spend_per_day]
    assert again == [(now.strftime("%Y-%m-%d"), 2.875, 5), day[1]]


@pytest.mark.anyio
async def test_the_overview_shows_whom_the_claim_takes_turns_between_and_streamed_text(
    store: JobStore,
) -> None:
    """Issue 17 on the dashboard: the users with waiting jobs (the most first, with their
    running ones), and how much of a running job's content has streamed in."""
    many, _ = await store.user_seen("many-waiting", None)
    few, _ = await store.user_seen("few-waiting", None)
    for user_id, count in ((many, 5), (few, 2)):
        job = NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
        await store.driver.write(insert_jobs([job] * count))
    (running,) = await store.claim_jobs("w1", 1, timedelta(seconds=30))
    view = await store.overview()
    backlog = [(b.open_id, b.waiting, b.running) for b in view.waiting_by_user]
    ran = 1 if running.user_id == many else 0
    assert backlog == [("many-waiting", 5 - ran, ran), ("few-waiting", 2 - (1 - ran), 1 - ran)]
    assert [(j.job_id, j.streamed_chars) for j in view.in_flight] == [(running.id, None)]
    partial = '{"content_pieces": [{"title": "Café'  # characters, not bytes
    await store.driver.write(execute(adhoc(
        """UPDATE "visionJobs" SET status = 'deepseek_generating', "partialContent" = $2
            WHERE id = $1"""), running.id, partial))  # fmt: skip
    view = await store.overview()
    assert [(j.job_id, j.streamed_chars) for j in view.in_flight] == [(running.id, len(partial))]
