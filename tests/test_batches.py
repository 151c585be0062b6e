"""Writes of the same moment share one transaction and one statement per kind of row, and a
batch changes exactly what the same writes made one by one would change."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta

import anyio
import pytest

from storage.coalesce import Coalescer
from storage.driver import DatabaseUnavailable
from storage.records import AttemptRecord, ClaimedJob, NewJob, Outputs, StageUsage
from storage.store import JobStore
from tests.support import rows, scalar

pytestmark = pytest.mark.anyio
LEASE = timedelta(seconds=30)


async def _waiting_jobs(store: JobStore, user: str, count: int) -> int:
    """``count`` pending jobs of a new user; returns the user's id."""
    user_id, _ = await store.user_seen(user, None)
    new = NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
    for _ in range(count):
        await store.create_job(new)
    return user_id


def _outputs(n: int) -> Outputs:
    return Outputs(f'["#{n:06x}"]', None, f"palette {n}", "calm", "warm", "centred",
                   "bold", "retail", "everyone", f'[{{"title": "t{n}"}}]')  # fmt: skip


# -- the coalescer ----------------------------------------------------------------------------


async def test_calls_of_the_same_moment_share_one_batch_in_order() -> None:
    seen: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        seen.append(list(items))
        await anyio.sleep(0.01)
        return [i * 2 for i in items]

    batcher: Coalescer[int, int] = Coalescer(double)
    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await batcher.submit(i)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(call, i)
    assert results == {i: i * 2 for i in range(10)}
    assert seen == [list(range(10))]
    assert await batcher.submit(7) == 14  # alone: a batch of one, at once
    assert seen[-1] == [7]


async def test_a_batch_is_capped() -> None:
    sizes: list[int] = []

    async def echo(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher: Coalescer[int, int] = Coalescer(echo, max_batch=4)
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(batcher.submit, i)
    assert sum(sizes) == 10 and max(sizes) == 4


async def test_one_bad_item_fails_only_its_own_caller() -> None:
    async def picky(items: list[int]) -> Sequence[int]:
        if 3 in items:
            raise ValueError("three is not allowed")
        return items

    batcher: Coalescer[int, int] = Coalescer(picky)
    outcomes: dict[int, object] = {}

    async def call(i: int) -> None:
        try:
            outcomes[i] = await batcher.submit(i)
        except ValueError as exc:
            outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(call, i)
    assert isinstance(outcomes.pop(3), ValueError)
    assert outcomes == {0: 0, 1: 1, 2: 2, 4: 4, 5: 5}


async def test_an_unavailable_database_fails_the_whole_batch_without_retrying_each() -> None:
    calls = 0

    async def away(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        raise DatabaseUnavailable("down")

    batcher: Coalescer[int, int] = Coalescer(away)
    failures = 0

    async def call(i: int) -> None:
        nonlocal failures
        try:
            await batcher.submit(i)
        except DatabaseUnavailable:
            failures += 1

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(call, i)
    assert failures == 5 and calls == 1


async def test_a_cancelled_leader_still_writes_the_others_items() -> None:
    written: list[int] = []
    started = anyio.Event()

    async def slow(items: list[int]) -> list[int]:
        started.set()
        await anyio.sleep(0.05)
        written.extend(items)
        return items

    batcher: Coalescer[int, int] = Coalescer(slow)
    results: dict[int, int] = {}

    async def follower(i: int) -> None:
        results[i] = await batcher.submit(i)

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await batcher.submit(0)  # the first caller of the moment leads the batch

    with anyio.fail_after(5):  # an unshielded leader would strand its followers
        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            tg.start_soon(follower, 1)
            tg.start_soon(follower, 2)
            await started.wait()
            leader_scope.cancel()
    assert sorted(written) == [0, 1, 2]
    assert results == {1: 1, 2: 2}


# -- the store's batched writes ---------------------------------------------------------------


async def test_creates_of_the_same_moment_share_an_insert_and_get_their_own_ids(
    store: JobStore,
) -> None:
    user_id, _ = await store.user_seen("u1", None)
    ids: dict[int, int] = {}

    async def create(n: int) -> None:
        new = NewJob(user_id, f"http://img/{n}.png", None, f"purpose {n}", "bullet_points",
                     n / 100, None, 1 + n % 5)  # fmt: skip
        ids[n] = await store.create_job(new)

    before = store._creates.batches
    async with anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(create, n)
    assert store._creates.batches - before < 30  # shared, not one statement each
    assert len(set(ids.values())) == 30
    for n, job_id in ids.items():
        url = await scalar(store, f'SELECT "imageUrl" FROM "visionJobs" WHERE id = {job_id}')
        retries = await scalar(store, f'SELECT "maxRetries" FROM "visionJobs" WHERE id = {job_id}')
        assert (url, retries) == (f"http://img/{n}.png", 1 + n % 5)
    pending = await scalar(store, "SELECT COUNT(*) FROM \"visionJobs\" WHERE status = 'pending'")
    assert pending == 30


async def test_a_batch_of_stage_writes_keeps_every_fence(store: JobStore) -> None:
    user_id = await _waiting_jobs(store, "u1", 12)
    mine = await store.claim_jobs("w1", 8, LEASE)
    theirs = await store.claim_jobs("w2", 4, LEASE)
    # A stale copy of one of w2's jobs, as a worker that lost its lease would hold it.
    stale = dataclasses.replace(theirs[0], worker_id="w1")
    await store.cancel_job(mine[7].id)  # running: flagged, must not complete

    record = AttemptRecord("complete", "deepseek", None, StageUsage("g", 10, 5, 7),
                           StageUsage("d", 20, 9, 8), 0.25)  # fmt: skip
    results: dict[str, object] = {}

    async def vision(key: str, job: ClaimedJob) -> None:
        results[key] = await store.store_vision_output(job, f'{{"job": {job.id}}}')

    async def complete(key: str, job: ClaimedJob) -> None:
        content = f'[{{"title": "job {job.id}"}}]'
        results[key] = await store.complete_job(job, content, _outputs(job.id), record)

    before = store._stage_writes.batches
    async with anyio.create_task_group() as tg:
        for i, job in enumerate(mine[:4]):
            tg.start_soon(vision, f"v{i}", job)
        for i, job in enumerate(mine[4:]):
            tg.start_soon(complete, f"c{i}", job)
        tg.start_soon(complete, "stale", stale)
        tg.start_soon(vision, "stale-v", stale)
    assert store._stage_writes.batches - before == 1

    assert results == {"v0": False, "v1": False, "v2": False, "v3": False,
                       "c0": True, "c1": True, "c2": True, "c3": False,
                       "stale": False, "stale-v": None}  # fmt: skip
    for job in mine[:4]:
        row = await _row(store, job.id, 'status, "geminOutput"')
        assert row == ("deepseek_generating", f'{{"job": {job.id}}}')
    for job in mine[4:7]:
        row = await _row(store, job.id, 'status, "deepseekOutput", "lockedBy", "costUsd"')
        assert row == ("complete", f'[{{"title": "job {job.id}"}}]', None, 0.25)
        out = await _row(store, job.id, 'mood, colors_description, "userId"', "visionJobOutputs",
                         "jobId")  # fmt: skip
        assert out == ("calm", f"palette {job.id}", user_id)
        attempt = await _row(store, job.id, 'outcome, "workerId", "geminiModel", '
                             '"deepseekOutputTokens", "costUsd", "startedAt" IS NOT NULL',
                             "visionJobSessions", "jobId")  # fmt: skip
        assert attempt == ("complete", "w1", "g", 9, 0.25, True)
    assert await _row(store, mine[7].id, "status") == ("gemini_analyzing",)
    assert await _row(store, theirs[0].id, "status") == ("gemini_analyzing",)
    assert await scalar(store, 'SELECT COUNT(*) FROM "visionJobOutputs"') == 3
    assert await scalar(store, 'SELECT COUNT(*) FROM "visionJobSessions"') == 3


async def _row(
    store: JobStore, job_id: int, columns: str, table: str = "visionJobs", key: str = "id"
) -> tuple[object, ...]:
    values = []
    for column in columns.split(", "):
        values.append(
            await scalar(store, f'SELECT {column} FROM "{table}" WHERE "{key}" = {job_id}')
        )
    return tuple(values)


async def test_a_batch_of_completions_alone_writes_jobs_outputs_and_attempts(
    store: JobStore,
) -> None:
    # On PostgreSQL this batch is one statement (data-modifying CTEs); on SQLite three.
    await _waiting_jobs(store, "u2", 4)
    jobs = await store.claim_jobs("w1", 4, LEASE)
    stale = dataclasses.replace(jobs[3], attempt=jobs[3].attempt - 1)
    record = AttemptRecord("complete", "deepseek", None, StageUsage("g", 1, 2, 3),
                           StageUsage("d", 4, 5, 6), 0.5)  # fmt: skip
    done: dict[int, bool] = {}

    async def complete(key: int, job: ClaimedJob) -> None:
        done[key] = await store.complete_job(job, f"[{key}]", _outputs(key), record)

    async with anyio.create_task_group() as tg:
        for key, job in enumerate([*jobs[:3], stale]):
            tg.start_soon(complete, key, job)
    assert done == {0: True, 1: True, 2: True, 3: False}
    for key, job in enumerate(jobs[:3]):
        assert await _row(store, job.id, 'status, "deepseekOutput"') == ("complete", f"[{key}]")
        assert await _row(store, job.id, "colors_description", "visionJobOutputs", "jobId") == (
            f"palette {key}",
        )
        assert await _row(store, job.id, 'attempt, "deepseekLatencyMs", "startedAt" IS NOT NULL',
                          "visionJobSessions", "jobId") == (job.attempt, 6, True)  # fmt: skip
    assert await _row(store, jobs[3].id, "status") == ("gemini_analyzing",)
    assert await scalar(store, 'SELECT COUNT(*) FROM "visionJobSessions"') == 3


async def test_a_completion_refills_its_workers_slots_in_the_same_statement(
    store: JobStore,
) -> None:
    await _waiting_jobs(store, "u3", 8)
    running = await store.claim_jobs("w1", 3, LEASE)
    got: dict[int, tuple[bool, tuple[ClaimedJob, ...]]] = {}
    record = AttemptRecord("complete", "deepseek")

    async def complete(job: ClaimedJob, claim: int) -> None:
        got[job.id] = await store.complete_and_claim(
            job, "[]", _outputs(job.id), record, claim=claim, lease=LEASE
        )

    async with anyio.create_task_group() as tg:
        for index, job in enumerate(running):
            tg.start_soon(complete, job, 2 if index == 0 else 1)  # one slot was free already
    assert all(done for done, _ in got.values())
    statuses = await rows(store, 'SELECT id, status, "lockedBy" FROM "visionJobs" ORDER BY id')
    if store.dialect == "postgresql":
        shares = [[j.id for j in got[job.id][1]] for job in running]
        assert shares == [[4, 5], [6], [7]]  # the oldest waiting, in order, as each asked
        claimed = [j for job in running for j in got[job.id][1]]
        assert all(j.worker_id == "w1" and j.attempt == 1 for j in claimed)
        assert statuses == [
            *[(i, "complete", None) for i in (1, 2, 3)],
            *[(i, "gemini_analyzing", "w1") for i in (4, 5, 6, 7)],
            (8, "pending", None),
        ]
    else:  # SQLite claims in its own statement: the worker's claim loop does it
        assert [claimed for _, claimed in got.values()] == [(), (), ()]
        assert [s[1] for s in statuses] == ["complete"] * 3 + ["pending"] * 5
    assert await scalar(store, 'SELECT COUNT(*) FROM "visionJobSessions"') == 3


async def test_a_completion_claims_nothing_when_the_worker_wants_nothing(
    store: JobStore,
) -> None:
    await _waiting_jobs(store, "u4", 3)
    [job] = await store.claim_jobs("w1", 1, LEASE)
    assert await store.complete_and_claim(
        job, "[]", _outputs(1), AttemptRecord("complete", "x"), claim=0, lease=LEASE
    ) == (True, ())
    assert await scalar(store, "SELECT COUNT(*) FROM \"visionJobs\" WHERE status = 'pending'") == 2
