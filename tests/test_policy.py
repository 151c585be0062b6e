"""The retry policy (pipeline.policy): one pure function decides retry or fail, and the
message, for the worker and for the reaper; the reaper applies it inside its transaction, so
reapers racing each other and the attempt's own late completion end the attempt once."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from pipeline.policy import LEASE_EXPIRED, lease_expired, verdict
from storage.engine import open_store
from storage.jobstate import Outcome, Stage, Verdict
from storage.records import AttemptRecord, NewJob, Outputs, ReapedJob
from storage.store import JobStore
from tests.support import rows

OUTPUTS = Outputs(*([None] * 9), content_pieces="[]")  # type: ignore[arg-type]


def test_a_retryable_failure_is_retried_while_attempts_are_left() -> None:
    assert verdict(Stage.VISION, "rate limited", 1, 3) == Verdict(
        True, "gemini: rate limited. Retry 1/3"
    )
    assert verdict(Stage.CONTENT, "timeout", 3, 3) == Verdict(
        False, "Failed after 3 attempts in deepseek: timeout"
    )


def test_a_fatal_failure_ends_the_job_at_once() -> None:
    assert verdict(Stage.VISION, "bad image", 1, 3, retryable=False) == Verdict(
        False, "gemini: bad image"
    )


def test_the_reapers_verdict_is_the_same_rule_with_its_reason() -> None:
    assert lease_expired(Stage.CONTENT, 2, 3) == Verdict(
        True, f"deepseek: {LEASE_EXPIRED}. Retry 2/3"
    )
    assert lease_expired(Stage.VISION, 3, 3).message == (
        f"Failed after 3 attempts in gemini: {LEASE_EXPIRED}"
    )


@pytest.mark.anyio
async def test_two_reapers_and_a_late_completion_end_an_expired_attempt_once(
    database_url: str,
) -> None:
    stores = [await open_store(database_url, create=True) for _ in range(3)]  # three processes
    worker, *reapers = stores
    rounds = 12
    try:
        user_id, _ = await worker.user_seen("race", None)
        new = NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
        for _ in range(rounds):
            await worker.create_job(new)
        expired = await worker.claim_jobs("late", rounds, timedelta(seconds=-1))
        completed: dict[int, bool] = {}
        reaped: list[ReapedJob] = []

        async def complete(job_index: int) -> None:
            job = expired[job_index]
            record = AttemptRecord(Outcome.COMPLETE, Stage.CONTENT)
            completed[job.id] = await worker.complete_job(job, "[]", OUTPUTS, record)

        async def reap(store: JobStore) -> None:
            reaped.extend(await store.reap_expired(lease_expired))

        async with anyio.create_task_group() as tg:
            for store in reapers:
                tg.start_soon(reap, store)
            for index in range(rounds):
                tg.start_soon(complete, index)
        sessions = await rows(worker, 'SELECT "jobId", attempt, outcome FROM "visionJobSessions"')
        jobs = await rows(worker, 'SELECT id, status, "retryCount", "lockedBy", "errorMessage" '
                          'FROM "visionJobs" ORDER BY id')  # fmt: skip
        outputs = {r[0] for r in await rows(worker, 'SELECT "jobId" FROM "visionJobOutputs"')}
    finally:
        for store in stores:
            await store.driver.close()
    attempts = [(job_id, attempt) for job_id, attempt, _ in sessions]
    assert sorted(attempts) == sorted({(job.id, job.attempt) for job in expired})  # one each
    reaped_ids = [r.id for r in reaped]
    assert len(reaped_ids) == len(set(reaped_ids))  # no attempt reaped twice
    outcome = {job_id: kind for job_id, _, kind in sessions}
    for job_id, status, retry_count, locked_by, message in jobs:
        assert locked_by is None
        if completed[job_id]:
            assert (status, retry_count, message) == ("complete", 0, None)
            assert outcome[job_id] == "complete" and job_id in outputs
            assert job_id not in reaped_ids
        else:
            assert (status, retry_count) == ("pending", 1)
            assert message == f"gemini: {LEASE_EXPIRED}. Retry 1/3"
            assert outcome[job_id] == "abandoned" and job_id not in outputs
            assert job_id in reaped_ids
