"""Housekeeping beside the worker: every RETENTION_INTERVAL_SECONDS, the events of jobs that
finished more than EVENT_RETENTION_HOURS ago, (RETENTION_DAYS > 0) the finished jobs older
than that, and the uploaded images no job uses older than UPLOAD_RETENTION_HOURS, are pruned
(``storage.retention``, in bounded batches), createJob's idempotencyKeys older than a day
cleared (``storage.budgets``), and the space of
what was deleted made reusable (``JobStore.reclaim_space``: PostgreSQL VACUUMs, autovacuum or
not).

One process of the database does it at a time: each run happens under the driver's
``exclusive("housekeeping")`` lock, and a process that does not get it skips the run (Celery
beat's single scheduler, procrastinate's periodic-task lock). ``vision-pipeline worker`` and
``serve`` (with its worker) start it; ``jobs prune`` runs the job part on demand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio

from pipeline.config import PipelineSettings
from storage.budgets import KEY_TTL
from storage.driver import DatabaseUnavailable
from storage.store import JobStore
from storage.timeutil import utcnow

log = logging.getLogger("pipeline.retention")

LOCK_NAME = "housekeeping"


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one run deleted."""

    events: int = 0
    jobs: int = 0
    uploads: int = 0  # uploaded images no job used
    keys: int = 0  # createJob idempotencyKeys older than storage.budgets.KEY_TTL, cleared


def job_cutoff(retention_days: int, now: datetime) -> datetime | None:
    """Jobs that finished before this go (None: RETENTION_DAYS is 0, keep them)."""
    return now - timedelta(days=retention_days) if retention_days > 0 else None


def upload_cutoff(upload_retention_hours: float, now: datetime) -> datetime | None:
    """Unused uploaded images stored before this go (None: UPLOAD_RETENTION_HOURS is 0)."""
    if upload_retention_hours <= 0:
        return None
    return now - timedelta(hours=upload_retention_hours)


def event_cutoff(event_retention_hours: float, now: datetime) -> datetime | None:
    """Events of jobs that finished before this go (None: EVENT_RETENTION_HOURS is 0)."""
    if event_retention_hours <= 0:
        return None
    return now - timedelta(hours=event_retention_hours)


class Housekeeping:
    def __init__(self, store: JobStore, settings: PipelineSettings) -> None:
        self.store = store
        self.retention_days = settings.retention_days
        self.event_retention_hours = settings.event_retention_hours
        self.upload_retention_hours = settings.upload_retention_hours
        self.interval = settings.retention_interval_seconds

    @property
    def enabled(self) -> bool:
        hours = self.event_retention_hours, self.upload_retention_hours
        return self.retention_days > 0 or any(h > 0 for h in hours)

    async def run_once(self) -> Pruned | None:
        """One run under the lock: events, jobs, then unused uploads. None when another
        process holds it."""
        async with self.store.driver.exclusive(LOCK_NAME) as mine:
            if not mine:
                log.debug("housekeeping: another process is at it; skipped")
                return None
            now = utcnow()
            events = jobs = uploads = 0
            if (cutoff := event_cutoff(self.event_retention_hours, now)) is not None:
                events = await self.store.prune_events(cutoff)
            if (cutoff := job_cutoff(self.retention_days, now)) is not None:
                jobs = await self.store.prune_jobs(cutoff)
            if (cutoff := upload_cutoff(self.upload_retention_hours, now)) is not None:
                uploads = await self.store.prune_unused_images(cutoff)
            if events or jobs or uploads:  # under the lock: one VACUUM at a time
                await self.store.reclaim_space()
            keys = await self.store.clear_old_keys(now - KEY_TTL)
        if events or jobs or uploads:
            log.info("housekeeping: pruned %d finished jobs, %d events and %d unused uploaded "
                     "images", jobs, events, uploads)  # fmt: skip
        if keys:
            log.debug("housekeeping: cleared %d idempotency keys older than a day", keys)
        return Pruned(events, jobs, uploads, keys)

    async def run(self) -> None:
        """Until cancelled: a run at start, then one every ``interval`` seconds. A database
        that is away is logged and tried again at the next run."""
        if not self.enabled:
            return
        while True:
            try:
                await self.run_once()
            except (DatabaseUnavailable, OSError) as exc:
                log.warning("housekeeping: the database is unavailable (%s); next run in %.0f s",
                            exc, self.interval)  # fmt: skip
            except Exception:
                log.exception("housekeeping failed; next run in %.0f s", self.interval)
            await anyio.sleep(self.interval)
