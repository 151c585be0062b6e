"""JobStore: the only class that talks to the database (procrastinate's JobManager idea).

Each method is one intent (``claim_jobs``, ``complete_job`` …): the named statements of
``storage/sql/`` it runs (``storage.queries.QUERIES``), written once as a transaction body for
every driver, plus the mapping of rows to ``storage.records``. Where the dialects differ in
which statements an intent takes (a completion), the store decides; the workers ask the store
for work (``claim_jobs``, ``complete_and_claim``) and storage never calls back into them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import anyio.lowlevel

from storage import batches
from storage.budgets import BudgetStore
from storage.changes import ChangeFeed
from storage.coalesce import Coalescer
from storage.dashboard import DashboardStore
from storage.driver import Driver, Row, Statement, Work, execute, fetch_all, fetch_one
from storage.images import ImageStore
from storage.jobstate import ExpiryPolicy, Outcome, Stage, stage_of
from storage.operators import OperatorStore
from storage.partials import PartialStore
from storage.probes import ProbeStore
from storage.queries import QUERIES
from storage.records import (
    AttemptRecord,
    ClaimedJob,
    HeldLease,
    JobStatusRecord,
    JobSummary,
    NewJob,
    Outputs,
    ReapedJob,
)
from storage.retention import RetentionStore
from storage.rows import claimed_job, timestamp
from storage.stagecache import StageCacheStore
from storage.timeutil import as_datetime, as_timestamp, stored_timestamp, utcnow
from storage.users import UserStore

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
        v.cached_from, c.cached_from,
    )  # fmt: skip


class JobStore(
    UserStore, ImageStore, OperatorStore, DashboardStore, RetentionStore, ProbeStore,
    StageCacheStore, BudgetStore, PartialStore,
):  # fmt: skip
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.feed = ChangeFeed(driver)
        # Called after a job-creating transaction commits: the worker in this process wakes.
        self._on_created: list[Callable[[], None]] = []
        # Writes of the same moment share a transaction (see storage.coalesce).
        self._creates: Coalescer[NewJob, int] = Coalescer(self._create_batch)
        self._image_creates = Coalescer(self._image_batch)
        self._stage_writes: Coalescer[batches.StageWrite, batches.StageOutcome] = Coalescer(
            self._stage_batch
        )
        # PostgreSQL writes a batch of completions with their outputs and attempt rows in one
        # statement (data-modifying CTEs), which can also claim the next jobs; SQLite has no
        # such CTEs and runs insert_outputs and insert_attempts after complete_jobs.
        self._completes_in_one_statement = driver.dialect == "postgresql"
        # The fair claim's rotating start (claim_jobs): the highest user id its last claim served.
        self._claim_after = 0

    @property
    def dialect(self) -> str:
        return self.driver.dialect

    def on_job_created(self, callback: Callable[[], None]) -> None:
        self._on_created.append(callback)

    def _created(self) -> None:
        for callback in self._on_created:
            callback()

    def _jobs_committed(self, created: bool) -> None:
        """After a job-creating transaction committed: the worker of this process is woken
        before the change feed, and before the creating requests resume, so its claim is the
        next statement this process sends (``bench/RESULTS.md`` §18: the pickup of ``serve``,
        which woke the feed first and the worker only once the request resumed, lost 0.07-0.10
        ms)."""
        if created:
            self._created()
        self.feed.poke()

    async def _yield_to_claim(self) -> None:
        """Let a worker of this process woken by a create send its claim before the creating
        request goes on to encode and send its answer (see ``_jobs_committed``)."""
        if self._on_created:  # shielded: the job exists, its id must reach the caller
            await anyio.lowlevel.cancel_shielded_checkpoint()

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

    # -- jobs: API side ----------------------------------------------------------------------

    async def create_job(self, job: NewJob) -> int:
        """A new pending job; calls made at the same moment share one INSERT."""
        job_id = await self._creates.submit(job)
        await self._yield_to_claim()
        return job_id

    async def _create_batch(self, jobs: list[NewJob]) -> list[int]:
        result = await self.driver.write(batches.insert_jobs(jobs))
        self._jobs_committed(True)
        return batches.job_ids(jobs, result)

    async def get_job_status(self, job_id: int) -> JobStatusRecord | None:
        row = await self.driver.read(fetch_one(QUERIES["get_job_status"], job_id))
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
        rows = await self.driver.read(fetch_all(QUERIES["list_user_jobs"], user_id, limit, offset))
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
        rows = await self.driver.read(fetch_all(QUERIES["count_by_status"]))
        return {str(r["status"]): int(r["n"]) for r in rows}

    async def user_quota_counts(
        self, user_id: int, since: datetime, recent_cap: int, waiting_cap: int
    ) -> tuple[int, datetime | None, int]:
        """(jobs the user created since ``since``, the oldest one's createdAt, the user's
        unfinished jobs); each count stops at its cap (0: not counted)."""
        row = await self.driver.read(
            fetch_one(QUERIES["user_quota_counts"], user_id, since, recent_cap, waiting_cap)
        )
        return int(row["recent"]), as_datetime(row["oldest"]), int(row["waiting"])

    async def count_waiting_jobs(self, cap: int) -> int:
        """Jobs waiting to be claimed, counted up to ``cap``."""
        row = await self.driver.read(fetch_one(QUERIES["count_waiting_jobs"], cap))
        return int(row["n"])

    # -- jobs: worker side -------------------------------------------------------------------

    async def claim_jobs(self, worker_id: str, limit: int, lease: timedelta) -> list[ClaimedJob]:
        now = utcnow()
        rows = await self._write_one(
            fetch_all(QUERIES["claim_jobs"], worker_id, now, now + lease, limit, self._claim_after)
        )
        claimed = [claimed_job(r, worker_id) for r in rows]
        claimed.sort(key=lambda job: job.id)
        self._rotate(claimed)
        return claimed

    def _rotate(self, claimed: list[ClaimedJob]) -> None:
        """The next claim's window of users starts after the last one this claim served."""
        self._claim_after = max((job.user_id for job in claimed), default=0)

    async def next_run_after(self) -> datetime | None:
        row = await self.driver.read(fetch_one(QUERIES["next_run_after"]))
        return None if row is None else as_datetime(row["next"])

    async def store_vision_output(
        self, job: ClaimedJob, output_json: str, cache_key: str | None = None
    ) -> bool | None:
        """Fenced stage boundary. None: the lease is lost; else whether a cancel was asked.
        ``cache_key``: the result cache's key of a fresh analysis (None for a cached one)."""
        held, _ = await self._stage_writes.submit(batches.VisionOutput(job, output_json, cache_key))
        return held

    async def complete_job(
        self, job: ClaimedJob, content_json: str, outputs: Outputs, attempt: AttemptRecord
    ) -> bool:
        """Fenced completion with its outputs row and attempt row, all in one transaction
        (shared with the other stage writes of the same moment)."""
        done, _ = await self._stage_writes.submit(
            batches.Completion(job, content_json, outputs, attempt)
        )
        return done is True

    async def complete_and_claim(
        self, job: ClaimedJob, content_json: str, outputs: Outputs, attempt: AttemptRecord,
        *, claim: int, lease: timedelta,
    ) -> tuple[bool, tuple[ClaimedJob, ...]]:  # fmt: skip
        """``complete_job``, and up to ``claim`` waiting jobs claimed for the job's worker
        (leased for ``lease``) with it: on PostgreSQL the statement that writes the
        completions of that moment claims them too, so the slots completions free are refilled
        without a claim round trip of their own. Returns (completed, the jobs claimed); on
        SQLite nothing is claimed here (the worker's claim loop does it)."""
        done, claimed = await self._stage_writes.submit(
            batches.Completion(job, content_json, outputs, attempt, claim, lease)
        )
        return done is True, claimed

    async def _stage_batch(self, items: list[batches.StageWrite]) -> list[batches.StageOutcome]:
        if all(isinstance(i, batches.VisionOutput) for i in items):
            visions = cast(list[batches.VisionOutput], items)
            rows = await self._write_one(batches.store_vision_outputs(visions))
            return [(held, ()) for held in batches.cancel_asked(visions, rows)]
        if self._completes_in_one_statement and all(
            isinstance(i, batches.Completion) for i in items
        ):
            return await self._complete_in_one_statement(cast(list[batches.Completion], items))
        apart = not self._completes_in_one_statement
        results = await self._write(lambda: batches.stage_writes(items, rows_apart=apart))
        return [(result, ()) for result in results]

    async def _complete_in_one_statement(
        self, completions: list[batches.Completion]
    ) -> list[batches.StageOutcome]:
        """PostgreSQL: the completions in one statement, which also claims the jobs they ask
        for when they are all one worker's (a claim has one worker and one lease)."""
        worker_id = completions[0].job.worker_id
        one_worker = all(i.job.worker_id == worker_id for i in completions)
        wanted = sum(i.claim for i in completions) if one_worker else 0
        claimed: list[ClaimedJob] = []
        if wanted <= 0:
            rows: list[Row] = await self._write_one(batches.complete_jobs(completions))
        else:
            lease = next(i.lease for i in completions if i.claim > 0)
            rows = await self._write_one(
                batches.complete_and_claim(completions, worker_id, lease, wanted, self._claim_after)
            )
            claimed = [claimed_job(json.loads(r["claimed"]), worker_id)
                       for r in rows if r["claimed"]]  # fmt: skip
            claimed.sort(key=lambda job: job.id)
            self._rotate(claimed)
        done = {(r["id"], r["attempt"]) for r in rows if r["id"] is not None}
        return batches.share_claims(completions, done, claimed)

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
                    QUERIES["retry_job"], *fence, retry_at or now, attempt.error_message,
                    attempt.stage_reached, now, attempt.cost_usd,
                )  # fmt: skip
            elif outcome in (Outcome.ERROR, Outcome.CANCELLED):
                cancelled = outcome == Outcome.CANCELLED
                changed = yield execute(
                    QUERIES["fail_job"], *fence, attempt.error_message,
                    Stage.CANCELLED if cancelled else attempt.stage_reached, now,
                    not cancelled, attempt.cost_usd,
                )  # fmt: skip
            elif outcome == Outcome.RELEASED:
                changed = yield execute(QUERIES["release_job"], *fence, now, attempt.cost_usd)
            else:
                raise ValueError(f"unknown outcome {outcome!r}")
            if not changed:
                return False
            yield execute(
                QUERIES["insert_attempt"],
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
        rows = await self._write_one(
            fetch_all(QUERIES["renew_leases"], worker_id, utcnow() + lease, pairs)
        )
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
            rows = yield fetch_all(QUERIES["find_expired_leases"], now)
            reaped: list[ReapedJob] = []
            for r in rows:
                stage = stage_of(r["status"])
                decided = policy(stage, r["retryCount"] + 1, r["maxRetries"])
                fence = (r["id"], r["attempt"], r["lockedBy"])
                if decided.retry:
                    changed = yield execute(
                        QUERIES["retry_job"], *fence, now, decided.message, stage, now, 0.0
                    )
                else:
                    changed = yield execute(
                        QUERIES["fail_job"], *fence, decided.message, stage, now, True, 0.0
                    )
                if not changed:  # its row is locked for this transaction: not reachable
                    continue
                record = AttemptRecord(Outcome.ABANDONED, stage, decided.message)
                yield execute(
                    QUERIES["insert_attempt"],
                    *_attempt_args(r["id"], r["attempt"], r["lockedBy"],
                                   as_datetime(r["lockedAt"]), now, record),
                )  # fmt: skip
                reaped.append(ReapedJob(r["id"], r["attempt"], r["lockedBy"], not decided.retry))
            return reaped

        return await self._write(work)

    # -- operators ---------------------------------------------------------------------------

    async def retry_failed_job(self, job_id: int) -> bool:
        def work() -> Work[bool]:
            row = yield fetch_one(QUERIES["retry_failed_job"], job_id, utcnow())
            return row is not None

        done = await self._write(work)
        if done:
            self._created()
        return done

    async def cancel_job(self, job_id: int) -> str | None:
        """Cancel a waiting job at once, or flag a running one. Returns what happened."""

        def work() -> Work[str | None]:
            now = utcnow()
            row = yield fetch_one(QUERIES["cancel_pending_job"], job_id, now)
            if row is not None:
                return "cancelled"
            row = yield fetch_one(QUERIES["request_cancel"], job_id, now)
            return None if row is None else "cancel requested"

        return await self._write(work)
