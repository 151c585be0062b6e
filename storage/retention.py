"""``JobStore``'s retention methods (a base class of it, as ``UserStore``): delete finished jobs
and old events in bounded batches.

Each batch is one short transaction (at most ``batch`` jobs or ``window`` events), so no
statement holds locks for long and the workers' writes go on between batches; a run loops
until nothing is left. What goes with a job: its events, attempts (``visionJobSessions``) and
outputs; its stored image goes with the last job of its user that uses it (the deletion
trigger, ``storage.triggers``). Pending and running jobs are never touched.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import anyio.lowlevel

from storage.driver import Driver, Work, execute, fetch_all, fetch_one, single
from storage.queries import QUERIES
from storage.timeutil import as_datetime

T = TypeVar("T")

# Jobs per transaction: a batch of 200 with ~6 events each deletes ~1,600 rows, a few ms on
# either database (bench/RESULTS.md §13).
JOB_BATCH = 200
# Events read per window and deleted per transaction.
EVENT_WINDOW = 2000


class RetentionStore:
    driver: Driver

    async def _write(self, work: Callable[[], Work[T]]) -> T:
        raise NotImplementedError  # JobStore's

    async def count_prunable_jobs(self, cutoff: datetime) -> int:
        """How many finished jobs ``prune_jobs(cutoff)`` would delete now."""
        row = await self.driver.read(fetch_one(QUERIES["count_prunable_jobs"], cutoff))
        return int(row["n"])

    async def prune_jobs(self, cutoff: datetime, *, batch: int = JOB_BATCH) -> int:
        """Delete the jobs that finished (complete, error) before ``cutoff`` with their events,
        attempts, outputs and unused stored images, ``batch`` jobs per transaction. Returns
        how many jobs were deleted."""
        deleted = 0
        while True:
            gone = await self._write(lambda: _prune_job_batch(cutoff, batch))
            deleted += gone
            if gone < batch:
                return deleted
            await anyio.lowlevel.checkpoint()  # let this process's own work in between batches

    async def prune_events(self, cutoff: datetime, *, window: int = EVENT_WINDOW) -> int:
        """Delete the events of jobs that finished before ``cutoff`` (and of jobs that are
        gone), walking the table in id order ``window`` events at a time. Returns how many."""
        deleted, after = 0, 0
        while True:
            rows = await self.driver.read(
                fetch_all(QUERIES["events_window"], after, cutoff, window)
            )
            if not rows:
                return deleted
            ids = [int(r["id"]) for r in rows if r["prunable"]]
            if ids:
                statement = execute(QUERIES["delete_events"], json.dumps(ids), cutoff)
                deleted += await self._write(functools.partial(single, statement))
            after = int(rows[-1]["id"])
            last = as_datetime(rows[-1]["createdAt"])
            if len(rows) < window or last is None or last >= cutoff:
                return deleted  # the rest is newer than the cutoff
            await anyio.lowlevel.checkpoint()


def _prune_job_batch(cutoff: datetime, batch: int) -> Work[int]:
    rows = yield fetch_all(QUERIES["prune_finished_jobs"], cutoff, batch)
    if not rows:
        return 0
    ids = json.dumps([int(r["id"]) for r in rows])
    yield execute(QUERIES["delete_jobs_events"], ids)
    yield execute(QUERIES["delete_jobs_attempts"], ids)
    yield execute(QUERIES["delete_jobs_outputs"], ids)
    return len(rows)
