"""JobStore: the only class that talks to the database (procrastinate's JobManager idea).

Each method is one intent (``claim_jobs``, ``complete_job`` …): the named statements of
``storage.queries`` it runs, written once as a transaction body for every driver, plus the
mapping of rows to ``storage.records``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from storage import batches
from storage import queries as q
from storage.changes import ChangeFeed
from storage.coalesce import Coalescer
from storage.driver import Driver, Row, Statement, Work, execute, fetch_all, fetch_one
from storage.images import ImageStore
from storage.jobstate import ExpiryPolicy, Outcome, Stage, stage_of
from storage.records import (
    AttemptRecord,
    ClaimedJob,
    HeldLease,
    JobStatusRecord,
    JobSummary,
    NewJob,
    Outputs,
    ReapedJob,
    UserRecord,
)
from storage.rows import claimed_job, timestamp, user_of
from storage.timeutil import as_datetime, as_timestamp, stored_timestamp, utcnow

T = TypeVar("T")


def _attempt_args(
    job_id: int,
    attempt: int,
    worker_id: str | None,
    started: datetime | None,
    now: datetime,
    record: AttemptRecord,
) -> tuple[Any, ...]:
    v, c = record.vision, record.content
    return (
        job_id, attempt, worker_id, record.stage_reached, record.outcome, record.error_message,
        started, now, v.model, v.input_tokens, v.output_tokens, v.latency_ms,
        c.model, c.input_tokens, c.output_tokens, c.latency_ms, record.cost_usd,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Refill:
    """How a worker takes its next jobs in the statement that completes its jobs (PostgreSQL):
    the slots a batch of completions frees are refilled without a claim round trip, and the
    new jobs start together, in step, as the batch returns."""

    lease: timedelta
    wanted: Callable[[int], int]  # n of its jobs are completing: how many jobs to claim now
    claimed: Callable[[list[ClaimedJob]], None]  # called with them once the statement returned


class JobStore(ImageStore):
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.feed = ChangeFeed(driver)
        # Called after a job-creating transaction commits: the worker in this process wakes.
        self._on_created: list[Callable[[], None]] = []
        self._refills: dict[str, Refill] = {}
        # Writes of the same moment share a transaction (see storage.coalesce).
        self._creates: Coalescer[NewJob, int] = Coalescer(self._create_batch)
        self._stage_writes: Coalescer[batches.StageWrite, bool | None] = Coalescer(
            self._stage_batch
        )

    @property
    def dialect(self) -> str:
        return self.driver.dialect

    def on_job_created(self, callback: Callable[[], None]) -> None:
        self._on_created.append(callback)

    def _created(self) -> None:
        for callback in self._on_created:
            callback()

    async def _write(self, work: Callable[[], Work[T]]) -> T:
        """Run a write transaction; once it committed, the change feed looks at once."""
        result = await self.driver.run(work)
        self.feed.poke()
        return result

    async def _write_one(self, statement: Statement) -> Any:
        """A write of one statement: its own transaction, without BEGIN/COMMIT round trips."""
        result = await self.driver.write(statement)
        self.feed.poke()
        return result

    # -- users -------------------------------------------------------------------------------

    async def user_seen(
        self, open_id: str, name: str | None, role: str = "user"
    ) -> tuple[int, str]:
        """Create the user on first sight, else refresh lastSignedIn. Returns (id, role)."""

        def work() -> Work[tuple[int, str]]:
            row = yield fetch_one(q.UPSERT_USER_SEEN, open_id, name, role, utcnow())
            return int(row["id"]), str(row["role"])

        return await self._write(work)

    async def touch_user(
        self, open_id: str, name: str | None, role: str | None = None
    ) -> tuple[int, str] | None:
        """Refresh lastSignedIn (name, and role when given) of a known user: (id, role), or
        None when the openId has no row yet."""

        def work() -> Work[tuple[int, str] | None]:
            row = yield fetch_one(q.TOUCH_USER, open_id, name, role, utcnow())
            return None if row is None else (int(row["id"]), str(row["role"]))

        return await self.driver.run(work)

    async def upsert_user_login(
        self, open_id: str, name: str | None, email: str | None, login_method: str | None,
        role: str | None = None,
    ) -> tuple[int, str]:  # fmt: skip
        """The template's login upsert (TEMPLATE_FLOWS §1.7). Returns (id, role)."""

        def work() -> Work[tuple[int, str]]:
            row = yield fetch_one(
                q.UPSERT_USER_LOGIN, open_id, name, email, login_method, role, utcnow()
            )
            return int(row["id"]), str(row["role"])

        return await self.driver.run(work)

    async def get_user(self, user_id: int) -> UserRecord | None:
        row = await self.driver.read(fetch_one(q.GET_USER, user_id))
        return None if row is None else user_of(row)

    async def user_role(self, user_id: int) -> str | None:
        row = await self.driver.read(fetch_one(q.GET_USER_ROLE, user_id))
        return None if row is None else str(row["role"])

    async def set_user_role(self, open_id: str, role: str) -> int:
        def work() -> Work[int]:
            row = yield fetch_one(q.SET_USER_ROLE, open_id, role, utcnow())
            return int(row["id"])

        return await self._write(work)

    # -- jobs: API side ----------------------------------------------------------------------

    async def create_job(self, job: NewJob) -> int:
        """A new pending job; calls made at the same moment share one INSERT."""
        job_id = await self._creates.submit(job)
        self._created()
        return job_id

    async def _create_batch(self, jobs: list[NewJob]) -> list[int]:
        return batches.job_ids(jobs, await self._write_one(batches.insert_jobs(jobs)))

    async def get_job_status(self, job_id: int) -> JobStatusRecord | None:
        row = await self.driver.read(fetch_one(q.GET_JOB_STATUS, job_id))
        if row is None:
            return None
        return JobStatusRecord(
            id=row["id"],
            user_id=row["userId"],
            status=row["status"],
            progress=row["progress"],
            gemin_output=row["geminOutput"],
            deepseek_output=row["deepseekOutput"],
            error_message=row["errorMessage"],
            error_stage=row["errorStage"],
            retry_count=row["retryCount"],
            created_at=timestamp(row["createdAt"]),
            completed_at=as_datetime(row["completedAt"]),
            cost_usd=float(row["costUsd"]),
        )

    async def list_user_jobs(self, user_id: int, limit: int, offset: int) -> list[JobSummary]:
        rows = await self.driver.read(fetch_all(q.LIST_USER_JOBS, user_id, limit, offset))
        # Positional (JobSummary's field order): keywords double a NamedTuple's build cost.
        # The times stay text (timeutil.UtcTimestamp): the page only passes them on.
        return [
            JobSummary(
                r["id"],
                r["status"],
                r["progress"],
                r["imageUrl"],
                r["analysisPurpose"],
                stored_timestamp(r["createdAt"]),
                as_timestamp(r["completedAt"]),
            )
            for r in rows
        ]

    async def count_by_status(self) -> dict[str, int]:
        rows = await self.driver.read(fetch_all(q.COUNT_BY_STATUS))
        return {str(r["status"]): int(r["n"]) for r in rows}

    async def user_quota_counts(
        self, user_id: int, since: datetime, recent_cap: int, waiting_cap: int
    ) -> tuple[int, datetime | None, int]:
        """(jobs the user created since ``since``, the oldest one's createdAt, the user's
        unfinished jobs); each count stops at its cap (0: not counted)."""
        row = await self.driver.read(
            fetch_one(q.USER_QUOTA_COUNTS, user_id, since, recent_cap, waiting_cap)
        )
        return int(row["recent"]), as_datetime(row["oldest"]), int(row["waiting"])

    async def count_waiting_jobs(self, cap: int) -> int:
        """Jobs waiting to be claimed, counted up to ``cap``."""
        row = await self.driver.read(fetch_one(q.COUNT_WAITING_JOBS, cap))
        return int(row["n"])

    # -- jobs: worker side -------------------------------------------------------------------

    async def claim_jobs(self, worker_id: str, limit: int, lease: timedelta) -> list[ClaimedJob]:
        now = utcnow()
        rows = await self._write_one(fetch_all(q.CLAIM_JOBS, worker_id, now, now + lease, limit))
        claimed = [claimed_job(r, worker_id) for r in rows]
        claimed.sort(key=lambda job: job.id)
        return claimed

    async def next_run_after(self) -> datetime | None:
        row = await self.driver.read(fetch_one(q.NEXT_RUN_AFTER))
        return None if row is None else as_datetime(row["next"])

    async def store_vision_output(self, job: ClaimedJob, output_json: str) -> bool | None:
        """Fenced stage boundary. None: the lease is lost; else whether a cancel was asked."""
        return await self._stage_writes.submit(batches.VisionOutput(job, output_json))

    async def complete_job(
        self, job: ClaimedJob, content_json: str, outputs: Outputs, attempt: AttemptRecord
    ) -> bool:
        """Fenced completion with its outputs row and attempt row, all in one transaction
        (shared with the other stage writes of the same moment)."""
        done = await self._stage_writes.submit(
            batches.Completion(job, content_json, outputs, attempt)
        )
        return done is True

    async def _stage_batch(self, items: list[batches.StageWrite]) -> list[bool | None]:
        if all(isinstance(i, batches.VisionOutput) for i in items):
            visions = cast(list[batches.VisionOutput], items)
            rows = await self._write_one(batches.store_vision_outputs(visions))
            return list(batches.cancel_asked(visions, rows))
        if self.dialect == "postgresql" and all(isinstance(i, batches.Completion) for i in items):
            # One statement writes the jobs, outputs and attempts (data-modifying CTEs).
            completions = cast(list[batches.Completion], items)
            rows = await self._complete_on_postgres(completions)
            done = {(r["id"], r["attempt"]) for r in rows if r["id"] is not None}
            return [(i.job.id, i.job.attempt) in done for i in completions]
        return await self._write(lambda: batches.stage_writes(items))

    def refill_on_completion(self, worker_id: str, refill: Refill) -> None:
        """Let the statement completing ``worker_id``'s jobs also claim its next ones."""
        self._refills[worker_id] = refill

    async def _complete_on_postgres(self, completions: list[batches.Completion]) -> list[Row]:
        workers = {i.job.worker_id for i in completions}
        refill = self._refills.get(workers.pop()) if len(workers) == 1 else None
        wanted = refill.wanted(len(completions)) if refill is not None else 0
        if refill is None or wanted <= 0:
            rows: list[Row] = await self._write_one(batches.complete_jobs(completions))
            return rows
        worker_id = completions[0].job.worker_id
        rows = await self._write_one(
            batches.complete_and_claim(completions, worker_id, refill.lease, wanted)
        )
        claimed = [claimed_job(json.loads(r["claimed"]), worker_id) for r in rows if r["claimed"]]
        claimed.sort(key=lambda job: job.id)
        refill.claimed(claimed)
        return rows

    async def end_attempt(
        self, job: ClaimedJob, attempt: AttemptRecord, *, retry_at: datetime | None = None
    ) -> bool:
        """Fenced end of an attempt that did not complete: retry later, fail, or release.

        ``attempt.outcome`` decides: RETRY (pending again at ``retry_at``, counted), ERROR
        (final, counted), CANCELLED (final, not counted), RELEASED (pending now, not counted).
        Returns False when the lease was already lost (nothing written).
        """

        def work() -> Work[bool]:
            now = utcnow()
            fence = (job.id, job.attempt, job.worker_id)
            outcome = attempt.outcome
            if outcome == Outcome.RETRY:
                changed = yield execute(
                    q.RETRY_JOB, *fence, retry_at or now, attempt.error_message,
                    attempt.stage_reached, now, attempt.cost_usd,
                )  # fmt: skip
            elif outcome in (Outcome.ERROR, Outcome.CANCELLED):
                cancelled = outcome == Outcome.CANCELLED
                changed = yield execute(
                    q.FAIL_JOB, *fence, attempt.error_message,
                    Stage.CANCELLED if cancelled else attempt.stage_reached, now,
                    not cancelled, attempt.cost_usd,
                )  # fmt: skip
            elif outcome == Outcome.RELEASED:
                changed = yield execute(q.RELEASE_JOB, *fence, now, attempt.cost_usd)
            else:
                raise ValueError(f"unknown outcome {outcome!r}")
            if not changed:
                return False
            yield execute(
                q.INSERT_ATTEMPT,
                *_attempt_args(job.id, job.attempt, job.worker_id, job.locked_at, now, attempt),
            )
            return True

        return await self._write(work)

    async def renew_leases(
        self, worker_id: str, attempts: list[tuple[int, int]], lease: timedelta
    ) -> list[HeldLease]:
        """Extend the leases of these (job id, attempt) pairs; returns those still held."""
        if not attempts:
            return []
        pairs = json.dumps(attempts)
        rows = await self._write_one(fetch_all(q.RENEW_LEASES, worker_id, utcnow() + lease, pairs))
        return [HeldLease(r["id"], r["attempt"], bool(r["cancelRequested"])) for r in rows]

    async def reap_expired(self, policy: ExpiryPolicy) -> list[ReapedJob]:
        """Return jobs whose lease expired to the queue, or end them, as ``policy`` decides
        (pipeline.policy.lease_expired): decided and written in one transaction, so a late
        write of the attempt's worker (fenced) or another reaper (PostgreSQL: SKIP LOCKED;
        SQLite: one writer) finds the attempt already ended.

        The abandoned attempt counts as a failed one and gets its ``visionJobSessions`` row.
        """

        def work() -> Work[list[ReapedJob]]:
            now = utcnow()
            rows = yield fetch_all(q.FIND_EXPIRED_LEASES, now)
            reaped: list[ReapedJob] = []
            for r in rows:
                stage = stage_of(r["status"])
                decided = policy(stage, r["retryCount"] + 1, r["maxRetries"])
                fence = (r["id"], r["attempt"], r["lockedBy"])
                if decided.retry:
                    changed = yield execute(
                        q.RETRY_JOB, *fence, now, decided.message, stage, now, 0.0
                    )
                else:
                    changed = yield execute(
                        q.FAIL_JOB, *fence, decided.message, stage, now, True, 0.0
                    )
                if not changed:  # its row is locked for this transaction: not reachable
                    continue
                record = AttemptRecord(Outcome.ABANDONED, stage, decided.message)
                yield execute(
                    q.INSERT_ATTEMPT,
                    *_attempt_args(r["id"], r["attempt"], r["lockedBy"],
                                   as_datetime(r["lockedAt"]), now, record),
                )  # fmt: skip
                reaped.append(ReapedJob(r["id"], r["attempt"], r["lockedBy"], not decided.retry))
            return reaped

        return await self._write(work)

    # -- operators ---------------------------------------------------------------------------

    async def retry_failed_job(self, job_id: int) -> bool:
        def work() -> Work[bool]:
            row = yield fetch_one(q.RETRY_FAILED_JOB, job_id, utcnow())
            return row is not None

        done = await self._write(work)
        if done:
            self._created()
        return done

    async def cancel_job(self, job_id: int) -> str | None:
        """Cancel a waiting job at once, or flag a running one. Returns what happened."""

        def work() -> Work[str | None]:
            now = utcnow()
            row = yield fetch_one(q.CANCEL_PENDING_JOB, job_id, now)
            if row is not None:
                return "cancelled"
            row = yield fetch_one(q.REQUEST_CANCEL, job_id, now)
            return None if row is None else "cancel requested"

        return await self._write(work)
