"""PostgreSQL for scale: the same schema, NOTIFY wake-ups, many API and worker processes on one
database with a worker killed mid-run, and a PostgreSQL restart in the middle of work."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from storage.schema import push
from storage.urls import parse_database_url
from tests.support import (
    create_pg_database,
    drop_pg_database,
    sql,
    start_process,
    start_server,
    wait_for_status,
)

pytestmark = pytest.mark.postgres
FAST = {"LEASE_SECONDS": "2", "POLL_INTERVAL_MS": "200", "RETRY_DELAY_MS": "20"}


@pytest.fixture
def pg(pg_url: str) -> Iterator[str]:
    """A fresh database per test (the session one is only used to know PostgreSQL is up)."""
    url = create_pg_database("vp_pg")
    try:
        yield url
    finally:
        drop_pg_database(url)


# alembic_version: Alembic's bookkeeping (storage.migrate), not one of the models' tables.
def _columns(url: str) -> list[tuple[Any, ...]]:
    return sql(url, """SELECT table_name, column_name, data_type, is_nullable
        FROM information_schema.columns WHERE table_schema = 'public'
            AND table_name != 'alembic_version'
        ORDER BY table_name, column_name""")  # fmt: skip


def _indexes(url: str) -> list[tuple[Any, ...]]:
    return sql(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
               "AND tablename != 'alembic_version' ORDER BY indexname")  # fmt: skip


def test_schema_sql_and_db_push_give_the_same_postgresql_tables(pg: str) -> None:
    from_file = create_pg_database("vp_schema")
    try:
        text = (Path(__file__).resolve().parent.parent / "schema.sql").read_text()
        section = text.split("-- ==== PostgreSQL ====")[1]

        async def apply() -> None:
            import asyncpg

            conn = await asyncpg.connect(from_file)
            try:
                await conn.execute(section)
            finally:
                await conn.close()

        anyio.run(apply)
        anyio.run(push, parse_database_url(pg))
        assert _columns(from_file) == _columns(pg)
        assert _indexes(from_file) == _indexes(pg)
        triggers = sql(pg, "SELECT DISTINCT trigger_name FROM information_schema.triggers "
                       "ORDER BY trigger_name")  # fmt: skip
        assert triggers == [("trg_job_changed",), ("trg_job_created",), ("trg_job_deleted",)]
        claim_index = [d for n, d in _indexes(pg) if n == "idx_claim"]
        assert claim_index and "WHERE" in claim_index[0] and "pending" in claim_index[0]
    finally:
        drop_pg_database(from_file)


def create(client: httpx.Client, image_url: str) -> int:
    body = {"imageUrl": image_url, "analysisPurpose": "scale", "outputFormat": "bullet_points"}
    r = client.post("/visionPipeline.createJob", json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


def test_a_worker_in_another_process_is_woken_by_notify(
    pg: str, tmp_path: Path, images: str
) -> None:
    api = start_server(tmp_path / "x.db", tmp_path / "api.log", "--no-worker", DATABASE_URL=pg)
    # A minute between fallback polls: only NOTIFY can wake this worker in time.
    worker = start_process(["worker"], tmp_path / "x.db", tmp_path / "worker.log",
                           DATABASE_URL=pg, POLL_INTERVAL_MS="60000")  # fmt: skip
    try:
        time.sleep(1.5)  # the worker is up and idle
        with api.client("notify") as client:
            job_id = create(client, f"{images}/red.png")
            assert wait_for_status(client, job_id, timeout=20)["status"] == "complete"
    finally:
        worker.stop()
        api.stop()


def test_many_api_and_worker_processes_complete_1000_jobs_exactly_once_despite_a_kill(
    pg: str, tmp_path: Path, images: str
) -> None:
    apis = [start_server(tmp_path / "x.db", tmp_path / f"api{i}.log", "--no-worker",
                         DATABASE_URL=pg, **FAST) for i in range(2)]  # fmt: skip
    workers = [start_process(["worker"], tmp_path / "x.db", tmp_path / f"w{i}.log",
                             DATABASE_URL=pg, WORKER_CONCURRENCY="8", **FAST)
               for i in range(4)]  # fmt: skip
    try:

        def one(i: int) -> int:
            with apis[i % 2].client(f"scale-{i % 10}") as client:
                return create(client, f"{images}/red.png")

        with ThreadPoolExecutor(max_workers=32) as pool:
            futures = [pool.submit(one, i) for i in range(1000)]
            time.sleep(0.5)
            workers[0].process.send_signal(signal.SIGKILL)  # mid-run
            ids = [f.result() for f in futures]
        assert len(set(ids)) == 1000
        deadline = time.monotonic() + 180
        while sql(pg, "SELECT COUNT(*) FROM \"visionJobs\" WHERE status NOT IN "
                  "('complete', 'error')") != [(0,)]:  # fmt: skip
            assert time.monotonic() < deadline, "jobs stuck"
            time.sleep(0.2)
    finally:
        for process in workers + apis:
            process.stop()
    assert sql(pg, 'SELECT status, COUNT(*) FROM "visionJobs" GROUP BY status') == [
        ("complete", 1000)
    ]
    assert sql(pg, 'SELECT COUNT(*), COUNT(DISTINCT "jobId") FROM "visionJobOutputs"') == [
        (1000, 1000)
    ]
    # Every provider call of a completed attempt is one 'complete' session row: one per job.
    assert sql(
        pg,
        """SELECT COUNT(*) FROM (SELECT "jobId" FROM "visionJobSessions"
        WHERE outcome = 'complete' GROUP BY "jobId" HAVING COUNT(*) > 1) AS twice""",
    ) == [(0,)]
    assert sql(pg, """SELECT COUNT(*) FROM "visionJobSessions" WHERE outcome = 'complete'
        """) == [(1000,)]  # fmt: skip


def _pg_ctl(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action,
                    *(["-m", "fast"] if action == "stop" else [])],
                   check=True, capture_output=True, timeout=60)  # fmt: skip


@pytest.mark.restarts_postgres
def test_a_postgresql_restart_mid_run_loses_no_job(pg: str, tmp_path: Path, images: str) -> None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").exists():
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster to restart it")
    srv = start_server(tmp_path / "x.db", tmp_path / "server.log", DATABASE_URL=pg, **FAST)
    try:
        with srv.client("restart") as client:
            before = [create(client, f"{images}/slow/1/red.png") for _ in range(10)]
            _pg_ctl("stop")
            try:
                r = client.get("/visionPipeline.getJobStatus",
                               params={"input": f'{{"jobId":{before[0]}}}'})  # fmt: skip
                assert r.status_code == 500
                error = r.json()["error"]
                assert error["data"]["code"] == "INTERNAL_SERVER_ERROR"
                assert "database is unavailable" in error["message"]
                time.sleep(2)
            finally:
                _pg_ctl("start")
            deadline = time.monotonic() + 60
            while True:  # the API recovers by itself
                try:
                    after = create(client, f"{images}/red.png")
                    break
                except AssertionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.5)
            for job_id in [*before, after]:
                assert wait_for_status(client, job_id, timeout=90)["status"] == "complete"
    finally:
        srv.stop()
    assert sql(pg, 'SELECT COUNT(*), COUNT(DISTINCT "jobId") FROM "visionJobOutputs"') == [(11, 11)]
