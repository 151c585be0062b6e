"""The queue's storage promises: exclusive claims, fenced writes, one outputs row per job,
retries that wait and resume at the failed stage, and transactions that fail alone."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from pipeline.policy import lease_expired
from storage.batches import insert_jobs
from storage.driver import Work
from storage.engine import open_store
from storage.records import AttemptRecord, NewJob, Outputs
from storage.store import JobStore
from storage.timeutil import utcnow
from tests.support import scalar

pytestmark = pytest.mark.anyio
LEASE = timedelta(seconds=30)
OUTPUTS = Outputs(*([None] * 9), content_pieces="[]")  # type: ignore[arg-type]


async def _jobs(store: JobStore, n: int, user: str = "u1") -> list[int]:
    user_id, _ = await store.user_seen(user, None)
    new = NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
    return [await store.create_job(new) for _ in range(n)]


async def _count(store: JobStore, sql: str) -> int:
    return int(await scalar(store, sql))


async def test_concurrent_claimers_never_take_the_same_job(database_url: str) -> None:
    url = database_url
    # Three drivers: as three processes.
    stores = [await open_store(url, create=True) for _ in range(3)]
    try:
        await _jobs(stores[0], 150)
        taken: list[int] = []

        async def claimer(store: JobStore, name: str) -> None:
            while True:
                claimed = await store.claim_jobs(name, 7, LEASE)
                if not claimed:
                    return
                taken.extend(job.id for job in claimed)

        async with anyio.create_task_group() as tg:
            for i, s in enumerate(stores):
                tg.start_soon(claimer, s, f"w{i}")
        assert sorted(taken) == sorted(set(taken))
        assert len(taken) == 150
    finally:
        for s in stores:
            await s.driver.close()


async def test_a_stale_worker_cannot_complete_a_job_taken_over_by_another(store: JobStore) -> None:
    [job_id] = await _jobs(store, 1)
    [stale] = await store.claim_jobs("old", 1, timedelta(seconds=-1))  # lease already expired
    reaped = await store.reap_expired(lease_expired)
    assert [r.id for r in reaped] == [job_id]
    [fresh] = await store.claim_jobs("new", 1, LEASE)
    assert fresh.attempt == stale.attempt + 1
    record = AttemptRecord("complete", "deepseek")
    assert await store.store_vision_output(stale, "{}") is None
    assert await store.complete_job(stale, "[]", OUTPUTS, record) is False
    assert await store.end_attempt(stale, AttemptRecord("error", "gemini", "x")) is False
    assert await store.complete_job(fresh, "[]", OUTPUTS, record) is True
    assert await store.complete_job(fresh, "[]", OUTPUTS, record) is False
    assert await _count(store, 'SELECT COUNT(*) FROM "visionJobOutputs"') == 1
    status = await store.get_job_status(job_id)
    assert status is not None and status.status == "complete" and status.retry_count == 1
    outcomes = await _count(
        store,
        """SELECT COUNT(*) FROM "visionJobSessions" WHERE outcome IN
                               ('abandoned', 'complete')""",
    )
    assert outcomes == 2


async def test_a_retry_waits_for_its_time_and_resumes_at_the_failed_stage(store: JobStore) -> None:
    [job_id] = await _jobs(store, 1)
    [job] = await store.claim_jobs("w", 1, LEASE)
    assert job.stage == "gemini_analyzing"
    assert await store.store_vision_output(job, '{"colors": {}}') is False
    later = utcnow() + timedelta(seconds=0.3)
    assert await store.end_attempt(job, AttemptRecord("retry", "deepseek", "boom"), retry_at=later)
    status = await store.get_job_status(job_id)
    assert status is not None
    assert (status.status, status.retry_count, status.error_stage) == ("pending", 1, "deepseek")
    assert await store.claim_jobs("w", 1, LEASE) == []
    due = await store.next_run_after()
    assert due is not None and due >= later - timedelta(milliseconds=1)
    await anyio.sleep(0.35)
    [again] = await store.claim_jobs("w", 1, LEASE)
    assert again.stage == "deepseek_generating"
    assert again.gemin_output == '{"colors": {}}'


async def test_a_released_job_is_not_counted_as_a_failure(store: JobStore) -> None:
    [job_id] = await _jobs(store, 1)
    [job] = await store.claim_jobs("w", 1, LEASE)
    assert await store.end_attempt(job, AttemptRecord("released", "gemini", "shutdown"))
    status = await store.get_job_status(job_id)
    assert status is not None and (status.status, status.retry_count) == ("pending", 0)
    assert len(await store.claim_jobs("w", 1, LEASE)) == 1


async def test_heartbeat_renews_only_the_workers_own_running_jobs(store: JobStore) -> None:
    await _jobs(store, 3)
    mine = await store.claim_jobs("me", 2, timedelta(seconds=1))
    theirs = await store.claim_jobs("other", 1, timedelta(seconds=1))
    pairs = [(j.id, j.attempt) for j in [*mine, *theirs]]
    held = await store.renew_leases("me", pairs, LEASE)
    assert sorted(h.id for h in held) == sorted(j.id for j in mine)
    # A job this worker holds but no longer runs is not renewed: it expires and is reaped.
    assert await store.renew_leases("me", [(mine[0].id, mine[0].attempt)], LEASE)
    await anyio.sleep(1.1)
    reaped = await store.reap_expired(lease_expired)
    assert [r.worker_id for r in reaped] == ["other"]
    await store.renew_leases("me", [(mine[0].id, mine[0].attempt)], timedelta(seconds=-1))
    assert [r.id for r in await store.reap_expired(lease_expired)] == [mine[0].id]


async def test_the_last_abandoned_attempt_ends_the_job(store: JobStore) -> None:
    [job_id] = await _jobs(store, 1)
    for _ in range(3):
        await store.claim_jobs("w", 1, timedelta(seconds=-1))
        await store.reap_expired(lease_expired)
    status = await store.get_job_status(job_id)
    assert status is not None
    assert status.status == "error" and status.retry_count == 3
    assert status.error_message is not None and "Failed after 3 attempts" in status.error_message


async def test_cancel_ends_a_waiting_job_and_flags_a_running_one(store: JobStore) -> None:
    waiting, running = await _jobs(store, 2)
    assert await store.cancel_job(waiting) == "cancelled"
    [job] = await store.claim_jobs("w", 1, LEASE)
    assert job.id == running
    assert await store.cancel_job(running) == "cancel requested"
    assert await store.store_vision_output(job, "{}") is True  # the boundary sees the flag
    status = await store.get_job_status(waiting)
    assert status is not None and (status.status, status.error_stage) == ("error", "cancelled")
    assert await store.cancel_job(waiting) is None


async def test_operator_retry_resets_an_error_job(store: JobStore) -> None:
    [job_id] = await _jobs(store, 1)
    [job] = await store.claim_jobs("w", 1, LEASE)
    await store.end_attempt(job, AttemptRecord("error", "gemini", "bad image"))
    assert await store.retry_failed_job(job_id) is True
    status = await store.get_job_status(job_id)
    assert status is not None and (status.status, status.retry_count) == ("pending", 0)
    assert await store.retry_failed_job(job_id) is False  # only error jobs


async def test_a_failing_transaction_rolls_back_alone_inside_a_shared_commit(
    store: JobStore,
) -> None:
    user_id, _ = await store.user_seen("u", None)

    new = NewJob(user_id, "http://x/y.png", None, "p", "bullet_points", 1.0, None, 3)

    def good() -> Work[int]:
        inserted = yield insert_jobs([new])
        return len(inserted)

    def bad() -> Work[int]:
        yield insert_jobs([new])
        raise RuntimeError("half-way failure")

    results: list[object] = []

    async def run(work: object) -> None:
        try:
            results.append(await store.driver.run(work))  # type: ignore[arg-type]
        except RuntimeError as exc:
            results.append(str(exc))

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(run, bad if i % 3 == 0 else good)
    assert results.count("half-way failure") == 20
    assert await _count(store, 'SELECT COUNT(*) FROM "visionJobs"') == 40


async def test_users_are_created_on_first_sight_and_roles_can_be_set(store: JobStore) -> None:
    a, role = await store.user_seen("alice", "Alice")
    b, _ = await store.user_seen("bob", None)
    assert role == "user" and a != b
    assert (await store.user_seen("alice", None))[0] == a
    await store.set_user_role("alice", "admin")
    user = await store.get_user(a)
    assert user is not None and user.role == "admin" and user.name == "Alice"
