"""The change feed: one listener per process learns of every job change and fans it out.

Every change of a job lands in ``visionJobEvents`` (written by triggers, in the writer's
transaction). This process learns of new events three ways:
- its own writes ``poke`` the feed right after they commit (no delay at all);
- on PostgreSQL a dedicated connection LISTENs on the triggers' NOTIFY (re-established when
  lost, with a catch-up read, so nothing is missed while it was away);
- on SQLite another process's writer sends a datagram after each commit (storage.wake), and a
  poll of the change counter (``MAX(id)``, a ~20 µs read) catches whatever that missed.
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

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import TaskStatus

from storage import queries as q
from storage.driver import Driver, Row, fetch_all, fetch_one
from storage.timeutil import as_datetime
from storage.triggers import CHANNEL
from storage.wake import Watcher

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


def event_of(row: Row) -> JobEvent:
    at = as_datetime(row["createdAt"])
    assert at is not None
    return JobEvent(row["id"], row["jobId"], row["userId"], row["status"], row["progress"],
                    row["errorMessage"], at)  # fmt: skip


Subscriber = Callable[[list[JobEvent]], None]


class ChangeFeed:
    def __init__(self, driver: Driver, *, poll_seconds: float = 0.1) -> None:
        self.driver = driver
        self.poll_seconds = poll_seconds
        self.last_id = 0
        self._subscribers: list[Subscriber] = []
        self._pending: list[Callable[[], None]] = []
        self.reads_events = True  # False: a worker-only process, told only of claimable jobs
        self._poke = anyio.Event()
        self.running = False
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

    async def read_after(self, query: q.Query, key: int, after: int, limit: int) -> list[JobEvent]:
        rows = await self.driver.read(fetch_all(query, key, after, limit))
        return [event_of(r) for r in rows]

    async def run(
        self, *, events: bool = True, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the changes until cancelled. ``events=False`` (a worker-only process on
        PostgreSQL) reads no events at all: the NOTIFY payload alone says when a job became
        claimable, which is all a worker needs. (SQLite reads are local and cheap: kept.)"""
        self.reads_events = events or self.driver.dialect == "sqlite"
        row = await self.driver.read(fetch_one(q.LAST_EVENT_ID))
        self.last_id = int(row["last"])
        self.running = True
        watcher = self._watch()
        try:
            async with anyio.create_task_group() as tg:
                if self.driver.dialect == "postgresql":
                    tg.start_soon(self._listen)
                task_status.started()
                if self.reads_events:
                    await self._loop()
                else:
                    await anyio.sleep_forever()
        finally:
            self.running = False
            if watcher is not None:
                watcher.close(asyncio.get_running_loop())

    def _watch(self) -> Watcher | None:
        """SQLite: wake on other processes' commits (storage.wake) rather than the next poll."""
        path = getattr(self.driver, "path", None)
        if self.driver.dialect != "sqlite" or not isinstance(path, str):
            return None
        watcher = Watcher(path)
        watcher.attach(asyncio.get_running_loop(), self.poke)
        announcer = getattr(self.driver, "announcer", None)
        if announcer is not None:
            announcer.own = watcher.path  # our own commits poke us directly
        return watcher

    async def _loop(self) -> None:
        # On PostgreSQL NOTIFY does the waking; the slow poll only covers a lost listener.
        while True:
            interval = self.poll_seconds if self.driver.dialect == "sqlite" else 1.0
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
        if self.driver.dialect == "sqlite":
            row = await self.driver.read(fetch_one(q.LAST_EVENT_ID))
            if int(row["last"]) <= self.last_id:
                return
        while True:
            rows = await self.driver.read(fetch_all(q.EVENTS_AFTER, self.last_id, BATCH))
            events = self._in_order([event_of(r) for r in rows])
            if not events:
                return
            self.last_id = events[-1].id
            if self.driver.dialect == "sqlite" and any(e.status == "pending" for e in events):
                self._pending_seen()  # PostgreSQL's NOTIFY payload said so already
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
        if self.driver.dialect == "sqlite":
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

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == "pending":
            self._pending_seen()
        if self.reads_events:
            self.poke()

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; re-established when lost (PostgreSQL only)."""
        import asyncpg

        dsn: str = getattr(self.driver, "dsn", "")
        delay = 0.1
        while True:
            lost = anyio.Event()
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn)
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(CHANNEL, self._notified)
                delay = 0.1
                self.poke()  # catch up on whatever happened while we were not listening
                self._pending_seen()
                await lost.wait()
                log.warning("the LISTEN connection was lost; reconnecting")
            except Exception as exc:
                log.warning("cannot LISTEN (%s); retrying in %.1f s", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if conn is not None and not conn.is_closed():
                    with anyio.CancelScope(shield=True):
                        await conn.close()
