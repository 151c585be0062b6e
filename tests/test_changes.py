"""The change feed: every job change reaches subscribers in id order, each once, from this
process at once and from other processes (SQLite: the change counter; PostgreSQL: NOTIFY),
and an event that commits after a higher id is not skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

import storage.changes as changes
from storage.changes import JobEvent
from storage.engine import open_store
from storage.records import NewJob
from storage.store import JobStore
from storage.timeutil import utcnow

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JobStore]:
    s = await open_store(database_url, create=True)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(s.feed.run)
            yield s
            tg.cancel_scope.cancel()
    finally:
        await s.driver.close()


def collect(store: JobStore) -> list[JobEvent]:
    seen: list[JobEvent] = []
    store.feed.subscribe(seen.extend)
    return seen


async def until(predicate: Any, timeout: float = 5) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)


async def new_job(store: JobStore, user_id: int) -> int:
    return await store.create_job(
        NewJob(user_id, "http://x/y.png", None, "p", "bullet_points", 1.0, None, 3)
    )


async def test_changes_made_here_reach_subscribers_in_order(store: JobStore) -> None:
    seen = collect(store)
    user_id, _ = await store.user_seen("feed", None)
    job_id = await new_job(store, user_id)
    assert await store.cancel_job(job_id) == "cancelled"
    await until(lambda: len(seen) == 2)
    assert [(e.job_id, e.status) for e in seen] == [(job_id, "pending"), (job_id, "error")]
    assert seen[0].id < seen[1].id and seen[1].error_message == "Cancelled by an operator"


async def test_changes_made_by_another_process_reach_subscribers(
    store: JobStore, database_url: str
) -> None:
    seen = collect(store)
    other = await open_store(database_url, create=True)  # another driver: as another process
    try:
        user_id, _ = await other.user_seen("elsewhere", None)
        job_id = await new_job(other, user_id)
    finally:
        await other.driver.close()
    await until(lambda: any(e.job_id == job_id for e in seen))


async def test_an_event_committed_after_a_higher_id_is_not_skipped(
    store: JobStore, database_url: str
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite commits one writer at a time, in id order")
    seen = collect(store)
    user_id, _ = await store.user_seen("gap", None)
    slow = await asyncpg.connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        now = utcnow()
        # Takes the lower event id, then stays uncommitted while a later job commits.
        early = await slow.fetchval(
            """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose", "outputFormat",
                "creativityLevel", status, progress, "retryCount", "maxRetries", "createdAt",
                "updatedAt", "runAfter", attempt, "cancelRequested", "costUsd")
            VALUES ($1, 'http://x/y.png', 'p', 'bullet_points', 1, 'pending', 0, 0, 3, $2, $2,
                $2, 0, FALSE, 0) RETURNING id""", user_id, now)  # fmt: skip
        later = await new_job(store, user_id)
        await anyio.sleep(0.3)
        assert [e.job_id for e in seen] == []  # held back at the gap, not skipped past
        await tx.commit()
    finally:
        await slow.close()
    await until(lambda: len(seen) == 2)
    assert [e.job_id for e in seen] == [early, later]


async def test_a_gap_left_by_a_rollback_is_given_up_on(
    store: JobStore, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite reuses the ids of rolled-back rows: no gaps")
    monkeypatch.setattr(changes, "GAP_WAIT", 0.3)
    seen = collect(store)
    user_id, _ = await store.user_seen("rollback", None)
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT nextval(pg_get_serial_sequence('\"visionJobEvents\"', 'id'))")
        await tx.rollback()
    finally:
        await conn.close()
    job_id = await new_job(store, user_id)
    await until(lambda: [e.job_id for e in seen] == [job_id], timeout=5)


async def test_another_processs_commit_wakes_the_feed_without_waiting_for_a_poll(
    store: JobStore, database_url: str
) -> None:
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL wakes listeners with NOTIFY")
    store.feed.poll_seconds = 60.0  # only the datagram from the other writer can wake it now
    await anyio.sleep(0.2)  # let the feed settle into its long wait
    seen = collect(store)
    other = await open_store(database_url, create=True)  # another driver, as another process
    try:
        user_id, _ = await other.user_seen("datagram", None)
        job_id = await new_job(other, user_id)
    finally:
        await other.driver.close()
    await until(lambda: any(e.job_id == job_id for e in seen), timeout=2)


async def test_a_worker_only_feed_wakes_on_claimable_jobs_without_reading_events(
    database_url: str,
) -> None:
    watcher = await open_store(database_url, create=True)  # as a worker-only process
    other = await open_store(database_url, create=True)  # as the API process
    reads: list[str] = []
    real_read = watcher.driver.read

    async def counted(statement: Any) -> Any:
        reads.append(statement.query.name)
        return await real_read(statement)

    watcher.driver.read = counted  # type: ignore[method-assign]
    woken: list[float] = []
    watcher.feed.on_pending(lambda: woken.append(anyio.current_time()))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(lambda **kw: watcher.feed.run(events=False, **kw))
            await anyio.sleep(0.2)  # the LISTEN connection's catch-up wake has happened
            woken.clear()
            user_id, _ = await other.user_seen("worker-only", None)
            job_id = await new_job(other, user_id)
            await until(lambda: bool(woken), timeout=2)
            woken.clear()
            assert await other.cancel_job(job_id) == "cancelled"  # a change, not claimable
            await anyio.sleep(0.3)
            tg.cancel_scope.cancel()
    finally:
        await watcher.driver.close()
        await other.driver.close()
    if watcher.dialect == "postgresql":
        assert woken == []
        assert "events_after" not in reads  # told by the NOTIFY payload alone
        with pytest.raises(RuntimeError):
            watcher.feed.subscribe(lambda events: None)
    else:  # SQLite reads its events (a local read): claimable ones wake, others don't
        assert woken == [] and "events_after" in reads
