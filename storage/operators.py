"""``JobStore``'s methods for the operators' commands (``vision-pipeline jobs …``, ``users …``):
a base class of it, as ``UserStore``, so callers keep one store.

Every read that can meet many jobs is bounded: lists take a limit, and the export and the
changes by filter walk the table in keyset pages (``id > after ORDER BY id LIMIT n``), one
page in memory at a time, however many jobs there are. Rows come back as plain dicts with
JSON-ready values (timestamps as ISO-8601 UTC text), which is what the commands print.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from storage.driver import Driver, Row, Work, fetch_all, fetch_one
from storage.jobstate import JobStatus
from storage.queries import QUERIES
from storage.timeutil import as_datetime, as_timestamp, utcnow

T = TypeVar("T")

_TIMESTAMPS = frozenset(
    {
        "createdAt",
        "updatedAt",
        "completedAt",
        "runAfter",
        "leaseExpiresAt",
        "startedAt",
        "endedAt",
        "lastSignedIn",
    }
)
# SQLite stores them as 0/1.
_FLAGS = frozenset({"cancelRequested", "isTrainingData", "bypassCache"})
_FLOATS = frozenset({"costUsd", "creativityLevel"})  # PostgreSQL may hand back Decimals
# A job's events are a handful (one per change of status); the cap guards `jobs show`.
MAX_EVENTS_SHOWN = 1000
# `jobs stats`: the users with the most waiting jobs shown (operator_waiting_by_user).
BACKLOG_USERS = 10
BACKLOG_COLUMNS = ("userId", "openId", "waiting", "running")


def plain(row: Row) -> dict[str, Any]:
    """A row as JSON-ready values."""
    out: dict[str, Any] = {}
    for key, value in dict(row).items():
        if key in _TIMESTAMPS:
            stamp = as_timestamp(value)
            value = None if stamp is None else stamp.iso
        elif key in _FLAGS and value is not None:
            value = bool(value)
        elif key in _FLOATS and value is not None:
            value = float(value)
        out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs a command means; None matches every job."""

    statuses: tuple[str, ...] | None = None
    open_id: str | None = None  # the owner
    since: datetime | None = None  # created at or after

    def args(self) -> tuple[Any, ...]:
        statuses = None if self.statuses is None else json.dumps(list(self.statuses))
        return statuses, self.open_id, self.since


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: dict[str, Any]
    attempts: list[dict[str, Any]]
    events: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class UserBacklog:
    """``jobs stats``: one user's waiting jobs (and running ones), issue 17's fair claim."""

    user_id: int
    open_id: str | None
    waiting: int
    running: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """``jobs stats``: the queue now, and what it did since ``since``."""

    now: datetime
    since: datetime
    counts: dict[str, int]
    oldest_pending_age_s: float | None
    completed: int
    p50_s: float | None
    p95_s: float | None
    failures_by_stage: dict[str, int] = field(default_factory=dict)
    cost_usd: dict[str, float] = field(default_factory=dict)  # today, 7d, 30d
    waiting_by_user: list[UserBacklog] = field(default_factory=list)  # the most waiting first

    @property
    def throughput_per_min(self) -> float:
        minutes = max((self.now - self.since).total_seconds() / 60, 1e-9)
        return self.completed / minutes


def nearest_rank(fraction: float, n: int) -> int:
    """The 0-based rank of the ``fraction`` percentile of ``n`` sorted values (nearest-rank)."""
    return max(math.ceil(fraction * n) - 1, 0)


class OperatorStore:
    driver: Driver

    async def _write(self, work: Callable[[], Work[T]]) -> T:
        raise NotImplementedError  # JobStore's

    def _created(self) -> None:
        raise NotImplementedError  # JobStore's: wakes this process's worker

    # -- reads -------------------------------------------------------------------------------

    async def list_jobs(self, where: JobFilter, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs matching ``where``, newest first."""
        rows = await self.driver.read(
            fetch_all(QUERIES["operator_list_jobs"], *where.args(), limit)
        )
        return [plain(r) for r in rows]

    async def count_jobs(self, where: JobFilter) -> int:
        row = await self.driver.read(fetch_one(QUERIES["operator_count_jobs"], *where.args()))
        return int(row["n"])

    async def job_id_pages(self, where: JobFilter, page: int) -> AsyncIterator[list[int]]:
        """The ids of the jobs matching ``where``, in ascending pages of up to ``page``."""
        after = 0
        while True:
            rows = await self.driver.read(
                fetch_all(QUERIES["operator_job_ids_page"], *where.args(), after, page)
            )
            if not rows:
                return
            ids = [int(r["id"]) for r in rows]
            yield ids
            after = ids[-1]

    async def export_pages(
        self, where: JobFilter, page: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The jobs matching ``where`` with their inputs, outputs and tokens, in id order, a
        page of up to ``page`` at a time (only that page is held)."""
        after = 0
        while True:
            rows = await self.driver.read(
                fetch_all(QUERIES["operator_export_page"], *where.args(), after, page)
            )
            if not rows:
                return
            jobs = [plain(r) for r in rows]
            yield jobs
            after = int(jobs[-1]["id"])

    async def job_detail(self, job_id: int) -> JobDetail | None:
        row = await self.driver.read(fetch_one(QUERIES["operator_get_job"], job_id))
        if row is None:
            return None
        attempts = await self.driver.read(fetch_all(QUERIES["operator_job_attempts"], job_id))
        events = await self.driver.read(
            fetch_all(QUERIES["operator_job_events"], job_id, MAX_EVENTS_SHOWN)
        )
        return JobDetail(plain(row), [plain(a) for a in attempts], [plain(e) for e in events])

    async def job_states(self, ids: list[int]) -> dict[int, str]:
        """The status of each of these jobs that exists."""
        rows = await self.driver.read(fetch_all(QUERIES["operator_job_states"], json.dumps(ids)))
        return {int(r["id"]): str(r["status"]) for r in rows}

    async def queue_stats(self, since: datetime, now: datetime | None = None) -> QueueStats:
        now = now or utcnow()
        read = self.driver.read
        counts = {
            str(r["status"]): int(r["n"]) for r in await read(fetch_all(QUERIES["count_by_status"]))
        }
        oldest = as_datetime((await read(fetch_one(QUERIES["operator_oldest_pending"])))["oldest"])
        done = await read(fetch_one(QUERIES["operator_window_completions"], since))
        completed = int(done["n"])
        p50 = p95 = None
        if completed:
            at = QUERIES["operator_completion_time_at"]
            p50 = float((await read(fetch_one(at, since, nearest_rank(0.5, completed))))[0])
            p95 = float((await read(fetch_one(at, since, nearest_rank(0.95, completed))))[0])
        failures = await read(fetch_all(QUERIES["operator_failures_by_stage"], since))
        backlog = await read(fetch_all(QUERIES["operator_waiting_by_user"], BACKLOG_USERS))
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        cost = await read(
            fetch_one(
                QUERIES["operator_cost_since"],
                midnight,
                now - timedelta(days=7),
                now - timedelta(days=30),
            )
        )
        return QueueStats(
            now=now,
            since=since,
            counts={s.value: counts.get(s.value, 0) for s in JobStatus},
            oldest_pending_age_s=None if oldest is None else (now - oldest).total_seconds(),
            completed=completed,
            p50_s=p50,
            p95_s=p95,
            failures_by_stage={str(r["stage"]): int(r["n"]) for r in failures},
            cost_usd={
                "today": float(cost["today"]),
                "7d": float(cost["week"]),
                "30d": float(cost["month"]),
            },
            waiting_by_user=[UserBacklog(*(r[k] for k in BACKLOG_COLUMNS)) for r in backlog],
        )

    # -- writes ------------------------------------------------------------------------------

    async def retry_jobs(self, ids: list[int]) -> list[int]:
        """Each of these jobs that is in error: pending again, its retries reset (one
        transaction). Returns the ids that changed."""

        def work() -> Work[list[int]]:
            now = utcnow()
            changed: list[int] = []
            for job_id in ids:
                row = yield fetch_one(QUERIES["retry_failed_job"], job_id, now)
                if row is not None:
                    changed.append(job_id)
            return changed

        changed = await self._write(work)
        if changed:
            self._created()
        return changed

    async def cancel_jobs(self, ids: list[int]) -> dict[int, str]:
        """Cancel each waiting job at once and flag each running one (its worker stops at the
        next stage boundary), in one transaction. Returns what happened to those that
        changed: "cancelled" or "cancel requested"."""

        def work() -> Work[dict[int, str]]:
            now = utcnow()
            done: dict[int, str] = {}
            for job_id in ids:
                if (yield fetch_one(QUERIES["cancel_pending_job"], job_id, now)) is not None:
                    done[job_id] = "cancelled"
                elif (yield fetch_one(QUERIES["request_cancel"], job_id, now)) is not None:
                    done[job_id] = "cancel requested"
            return done

        return await self._write(work)

    # -- users -------------------------------------------------------------------------------

    async def list_users(self, limit: int) -> list[dict[str, Any]]:
        rows = await self.driver.read(fetch_all(QUERIES["operator_list_users"], limit))
        return [plain(r) for r in rows]

    async def change_user_role(self, open_id: str, role: str) -> int | None:
        """Set a known user's role; None (nothing written) when the openId is unknown."""

        def work() -> Work[int | None]:
            row = yield fetch_one(QUERIES["operator_change_user_role"], open_id, role, utcnow())
            return None if row is None else int(row["id"])

        return await self._write(work)
