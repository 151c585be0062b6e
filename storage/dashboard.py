"""``JobStore``'s reads and writes for the admin dashboard (``visionPipeline.admin.*``) and the
workers table (a base class of it, as ``OperatorStore``).

The workers table (``visionWorkers``) holds one row per worker process, on any host: each
worker's heartbeat writes its row (never a job: it runs every renewal interval, whatever the
load) and deletes the rows of workers not seen for ``STALE_WORKER_AFTER`` (a killed
process's); a worker stopping cleanly deletes its own. The overview is a handful of index
ranges (see ``storage/sql/``): nothing here runs per request or per job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from storage.driver import Driver, Work, execute, fetch_all, fetch_one
from storage.jobstate import JobStatus
from storage.operators import BACKLOG_COLUMNS, BACKLOG_USERS, UserBacklog
from storage.queries import QUERIES
from storage.timeutil import as_datetime, utcnow

# A row whose worker has not beaten for this long is a killed process's: deleted.
STALE_WORKER_AFTER = timedelta(days=1)
MAX_WORKERS_LISTED = 1000
BUCKET = timedelta(minutes=5)
BUCKETS = 12  # the last hour
MAX_IN_FLIGHT = 100
MAX_FAILURES = 20
SPEND_DAYS = 14
# How long a process reuses its read of the spend of the days before today.
PAST_SPEND_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker process as its last heartbeat described it."""

    worker_id: str  # as in visionJobs.lockedBy
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    concurrency: int
    running: int  # jobs in flight


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    completed: int
    failed: int


@dataclass(frozen=True, slots=True)
class InFlight:
    job_id: int
    user_id: int
    status: str
    worker_id: str | None
    attempt: int
    locked_at: datetime | None  # when the attempt's worker claimed it
    streamed_chars: int | None = None  # the content streamed in so far (None: none yet)


@dataclass(frozen=True, slots=True)
class Failure:
    job_id: int
    user_id: int
    error_stage: str | None
    error_message: str | None
    retry_count: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DaySpend:
    day: str  # YYYY-MM-DD, UTC
    cost_usd: float
    jobs: int


@dataclass(frozen=True, slots=True)
class Overview:
    """The dashboard at ``now``: every list bounded (see the constants above)."""

    now: datetime
    counts: dict[str, int]
    last_hour: list[Bucket]  # BUCKETS of BUCKET, oldest first, the last one holding now
    in_flight: list[InFlight]
    workers: list[WorkerRow]
    recent_failures: list[Failure]
    spend_per_day: list[DaySpend]  # days with finished jobs, newest first
    oldest_waiting: datetime | None  # the oldest pending job's createdAt
    cache_hits_today: int = 0  # stage answers reused by the jobs finished today (UTC)
    # The users with the most waiting jobs, with their running ones: whom the fair claim
    # takes turns between (issue 17; `jobs stats` lists the same).
    waiting_by_user: list[UserBacklog] = field(default_factory=list)


def _worker(row: Any) -> WorkerRow:
    return WorkerRow(
        str(row["workerId"]), str(row["host"]), int(row["pid"]),
        _when(row["startedAt"]), _when(row["lastSeenAt"]),
        int(row["concurrency"]), int(row["running"]),
    )  # fmt: skip


def _when(value: object) -> datetime:
    stamp = as_datetime(value)
    if stamp is None:
        raise TypeError("a NOT NULL timestamp was NULL")
    return stamp


def bucket_starts(now: datetime) -> list[datetime]:
    """The starts of the last hour's buckets, oldest first: aligned to 5 minutes (a chart's
    bars keep their place between two reads), the last one holding ``now``."""
    last = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    return [last - BUCKET * (BUCKETS - 1 - i) for i in range(BUCKETS)]


class DashboardStore:
    driver: Driver
    _past_spend: _PastSpend | None = None  # this process's read of the days before today

    # -- the workers table -------------------------------------------------------------------

    async def worker_seen(self, worker: WorkerRow) -> None:
        """A heartbeat: this worker's row written (``worker.last_seen_at`` is now), and the
        rows of workers silent for ``STALE_WORKER_AFTER`` deleted, in one transaction."""

        def work() -> Work[None]:
            w = worker
            yield execute(QUERIES["worker_seen"], w.worker_id, w.host, w.pid, w.started_at,
                          w.last_seen_at, w.concurrency, w.running)  # fmt: skip
            yield execute(QUERIES["forget_stale_workers"], w.last_seen_at - STALE_WORKER_AFTER)

        # Not through the change feed's poke: no job changed.
        await self.driver.run(work)

    async def forget_worker(self, worker_id: str) -> None:
        await self.driver.write(execute(QUERIES["forget_worker"], worker_id))

    async def list_workers(self, limit: int = MAX_WORKERS_LISTED) -> list[WorkerRow]:
        rows = await self.driver.read(fetch_all(QUERIES["list_workers"], limit))
        return [_worker(r) for r in rows]

    # -- the overview ------------------------------------------------------------------------

    async def overview(self, now: datetime | None = None) -> Overview:
        now = now or utcnow()
        read = self.driver.read
        counts = await read(fetch_all(QUERIES["count_by_status"]))
        by_status = {str(r["status"]): int(r["n"]) for r in counts}
        starts = bucket_starts(now)
        finished = await read(fetch_all(QUERIES["dashboard_finished_per_bucket"], starts[0]))
        running = await read(fetch_all(QUERIES["dashboard_in_flight"], MAX_IN_FLIGHT))
        failures = await read(fetch_all(QUERIES["dashboard_recent_failures"], MAX_FAILURES))
        spend = await self._spend_per_day(now)
        oldest = await read(fetch_one(QUERIES["operator_oldest_pending"]))
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        hits = await read(fetch_one(QUERIES["dashboard_cache_hits"], midnight))
        backlog = await read(fetch_all(QUERIES["operator_waiting_by_user"], BACKLOG_USERS))
        return Overview(
            now=now,
            counts={s.value: by_status.get(s.value, 0) for s in JobStatus},
            last_hour=_buckets(starts, finished),
            in_flight=[_in_flight(r) for r in running],
            workers=await self.list_workers(),
            recent_failures=[_failure(r) for r in failures],
            spend_per_day=spend,
            oldest_waiting=as_datetime(oldest["oldest"]),
            cache_hits_today=int(hits["hits"]),
            waiting_by_user=[UserBacklog(*(r[k] for k in BACKLOG_COLUMNS)) for r in backlog],
        )

    async def _spend_per_day(self, now: datetime) -> list[DaySpend]:
        """Today's spend read now; the days before kept for PAST_SPEND_SECONDS (a finished
        job keeps its day; only a retry or a pruning changes a past day's sum), as theirs is
        the one read here that grows with the jobs of two weeks."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        kept = self._past_spend
        if kept is None or kept.midnight != midnight or kept.expires <= time.monotonic():
            first_day = midnight - timedelta(days=SPEND_DAYS - 1)
            rows = await self.driver.read(
                fetch_all(QUERIES["dashboard_spend_per_day"], first_day, midnight)
            )
            kept = _PastSpend(midnight, time.monotonic() + PAST_SPEND_SECONDS, _days(rows))
            self._past_spend = kept
        today = await self.driver.read(
            fetch_all(QUERIES["dashboard_spend_per_day"], midnight, midnight + timedelta(days=1))
        )
        return _days(today) + kept.days


@dataclass(frozen=True, slots=True)
class _PastSpend:
    midnight: datetime  # the days before this one
    expires: float  # time.monotonic()
    days: list[DaySpend]


def _days(rows: list[Any]) -> list[DaySpend]:
    return [DaySpend(str(r["day"]), float(r["costUsd"]), int(r["jobs"])) for r in rows]


def _buckets(starts: list[datetime], rows: list[Any]) -> list[Bucket]:
    """A bucket per start, 0 where no job finished (the database returns only those with)."""
    found = {int(r["bucket"]): (int(r["completed"]), int(r["failed"])) for r in rows}
    return [Bucket(start, *found.get(i, (0, 0))) for i, start in enumerate(starts)]


def _in_flight(row: Any) -> InFlight:
    return InFlight(
        int(row["jobId"]), int(row["userId"]), str(row["status"]), row["workerId"],
        int(row["attempt"]), as_datetime(row["lockedAt"]),
        None if row["streamedChars"] is None else int(row["streamedChars"]),
    )  # fmt: skip


def _failure(row: Any) -> Failure:
    return Failure(
        int(row["jobId"]), int(row["userId"]), row["errorStage"], row["errorMessage"],
        int(row["retryCount"]), _when(row["updatedAt"]),
    )  # fmt: skip
