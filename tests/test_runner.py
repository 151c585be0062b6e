"""The worker-process runner (pipeline.runner): ``vision-pipeline worker`` runs jobs on uvloop
(or plain asyncio when uvloop does not import) and exits 0 after a SIGTERM; the heap trim runs
periodically on glibc and is a no-op elsewhere."""

from __future__ import annotations

import itertools
import platform
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from pipeline import runner
from pipeline.config import PipelineSettings
from pipeline.service import build_worker
from storage.engine import open_store
from storage.records import NewJob
from tests.support import Server, data_url, scalar, start_process


@pytest.fixture(autouse=True)
def fresh_trim_lookup() -> Iterator[None]:
    # malloc_trim() caches its answer; tests that fake the platform must not leak theirs.
    runner.malloc_trim.cache_clear()
    yield
    runner.malloc_trim.cache_clear()


def wait_for_log(proc: Server, needle: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while needle not in proc.log():
        if proc.process.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise AssertionError(f"no {needle!r} in the worker's log:\n{proc.log()}")
        time.sleep(0.05)


async def create_job(database_url: str) -> int:
    store = await open_store(database_url, create=False)
    try:
        user_id, _ = await store.user_seen("runner-test", None)
        job = NewJob(user_id, data_url((200, 30, 30)), "ctx", "a runner test",
                     "bullet_points", 1.0, None, 3)  # fmt: skip
        return await store.create_job(job)
    finally:
        await store.driver.close()


def job_status(proc: Server, job_id: int) -> str:
    return str(proc.sql('SELECT status FROM "visionJobs" WHERE id = ?', job_id)[0][0])


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_the_worker_command_runs_a_job_and_exits_cleanly_on_sigterm(
    loop: str, tmp_path: Path
) -> None:
    pythonpath = ""  # tests.support.server_env drops empty settings
    if loop == "asyncio":
        # A uvloop that fails to import, ahead of the installed one on sys.path.
        hidden = tmp_path / "no_uvloop"
        hidden.mkdir()
        (hidden / "uvloop.py").write_text("raise ImportError('hidden by the test')\n")
        pythonpath = str(hidden)
    worker = start_process(["worker"], tmp_path / "jobs.db", tmp_path / "worker.log",
                           PYTHONPATH=pythonpath)  # fmt: skip
    try:
        wait_for_log(worker, "started (concurrency")  # the tables exist from here on
        job_id = anyio.run(create_job, worker.database_url)
        deadline = time.monotonic() + 30
        while (status := job_status(worker, job_id)) not in ("complete", "error"):
            assert time.monotonic() < deadline, f"job {job_id} still {status}:\n{worker.log()}"
            time.sleep(0.05)
        assert status == "complete", worker.log()
    finally:
        code = worker.stop(signal.SIGTERM)
    log = worker.log()
    assert code == 0, log
    assert f"worker process on the {loop} event loop" in log
    assert "received SIGTERM: stopping" in log and "stopped" in log
    assert "Traceback" not in log


@pytest.mark.anyio
async def test_the_periodic_task_trims_the_heap_again_and_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[float] = []
    monkeypatch.setattr(runner, "malloc_trim", lambda: lambda: calls.append(time.monotonic()))
    with anyio.move_on_after(0.5):
        await runner.trim_memory_periodically(0.05)
    assert 3 <= len(calls) <= 10
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert min(gaps) >= 0.04  # one per interval, not a burst


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["macOS", "musl"])
async def test_without_glibc_there_is_no_trim_and_the_task_ends_at_once(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "macOS":
        monkeypatch.setattr(sys, "platform", "darwin")
    else:
        monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("", ""))
    assert runner.malloc_trim() is None
    with anyio.fail_after(1):
        await runner.trim_memory_periodically(3600)


def test_on_glibc_the_trim_is_the_real_malloc_trim() -> None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("not a glibc system")
    trim = runner.malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)  # malloc_trim's own answer: 1 when memory went back to the OS


@pytest.mark.anyio
async def test_run_worker_trims_while_the_worker_runs_and_stops_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    monkeypatch.setattr(runner, "malloc_trim", lambda: lambda: calls.append(time.monotonic()))
    settings = PipelineSettings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}",
                                providers="offline", poll_interval_ms=50)  # fmt: skip
    store = await open_store(settings.database_url, create=True)
    worker = build_worker(store, settings)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: runner.run_worker(store, worker, trim_interval=0.02))
            while len(calls) < 3:
                await anyio.sleep(0.01)
            assert worker.state.running
            worker.stop()
        # run_worker returned: the worker stopped, the trim task ended with it.
        assert not worker.state.running and worker.stopped.is_set()
        seen = len(calls)
        await anyio.sleep(0.1)
        assert len(calls) == seen
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await scalar(store, "SELECT 1")  # and the store's driver is closed
