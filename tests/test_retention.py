"""Retention (storage.retention, pipeline.retention, `jobs prune`) on SQLite and PostgreSQL:
what goes, what stays, in bounded batches, one housekeeper at a time, and live progress
resuming over pruned events."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import anyio
import pytest

from pipeline.config import PipelineSettings
from pipeline.retention import LOCK_NAME, Housekeeping, Pruned
from rpc import cli
from rpc.procedures.live import Hub
from rpc.procedures.progress import job_progress
from rpc.wire import sse
from storage.driver import execute
from storage.engine import open_store
from storage.records import NewImage, NewJob
from storage.retention import Pace
from storage.store import JobStore
from storage.timeutil import utcnow
from tests.support import adhoc, png_bytes, rows, scalar

pytestmark = pytest.mark.anyio
USER, OTHER = 1, 2
DAY = timedelta(days=1)


def _job(user: int = USER, url: str = "https://example.com/a.png") -> NewJob:
    return NewJob(user, url, None, "brand", "social", 1.0, None, 3)


def _image(color: tuple[int, int, int]) -> NewImage:
    data = png_bytes(color)
    return NewImage(hashlib.sha256(data).hexdigest(), "image/png", 64, 48, data)


async def _write(store: JobStore, sql: str, *args: Any) -> Any:
    return await store.driver.write(execute(adhoc(sql), *args))


async def _age(store: JobStore, job_id: int, status: str, ago: timedelta) -> None:
    """Job ``job_id`` moved to ``status`` (with its trigger's event) ``ago`` ago, with one
    attempt row and, when complete, its outputs row."""
    when = utcnow() - ago
    await _write(store, 'UPDATE "visionJobs" SET "createdAt" = $2 WHERE id = $1', job_id,
                 when - timedelta(minutes=5))  # fmt: skip
    await _write(store, 'UPDATE "visionJobs" SET status = $2, progress = 50, "updatedAt" = $3 '
                 "WHERE id = $1", job_id, status, when)  # fmt: skip
    await _write(store, 'UPDATE "visionJobEvents" SET "createdAt" = $2 WHERE "jobId" = $1',
                 job_id, when)  # fmt: skip
    await _write(store, 'INSERT INTO "visionJobSessions" ("jobId", attempt, outcome, "endedAt", '
                 '"geminiInputTokens", "geminiOutputTokens", "geminiLatencyMs", '
                 '"deepseekInputTokens", "deepseekOutputTokens", "deepseekLatencyMs", "costUsd") '
                 "VALUES ($1, 1, 'complete', $2, 0, 0, 0, 0, 0, 0, 0)", job_id, when)  # fmt: skip
    if status == "complete":
        await _write(store, 'INSERT INTO "visionJobOutputs" ("jobId", "userId", "isTrainingData", '
                     '"createdAt") VALUES ($1, $2, TRUE, $3)', job_id, USER, when)  # fmt: skip


async def _count(store: JobStore, table: str, job_id: int) -> int:
    return int(await scalar(store, f'SELECT count(*) FROM "{table}" WHERE "jobId" = $1', job_id))


async def _job_ids(store: JobStore) -> set[int]:
    return {r[0] for r in await rows(store, 'SELECT id FROM "visionJobs"')}


async def test_prune_deletes_only_finished_jobs_older_than_the_cutoff(store: JobStore) -> None:
    old_done, old_failed, recent, old_pending, old_running = [
        await store.create_job(_job()) for _ in range(5)
    ]
    await _age(store, old_done, "complete", 3 * DAY)
    await _age(store, old_failed, "error", 3 * DAY)
    await _age(store, recent, "complete", timedelta(hours=1))
    await _age(store, old_pending, "pending", 3 * DAY)
    await _age(store, old_running, "gemini_analyzing", 3 * DAY)
    newest = await store.create_job(_job())

    cutoff = utcnow() - DAY
    assert await store.count_prunable_jobs(cutoff) == 2
    assert await store.prune_jobs(cutoff) == 2

    assert await _job_ids(store) == {recent, old_pending, old_running, newest}
    for gone in (old_done, old_failed):
        for table in ("visionJobEvents", "visionJobSessions", "visionJobOutputs"):
            assert await _count(store, table, gone) == 0, table
    assert await _count(store, "visionJobOutputs", recent) == 1
    assert await _count(store, "visionJobSessions", old_running) == 1
    assert await store.prune_jobs(cutoff) == 0


async def test_an_image_goes_with_the_last_job_of_its_user_that_uses_it(store: JobStore) -> None:
    image = _image((200, 10, 10))
    first = await store.create_job_with_image(_job(), image)
    second = await store.create_job_with_image(_job(), image)
    theirs = await store.create_job_with_image(_job(OTHER), image)  # the other user's own row
    await _age(store, first, "complete", 3 * DAY)
    await _age(store, second, "complete", timedelta(hours=1))
    await _age(store, theirs, "complete", timedelta(hours=1))
    await store.create_job(_job())  # the newest job (SQLite never deletes it)

    assert await store.prune_jobs(utcnow() - DAY) == 1
    assert await store.get_image(USER, image.sha256) is not None  # `second` still uses it

    assert await store.prune_jobs(utcnow() - timedelta(minutes=30)) == 2
    assert await store.get_image(USER, image.sha256) is None
    assert await store.get_image(OTHER, image.sha256) is None
    assert await scalar(store, 'SELECT count(*) FROM "visionImages"') == 0


async def test_events_of_old_finished_jobs_go_and_the_jobs_stay(store: JobStore) -> None:
    finished, running, recent, orphan = [await store.create_job(_job()) for _ in range(4)]
    await _age(store, finished, "complete", 2 * DAY)
    await _age(store, running, "deepseek_generating", 2 * DAY)
    await _age(store, recent, "error", timedelta(hours=2))
    await _age(store, orphan, "complete", 2 * DAY)
    await store.create_job(_job())  # the newest event stays on SQLite whatever its job
    # An operator's SQL (after the newest job: SQLite would give the deleted id out again).
    await _write(store, 'DELETE FROM "visionJobs" WHERE id = $1', orphan)
    before = {j: await _count(store, "visionJobEvents", j) for j in (running, recent)}

    pruned = await store.prune_events(utcnow() - DAY)

    assert pruned == 4  # created and completed, of `finished` and of `orphan`
    assert await _count(store, "visionJobEvents", finished) == 0
    assert await _count(store, "visionJobEvents", orphan) == 0
    assert await store.get_job_status(finished) is not None
    assert await _count(store, "visionJobOutputs", finished) == 1
    assert {j: await _count(store, "visionJobEvents", j) for j in (running, recent)} == before


async def test_small_batches_still_delete_everything_in_several_transactions(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await store.create_job(_job()) for _ in range(13)]
    for job_id in ids:
        await _age(store, job_id, "complete", 2 * DAY)
    await store.create_job(_job())
    transactions = 0
    write = store._write

    async def counting(work: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return await write(work)

    monkeypatch.setattr(store, "_write", counting)
    assert await store.prune_events(utcnow() - DAY, window=5) == 26
    assert transactions >= 5
    transactions = 0
    assert await store.prune_jobs(utcnow() - DAY, batch=4) == 13
    assert transactions >= 4  # 4 + 4 + 4 + 1, or more when a slow batch made the next smaller
    assert await _job_ids(store) == {max(ids) + 1}


def test_a_slow_batch_makes_the_next_smaller_and_quick_ones_grow_it_back() -> None:
    pace = Pace(100, smallest=10, target=0.05)
    assert pace.size == 100
    sizes = []
    for _ in range(5):
        pace.took(0.2)
        sizes.append(pace.size)
    assert sizes == [50, 25, 12, 10, 10]  # never below the smallest: progress whatever the load
    pace.took(0.04)  # under the target but not by half: kept
    assert pace.size == 10
    grown = []
    for _ in range(12):
        pace.took(0.001)
        grown.append(pace.size)
    assert grown[:3] == [12, 15, 18] and grown[-1] == 100  # back up, never past the largest
    assert Pace(4, smallest=10).smallest == 4  # a batch under the floor is its own floor


async def _vacuums(store: JobStore) -> dict[str, int]:
    """How many times each table was VACUUMed by hand (autovacuum's runs counted apart)."""
    found = await rows(store, "SELECT relname, vacuum_count FROM pg_stat_user_tables "
                       "WHERE relname LIKE 'vision%'")  # fmt: skip
    return {str(name): int(count) for name, count in found}


async def test_housekeeping_makes_the_pruned_space_reusable(store: JobStore) -> None:
    """PostgreSQL: the pruned tables are VACUUMed after a run that deleted rows, whatever the
    server's autovacuum setting. SQLite: nothing is done; the freed pages wait on the
    freelist for the next rows (the file neither grows nor shrinks)."""
    job_id = await store.create_job(_job())
    await _age(store, job_id, "complete", 40 * DAY)
    text = "".join(f"{i:08x}" for i in range(20_000))  # ~40 SQLite pages
    await _write(store, 'UPDATE "visionJobs" SET "deepseekOutput" = $2 WHERE id = $1', job_id, text)
    await store.create_job(_job())
    postgres = store.driver.dialect == "postgresql"
    before = await _vacuums(store) if postgres else {}
    pages = await scalar(store, "PRAGMA page_count") if not postgres else 0
    housekeeping = Housekeeping(store, PipelineSettings(retention_days=30))

    assert await housekeeping.run_once() == Pruned(events=2, jobs=1)

    if postgres:
        after = await _vacuums(store)
        assert {t: after[t] - before[t] for t in after} == dict.fromkeys(after, 1)
        assert await housekeeping.run_once() == Pruned()  # nothing deleted: no VACUUM
        assert await _vacuums(store) == after
    else:
        assert await scalar(store, "PRAGMA page_count") == pages
        assert await scalar(store, "PRAGMA freelist_count") >= 30
    await store.reclaim_space()  # on its own, outside any transaction: no error either way


async def test_one_housekeeper_at_a_time(database_url: str) -> None:
    first, second = (
        await open_store(database_url, create=True),
        await open_store(database_url),
    )
    try:
        job_id = await first.create_job(_job())
        await _age(first, job_id, "complete", 40 * DAY)
        await first.create_job(_job())
        settings = PipelineSettings(database_url=database_url, retention_days=30)
        async with first.driver.exclusive(LOCK_NAME) as mine:
            assert mine
            async with second.driver.exclusive(LOCK_NAME) as theirs:
                assert not theirs
            assert await Housekeeping(second, settings).run_once() is None  # skipped
            assert job_id in await _job_ids(second)
        assert await Housekeeping(second, settings).run_once() == Pruned(events=2, jobs=1)
        assert job_id not in await _job_ids(second)
    finally:
        await first.driver.close()
        await second.driver.close()


async def test_housekeeping_keeps_jobs_when_retention_days_is_zero(store: JobStore) -> None:
    job_id = await store.create_job(_job())
    await _age(store, job_id, "complete", 400 * DAY)
    await store.create_job(_job())
    settings = PipelineSettings(retention_days=0, event_retention_hours=0,
                                upload_retention_hours=0)  # fmt: skip
    assert not Housekeeping(store, settings).enabled
    assert await Housekeeping(store, PipelineSettings()).run_once() == Pruned(events=2, jobs=0)
    assert job_id in await _job_ids(store)


def test_jobs_prune_dry_run_changes_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fill() -> int:
        s = await open_store(database_url, create=True)
        try:
            job_id = await s.create_job(_job())
            await _age(s, job_id, "complete", 3 * DAY)
            await s.create_job(_job())
            return job_id
        finally:
            await s.driver.close()

    job_id = anyio.run(fill)
    monkeypatch.setenv("DATABASE_URL", database_url)
    _, vacuums = anyio.run(_state_of, database_url)
    assert cli.main(["jobs", "prune", "--older-than", "2d", "--dry-run"]) == 0
    assert (
        "1 finished jobs (complete, error) older than 2d would be deleted"
        in capsys.readouterr().out
    )
    assert cli.main(["jobs", "prune", "--older-than", "4d", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == 0
    assert anyio.run(_state_of, database_url) == ({job_id, job_id + 1}, vacuums)  # no VACUUM
    assert cli.main(["jobs", "prune", "--older-than", "48h"]) == 0
    assert capsys.readouterr().out.startswith("deleted 1 finished jobs")
    ids, vacuumed = anyio.run(_state_of, database_url)
    assert ids == {job_id + 1}
    assert vacuumed == {t: n + 1 for t, n in vacuums.items()}  # PostgreSQL: VACUUMed after
    with pytest.raises(SystemExit) as exit_:
        cli.main(["jobs", "prune", "--older-than", "2 weeks"])
    assert exit_.value.code == 2
    assert "is not an age" in capsys.readouterr().err


async def _state_of(database_url: str) -> tuple[set[int], dict[str, int]]:
    """The job ids, and (PostgreSQL) the tables' VACUUM counts."""
    s = await open_store(database_url)
    try:
        return await _job_ids(s), await _vacuums(s) if s.driver.dialect == "postgresql" else {}
    finally:
        await s.driver.close()


async def test_a_resume_over_pruned_events_gets_the_jobs_state(store: JobStore) -> None:
    job_id = await store.create_job(_job())
    await _age(store, job_id, "complete", 2 * DAY)
    await store.create_job(_job())
    last_seen = int(
        await scalar(store, 'SELECT min(id) FROM "visionJobEvents" WHERE "jobId" = $1', job_id)
    )  # fmt: skip  (the client saw only "pending")
    hub = Hub(store)

    async def stream(after: int | None) -> list[sse.Emitted]:
        return [e async for e in job_progress(hub, job_id, USER, after)]

    final = int(await scalar(store, 'SELECT max(id) FROM "visionJobEvents" WHERE "jobId" = $1',
                             job_id))  # fmt: skip
    assert await stream(final) == [sse.READY]  # the final event was seen: nothing more
    await store.prune_events(utcnow() - DAY)

    resumed = await stream(last_seen)
    assert resumed[0] is sse.READY and len(resumed) == 2
    assert isinstance(resumed[1], sse.Tracked) and resumed[1].id == "0"
    assert resumed[1].data["status"] == "complete"
    assert await stream(0) == [sse.READY]  # resumed from what it was sent: it has seen it


def test_ages_the_command_accepts() -> None:
    from rpc.commands.prune import parse_age

    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("90m") == timedelta(minutes=90)
    for bad in ("0d", "30", "d", "-1d", "1w", "1.5d"):
        with pytest.raises(Exception, match="not an age"):
            parse_age(bad)
