"""/healthz (alive) and /readyz (a database round trip, and a recent worker heartbeat where a
worker runs): in process on SQLite, through real servers on both backends, and (marked
restarts_postgres) while PostgreSQL is stopped and after it is back."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rpc.config import Settings
from storage.driver import DatabaseUnavailable
from tests.inprocess import running_app
from tests.support import backend_server, start_server


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", providers="offline", **kw)


@pytest.mark.anyio
async def test_healthz_is_alive_and_readyz_is_ready(tmp_path: Path) -> None:
    async with running_app(_settings(tmp_path)) as (_, client):
        r = await client.get("/healthz")
        assert (r.status_code, r.json()) == (200, {"ok": True})
        r = await client.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"ok": True})


@pytest.mark.anyio
async def test_readyz_is_503_while_the_database_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_app(_settings(tmp_path)) as (app, client):
        store = app.state.services.store
        real_read = store.driver.read

        async def unreadable(statement: Any) -> Any:
            raise DatabaseUnavailable("disk I/O error")

        monkeypatch.setattr(store.driver, "read", unreadable)
        r = await client.get("/readyz")
        assert (r.status_code, r.json()) == (503, {"ok": False, "reason": "database unreachable"})
        assert (await client.get("/healthz")).status_code == 200  # alive all the same
        # /metrics still answers the process's own numbers without the queue's.
        assert (await client.get("/metrics")).status_code == 200
        monkeypatch.setattr(store.driver, "read", real_read)
        assert (await client.get("/readyz")).status_code == 200


@pytest.mark.anyio
async def test_readyz_needs_a_running_worker_with_a_recent_heartbeat(tmp_path: Path) -> None:
    settings = _settings(tmp_path, lease_seconds=300)  # the first heartbeat in 100 s
    async with running_app(settings, run_worker=True) as (app, c):
        worker = app.state.services.worker
        assert (await c.get("/readyz")).status_code == 200
        worker.state.last_heartbeat = datetime.now(UTC) - timedelta(seconds=301)
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["reason"] == "worker heartbeat 301 s old"
        worker.state.last_heartbeat = datetime.now(UTC)
        assert (await c.get("/readyz")).status_code == 200
        worker.state.running = False
        r = await c.get("/readyz")
        assert (r.status_code, r.json()["reason"]) == (503, "worker not running")
        worker.state.running = True


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_served_app_answers_the_probes(backend: str, tmp_path: Path) -> None:
    with backend_server(backend, tmp_path) as srv:
        assert httpx.get(srv.base + "/readyz").json() == {"ok": True}
        r = httpx.get(srv.base + "/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        assert "vision_queue_jobs" in r.text


def _pg_ctl(action: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action,
                    *(["-m", "fast"] if action == "stop" else [])],
                   check=True, capture_output=True, timeout=60)  # fmt: skip


@pytest.mark.restarts_postgres
def test_readyz_is_503_while_postgresql_is_stopped_and_200_after(
    pg_url: str, tmp_path: Path
) -> None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").exists():
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster to restart it")
    srv = start_server(tmp_path / "x.db", tmp_path / "server.log", DATABASE_URL=pg_url)
    try:
        assert httpx.get(srv.base + "/readyz", timeout=10).status_code == 200
        _pg_ctl("stop")
        try:
            r = httpx.get(srv.base + "/readyz", timeout=10)
            assert (r.status_code, r.json()) == (
                503, {"ok": False, "reason": "database unreachable"},
            )  # fmt: skip
            assert httpx.get(srv.base + "/healthz", timeout=10).status_code == 200
        finally:
            _pg_ctl("start")
        deadline = time.monotonic() + 60
        while httpx.get(srv.base + "/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "still not ready a minute after the restart"
            time.sleep(0.5)
    finally:
        srv.stop()
