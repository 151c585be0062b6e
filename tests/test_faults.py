"""Faults with real processes and real signals: a killed worker, a frozen worker, SIGTERM with
jobs in flight, a SQLite file under heavy parallel writes, and a database locked for a while.
No job is lost, none completes twice."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Server, reset_database, start_process, start_server, wait_for_status

# Short leases so recovery happens within a test: a lease of 1 s, renewed every 1/3 s.
FAST = {"LEASE_SECONDS": "1", "POLL_INTERVAL_MS": "100", "RETRY_DELAY_MS": "20"}


def query(db: Path, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(statement, args).fetchall()
    finally:
        conn.close()


def create(client: httpx.Client, image_url: str) -> int:
    body = {"imageUrl": image_url, "analysisPurpose": "fault test", "outputFormat": "bullet_points"}
    r = client.post("/visionPipeline.createJob", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


def wait_until(predicate: Any, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def running_holder(api: Server, job_id: int) -> str | None:
    rows = api.sql('SELECT "lockedBy" FROM "visionJobs" WHERE id = ? AND status IN '
                 "('gemini_analyzing', 'deepseek_generating')", job_id)  # fmt: skip
    return rows[0][0] if rows else None


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """An API process without a worker, on either backend; tests start the workers they need."""
    env = dict(FAST)
    if request.param == "postgresql":
        env["DATABASE_URL"] = request.getfixturevalue("pg_url")
        reset_database(env["DATABASE_URL"])
    srv = start_server(tmp_path / "jobs.db", tmp_path / "api.log", "--no-worker", **env)
    try:
        yield srv
    finally:
        srv.stop()


def worker(api: Server, name: str, **env: str) -> Server:
    return start_process(["worker"], api.db_path, api.db_path.parent / f"{name}.log",
                         **{**FAST, "DATABASE_URL": api.database_url, **env})  # fmt: skip


def test_a_job_whose_worker_is_killed_mid_stage_completes_once_on_another(
    api: Server, images: str
) -> None:
    first = worker(api, "first")
    with api.client("faults") as client:
        job_id = create(client, f"{images}/slow/3/red.png")
        wait_until(lambda: running_holder(api, job_id) is not None, what="the claim")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        second = worker(api, "second")
        try:
            status = wait_for_status(client, job_id, timeout=40)
        finally:
            second.stop()
    assert status["status"] == "complete"
    assert api.sql('SELECT COUNT(*) FROM "visionJobOutputs" WHERE "jobId" = ?',
                 job_id) == [(1,)]  # fmt: skip
    outcomes = api.sql('SELECT outcome FROM "visionJobSessions" WHERE "jobId" = ? '
                     "ORDER BY attempt", job_id)  # fmt: skip
    assert outcomes == [("abandoned",), ("complete",)]


def test_a_frozen_worker_that_lost_its_lease_writes_nothing_when_it_wakes(
    api: Server, images: str
) -> None:
    stale = worker(api, "stale")
    other: Server | None = None
    try:
        with api.client("faults") as client:
            job_id = create(client, f"{images}/slow/2/red.png")
            wait_until(lambda: running_holder(api, job_id) is not None, what="the claim")
            stale.process.send_signal(signal.SIGSTOP)
            other = worker(api, "other")
            status = wait_for_status(client, job_id, timeout=40)
            assert status["status"] == "complete"
            stale.process.send_signal(signal.SIGCONT)
            time.sleep(3)  # the stale worker finishes its stage and tries to write
            assert wait_for_status(client, job_id)["status"] == "complete"
    finally:
        stale.process.send_signal(signal.SIGCONT)
        stale.stop()
        if other is not None:
            other.stop()
    assert api.sql('SELECT COUNT(*) FROM "visionJobOutputs"') == [(1,)]
    outcomes = api.sql('SELECT outcome FROM "visionJobSessions" WHERE "jobId" = ? '
                     "ORDER BY attempt", job_id)  # fmt: skip
    assert outcomes == [("abandoned",), ("complete",)]


def test_sigterm_lets_in_flight_jobs_finish_or_hands_them_back(api: Server, images: str) -> None:
    graceful = worker(api, "graceful", SHUTDOWN_GRACE_SECONDS="1")
    with api.client("faults") as client:
        quick = create(client, f"{images}/slow/0.5/red.png")
        slow = create(client, f"{images}/slow/6/red.png")
        wait_until(lambda: running_holder(api, slow) is not None, what="the claims")
        assert graceful.stop(signal.SIGTERM) == 0
        assert wait_for_status(client, quick, timeout=5)["status"] == "complete"
        rows = api.sql('SELECT status, "retryCount", "lockedBy" FROM "visionJobs" '
                     "WHERE id = ?", slow)  # fmt: skip
        assert rows == [("pending", 0, None)]
        assert api.sql('SELECT outcome FROM "visionJobSessions" WHERE "jobId" = ?',
                     slow) == [("released",)]  # fmt: skip
        successor = worker(api, "successor")
        try:
            assert wait_for_status(client, slow, timeout=40)["status"] == "complete"
        finally:
            successor.stop()
    assert "received SIGTERM" in graceful.log()


def test_heavy_parallel_api_writes_and_a_busy_worker_never_see_database_is_locked(
    tmp_path: Path, images: str
) -> None:
    # A lease long enough for renewals queued behind the other processes' writes: this test is
    # about locking, not about recovery.
    env = {**FAST, "LEASE_SECONDS": "15"}
    srv = start_server(tmp_path / "jobs.db", tmp_path / "server.log", **env)
    second_worker = start_process(["worker"], srv.db_path, tmp_path / "w2.log", **env)
    failures: list[str] = []

    def writer(i: int) -> int | None:
        with srv.client(f"heavy-{i % 8}") as client:
            r = client.post("/visionPipeline.createJob", json={
                "imageUrl": f"{images}/red.png", "analysisPurpose": "load",
                "outputFormat": "bullet_points"})  # fmt: skip
            if r.status_code != 200:
                failures.append(r.text)
                return None
            return int(r.json()["result"]["data"]["jobId"])

    try:
        with ThreadPoolExecutor(max_workers=48) as pool:
            ids = [i for i in pool.map(writer, range(400)) if i is not None]
        assert failures == []
        wait_until(
            lambda: query(srv.db_path, 'SELECT COUNT(*) FROM "visionJobs" WHERE status NOT IN '
                          "('complete', 'error')") == [(0,)],
            timeout=180, what="every job to finish",
        )  # fmt: skip
        errors = query(srv.db_path, 'SELECT id, "errorMessage" FROM "visionJobs" WHERE status '
                       "= 'error' LIMIT 5")  # fmt: skip
        assert errors == []
    finally:
        second_worker.stop()
        srv.stop()
    assert len(set(ids)) == 400
    assert query(srv.db_path, 'SELECT COUNT(*), COUNT(DISTINCT "jobId") FROM '
                 '"visionJobOutputs"') == [(400, 400)]  # fmt: skip
    logs = srv.log() + second_worker.log()
    assert "database is locked" not in logs and "Traceback" not in logs


def test_a_database_locked_for_a_while_delays_work_but_loses_nothing(
    tmp_path: Path, images: str
) -> None:
    srv = start_server(tmp_path / "jobs.db", tmp_path / "server.log", **FAST)
    try:
        with srv.client("locked") as client:
            before = create(client, f"{images}/red.png")
            wait_for_status(client, before)
            # Another process takes the write lock and holds it for 3 s.
            holder = sqlite3.connect(
                srv.db_path, timeout=30, isolation_level=None, check_same_thread=False
            )  # released by a timer thread
            holder.execute("BEGIN EXCLUSIVE")
            release = threading.Timer(3.0, lambda: holder.execute("ROLLBACK"))
            release.start()
            started = time.monotonic()
            during = create(client, f"{images}/red.png")  # waits for the lock, then succeeds
            assert time.monotonic() - started > 2
            release.join()
            holder.close()
            assert wait_for_status(client, during)["status"] == "complete"
            after = create(client, f"{images}/red.png")
            assert wait_for_status(client, after)["status"] == "complete"
    finally:
        srv.stop()
    assert "Traceback" not in srv.log()
