"""The change feed: one listener per process learns of every job change and fans it out.

Every change of a job lands in ``visionJobEvents`` (written by triggers, in the writer's
transaction). This process learns of new events two ways:
- its own writes ``poke`` the feed right after they commit (no delay at all);
- other processes' commits reach it through the driver's ``Listener`` (storage.driver): on
  PostgreSQL a connection LISTENing on the triggers' NOTIFY (storage.postgres), on SQLite a
  datagram after each commit plus a poll of the change counter (storage.wake).
Then it reads the new events once and hands them to every subscriber in memory, so thousands
of live-progress streams cost one query per change, not one each.

Events are handed out in id order, each once, with no id skipped that later commits. On
PostgreSQL an id is taken from the sequence before its transaction commits, so a higher id can
become visible first; reading "after the last id" would then skip the lower one for good. So
at a gap in the ids the feed holds back what follows, re-reads shortly, and delivers once the
gap has filled, or after ``GAP_WAIT`` seconds takes the missing ids for rolled back. (On
SQLite one writer commits at a time, in id order.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import anyio
from anyio.abc import TaskStatus

from storage.driver import Driver, Row, fetch_all, fetch_one
from storage.jobstate import JobStatus
from storage.queries import QUERIES
from storage.timeutil import as_datetime

log = logging.getLogger("storage.changes")
BATCH = 1000
GAP_WAIT = 5.0  # seconds a gap in the ids is waited for before it is taken for a rollback
GAP_RECHECK = 0.01  # seconds between re-reads while a gap is open


@dataclass(frozen=True, slots=True)
class JobEvent:
    id: int
    job_id: int
    user_id: int
    status: str
    progress: int
    error_message: str | None
    at: datetime
    # The content stage's answer so far at this change, while it streams (issue 17).
    partial_content: str | None = None


def event_of(row: Row) -> JobEvent:
    at = as_datetime(row["createdAt"])
    assert at is not None
    return JobEvent(row["id"], row["jobId"], row["userId"], row["status"], row["progress"],
                    row["errorMessage"], at, row["partialContent"])  # fmt: skip


class EventsOf(StrEnum):
    """Whose events ``ChangeFeed.read_after`` reads: one job's, or one user's jobs' (the
    values name the statements)."""

    JOB = "job_events_after"
    USER = "user_events_after"


Subscriber = Callable[[list[JobEvent]], None]


class ChangeFeed:
    def __init__(self, driver: Driver, *, poll_seconds: float | None = None) -> None:
        self.driver = driver
        self.listener = driver.listener()
        self.poll_seconds = self.listener.poll_seconds if poll_seconds is None else poll_seconds
        self.last_id = 0
        self._subscribers: list[Subscriber] = []
        self._pending: list[Callable[[], None]] = []
        self.reads_events = True  # False: a worker-only process, told only of claimable jobs
        self._poke = anyio.Event()
        self._gap_since: float | None = None  # when the open gap after last_id was first seen

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with each batch of new events; returns the unsubscribe."""
        if not self.reads_events:
            raise RuntimeError("this change feed was started without reading events")
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def on_pending(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when some job may have become claimable (a worker's wake-up)."""
        self._pending.append(callback)

    def _pending_seen(self) -> None:
        for callback in list(self._pending):
            callback()

    def poke(self) -> None:
        """Something was committed here: look now rather than at the next poll."""
        self._poke.set()

    async def read_after(self, of: EventsOf, key: int, after: int, limit: int) -> list[JobEvent]:
        """The events of job (or user) ``key`` after event ``after``, oldest first, at most
        ``limit``: what a resuming or lagging subscriber reads from the table."""
        rows = await self.driver.read(fetch_all(QUERIES[of], key, after, limit))
        return [event_of(r) for r in rows]

    async def analysed_before(self, job_id: int, event_id: int) -> bool:
        """Whether job ``job_id``'s image analysis was written before event ``event_id``."""
        row = await self.driver.read(fetch_one(QUERIES["analysed_before_event"], job_id, event_id))
        return bool(row is not None and row["analysed"])

    async def run(
        self, *, events: bool = True, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the changes until cancelled. ``events=False`` (a worker-only process) reads
        no events when the listener tells of claimable jobs itself (PostgreSQL's NOTIFY
        payload), which is all a worker needs; otherwise the events are how it knows."""
        self.reads_events = events or not self.listener.tells_pending
        row = await self.driver.read(fetch_one(QUERIES["last_event_id"]))
        self.last_id = int(row["last"])
        async with anyio.create_task_group() as tg:
            await tg.start(self.listener.listen, self._heard, self._pending_seen)
            task_status.started()
            if self.reads_events:
                await self._loop()
            else:
                await anyio.sleep_forever()

    def _heard(self) -> None:
        if self.reads_events:
            self.poke()

    async def _loop(self) -> None:
        while True:
            interval = self.poll_seconds
            wait = GAP_RECHECK if self._gap_since is not None else interval
            with anyio.move_on_after(wait):
                await self._poke.wait()
            self._poke = anyio.Event()
            try:
                await self._dispatch_new()
            except Exception as exc:  # the database is away: keep the loop, try again
                log.warning("change feed read failed: %s", exc)
                await anyio.sleep(min(interval * 10, 1.0))

    async def _dispatch_new(self) -> None:
        if self.listener.counter_first:
            row = await self.driver.read(fetch_one(QUERIES["last_event_id"]))
            if int(row["last"]) <= self.last_id:
                return
        while True:
            rows = await self.driver.read(fetch_all(QUERIES["events_after"], self.last_id, BATCH))
            events = self._in_order([event_of(r) for r in rows])
            if not events:
                return
            self.last_id = events[-1].id
            if not self.listener.tells_pending and any(
                e.status == JobStatus.PENDING for e in events
            ):
                self._pending_seen()
            for subscriber in list(self._subscribers):
                try:
                    subscriber(events)
                except Exception:
                    log.exception("a change subscriber failed")
            if len(rows) < BATCH or self._gap_since is not None:
                return

    def _in_order(self, events: list[JobEvent]) -> list[JobEvent]:
        """The events that can go out now: up to the first gap in the ids, unless that gap has
        been open for ``GAP_WAIT`` (its transaction rolled back; its ids never come)."""
        if self.listener.ids_in_order:
            return events
        expected = self.last_id + 1
        for index, event in enumerate(events):
            if event.id != expected:
                now = anyio.current_time()
                if self._gap_since is None:
                    self._gap_since = now
                if now - self._gap_since < GAP_WAIT:
                    return events[:index]
            self._gap_since = None
            expected = event.id + 1
        return events
