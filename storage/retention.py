"""``JobStore``'s retention methods (a base class of it, as ``UserStore``): delete finished jobs
and old events in bounded batches.

Each batch is one short transaction, so no statement holds locks for long and the workers'
writes go on between batches; a run loops until nothing is left. The batches are paced
(``Pace``): a batch that took longer than ``BATCH_TARGET_SECONDS`` halves the next one, a quick
one lets it grow back, up to ``batch`` jobs or ``window`` events. What goes with a job: its
events, attempts (``visionJobSessions``) and outputs; its stored image goes with the last job
of its user that uses it (the deletion trigger, ``storage.triggers``). Pending and running
jobs are never touched. Uploaded images no job uses go after UPLOAD_RETENTION_HOURS
(``prune_unused_images``), never one a createJob is being made with (see that method).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import anyio.lowlevel

from storage.driver import Driver, Work, execute, fetch_all, fetch_one, single
from storage.queries import QUERIES
from storage.timeutil import as_datetime

T = TypeVar("T")

# The longest a prune's transaction should hold its locks (SQLite: the one write lock). The
# batches below are the most a transaction takes; Pace shrinks them when a batch runs slow
# (a loaded machine, a bloated table) so one stays near this (bench/RESULTS.md §13).
BATCH_TARGET_SECONDS = 0.05
# Jobs per transaction at most: ~9 rows each (the job, ~6 events, its attempt and outputs).
JOB_BATCH = 50
# Events read per window and deleted per transaction, at most.
EVENT_WINDOW = 500
# Unused images per transaction at most (each up to IMAGE_MAX_BYTES: kept small).
IMAGE_BATCH = 20
# The least a slow batch shrinks to: progress is made whatever the machine's load.
SMALLEST = 10


@dataclass(slots=True)
class Pace:
    """The size of the next batch: halved after a batch slower than ``target`` seconds, grown
    by a quarter after one faster than half of it, between ``smallest`` and ``largest``."""

    largest: int
    smallest: int = SMALLEST
    target: float = BATCH_TARGET_SECONDS
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.smallest = min(self.smallest, self.largest)
        self.size = self.largest

    def took(self, seconds: float) -> None:
        if seconds > self.target:
            self.size = max(self.smallest, self.size // 2)
        elif seconds < self.target / 2:
            self.size = min(self.largest, self.size + max(1, self.size // 4))


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
        attempts, outputs and unused stored images, at most ``batch`` jobs per transaction
        (fewer while transactions run slow: ``Pace``). Returns how many jobs were deleted."""
        deleted, pace = 0, Pace(batch)
        while True:
            size, started = pace.size, time.perf_counter()
            gone = await self._write(functools.partial(_prune_job_batch, cutoff, size))
            pace.took(time.perf_counter() - started)
            deleted += gone
            if gone < size:
                return deleted
            await anyio.lowlevel.checkpoint()  # let this process's own work in between batches

    async def prune_events(self, cutoff: datetime, *, window: int = EVENT_WINDOW) -> int:
        """Delete the events of jobs that finished before ``cutoff`` (and of jobs that are
        gone), walking the table in id order, at most ``window`` events at a time (fewer while
        the deletes run slow: ``Pace``). Returns how many."""
        deleted, after, pace = 0, 0, Pace(window)
        while True:
            size = pace.size
            rows = await self.driver.read(fetch_all(QUERIES["events_window"], after, cutoff, size))
            if not rows:
                return deleted
            ids = [int(r["id"]) for r in rows if r["prunable"]]
            if ids:
                statement = execute(QUERIES["delete_events"], json.dumps(ids), cutoff)
                started = time.perf_counter()
                deleted += await self._write(functools.partial(single, statement))
                pace.took(time.perf_counter() - started)
            after = int(rows[-1]["id"])
            last = as_datetime(rows[-1]["createdAt"])
            if len(rows) < size or last is None or last >= cutoff:
                return deleted  # the rest is newer than the cutoff
            await anyio.lowlevel.checkpoint()

    async def prune_unused_images(self, cutoff: datetime, *, batch: int = IMAGE_BATCH) -> int:
        """Delete the stored images created before ``cutoff`` that no job of their user
        refers to (uploads nobody made a job from), at most ``batch`` per transaction (paced).
        Each batch locks its images, then deletes them in a statement of its own that looks
        at the jobs again: a createJob holding one of them (``hold_image``) is skipped or has
        committed its job by then, so an image is never deleted under a job being created
        with it. Returns how many were deleted."""
        deleted, pace = 0, Pace(batch)
        while True:
            size, started = pace.size, time.perf_counter()
            found, gone = await self._write(functools.partial(_prune_image_batch, cutoff, size))
            pace.took(time.perf_counter() - started)
            deleted += gone
            if found < size:
                return deleted
            await anyio.lowlevel.checkpoint()

    async def reclaim_space(self) -> None:
        """After a prune that deleted rows: make their space reusable by later rows
        (``Driver.reclaim_space``: PostgreSQL VACUUMs the pruned tables, autovacuum or not;
        nothing on SQLite, whose freed pages are reused anyway)."""
        await self.driver.reclaim_space()


def _prune_job_batch(cutoff: datetime, batch: int) -> Work[int]:
    rows = yield fetch_all(QUERIES["prune_finished_jobs"], cutoff, batch)
    if not rows:
        return 0
    ids = json.dumps([int(r["id"]) for r in rows])
    yield execute(QUERIES["delete_jobs_events"], ids)
    yield execute(QUERIES["delete_jobs_attempts"], ids)
    yield execute(QUERIES["delete_jobs_outputs"], ids)
    return len(rows)


def _prune_image_batch(cutoff: datetime, batch: int) -> Work[tuple[int, int]]:
    """One batch of unused images: (how many were found, how many were deleted)."""
    rows = yield fetch_all(QUERIES["unused_images"], cutoff, batch)
    if not rows:
        return 0, 0
    ids = json.dumps([int(r["id"]) for r in rows])
    gone = yield execute(QUERIES["delete_unused_images"], ids, cutoff)
    return len(rows), int(gone)
