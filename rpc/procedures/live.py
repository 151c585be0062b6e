"""Live progress's in-memory fan-out: one change-feed subscription per process, many listeners.

``LiveProgress.hub()`` gives the app's hub for its store's ``ChangeFeed`` (the app's services
hold it, ``rpc.context``); it subscribes to the feed once and hands each job event to the
listeners of that job and of its owner. What it
promises:

- **Idle listeners cost almost nothing**: a set entry and one parked waiter each. No polling
  and no queries per listener; the feed's single reader learns of changes (storage.changes).
- **Bounded memory**: each listener buffers at most ``queue_limit`` events. A listener that
  falls further behind drops its buffer and re-reads from ``visionJobEvents`` (where every
  event stays), so a slow client costs bounded memory and still misses nothing.
- **In order, each once, no gap**: ``Hub.events`` yields a listener's events with ids after a
  given id, strictly increasing. A listener registered before its caller reads the table
  (replay) receives every later event, and ids at or below the last one given are skipped.
- **Shared reads**: the job row that events are rendered with is read once per change and
  shared by every listener of that job (``Hub.job_status``).
- **No event skipped on PostgreSQL**: the feed hands events out in id order with no id
  skipped that commits later (storage.changes), so the hub only routes them.
- ``LiveProgress.close_threadsafe()`` (the server is stopping) ends every listener with
  ``Closed``, so streams end without tRPC's ``return`` and their clients reconnect, and
  resume, elsewhere.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio

from rpc.wire.sse import Closed
from storage.changes import ChangeFeed, EventsOf, JobEvent
from storage.records import JobStatusRecord
from storage.store import JobStore

log = logging.getLogger("rpc.live")

PAGE = 500  # events per read when replaying or catching up
__all__ = ["PAGE", "Closed", "Hub", "Listener", "LiveProgress", "read_all_after"]


class Listener:
    """One subscriber's bounded buffer of events (filled by the hub, drained by ``wait``)."""

    __slots__ = ("_limit", "_queue", "_wake", "closed", "overflowed")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue: list[JobEvent] = []
        self._wake: anyio.Event | None = None  # made only while someone waits
        self.overflowed = False
        self.closed = False

    def push(self, event: JobEvent) -> None:
        if self.overflowed:
            return  # it will re-read everything after its last event from the table
        if len(self._queue) >= self._limit:
            self._queue.clear()
            self.overflowed = True
        else:
            self._queue.append(event)
        self._notify()

    def close(self) -> None:
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def wait(self) -> list[JobEvent] | None:
        """The buffered events, waiting for one if there is none; None after an overflow
        (the caller must then catch up from the table). Raises ``Closed`` when closed."""
        while not (self._queue or self.overflowed or self.closed):
            self._wake = anyio.Event()
            try:
                await self._wake.wait()
            finally:
                self._wake = None
        if self.closed:
            raise Closed
        if self.overflowed:
            self.overflowed = False
            self._queue.clear()
            return None
        batch, self._queue = self._queue, []
        return batch


class Hub:
    """The fan-out of one ``ChangeFeed`` (see the module's docstring)."""

    def __init__(self, store: JobStore, *, queue_limit: int = 256, cache_size: int = 256) -> None:
        self.store = store
        self.feed: ChangeFeed = store.feed
        self.queue_limit = queue_limit
        self.closed = False
        self._jobs: dict[int, set[Listener]] = {}
        self._users: dict[int, set[Listener]] = {}
        self._cache_size = cache_size
        # job id → (every event up to this id is reflected, the shared read of the row)
        self._loads: OrderedDict[int, tuple[int, asyncio.Task[JobStatusRecord | None]]] = (
            OrderedDict()
        )
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.feed.subscribe(self._on_events)

    @property
    def listeners(self) -> int:
        return sum(map(len, self._jobs.values())) + sum(map(len, self._users.values()))

    @contextmanager
    def listen(
        self, *, job_id: int | None = None, user_id: int | None = None
    ) -> Iterator[Listener]:
        """A listener of one job's or one user's events, registered until the block ends.

        Registering is synchronous: every event the feed dispatches after this call reaches
        the listener, and every event dispatched before it is at or below ``feed.last_id``."""
        if self.closed:
            raise Closed
        table, key = (self._jobs, job_id) if job_id is not None else (self._users, user_id)
        assert key is not None
        listener = Listener(self.queue_limit)
        table.setdefault(key, set()).add(listener)
        try:
            yield listener
        finally:
            members = table.get(key)
            if members is not None:
                members.discard(listener)
                if not members:
                    del table[key]

    def _on_events(self, events: list[JobEvent]) -> None:
        """The feed's callback (synchronous, in the feed's task): route events in memory."""
        for event in events:
            self._route(event)

    def _route(self, event: JobEvent) -> None:
        for listener in self._jobs.get(event.job_id, ()):
            listener.push(event)
        for listener in self._users.get(event.user_id, ()):
            listener.push(event)

    async def events(
        self, listener: Listener, query: EventsOf, key: int, after: int, *, replay: bool = False
    ) -> AsyncIterator[list[JobEvent]]:
        """Batches of the listener's events with ids above ``after``, in order, each once.

        ``query``/``key`` (``EventsOf.JOB``/job id or ``EventsOf.USER``/user id) read
        the table: first when ``replay`` (a client resuming), then after any overflow; page by
        page, so catching up holds at most a page in memory. Ends only by ``Closed`` or
        cancellation."""
        last = after
        catch_up = replay
        while True:
            if catch_up:
                while True:
                    page = await self.feed.read_after(query, key, last, PAGE)
                    fresh = [e for e in page if e.id > last]
                    if fresh:
                        last = fresh[-1].id
                        yield fresh
                    if len(page) < PAGE:
                        break
            batch = await listener.wait()
            catch_up = batch is None  # overflowed: the table has everything we dropped
            fresh = [e for e in batch or () if e.id > last]
            if fresh:
                last = fresh[-1].id
                yield fresh

    async def job_status(self, job_id: int, event_id: int) -> JobStatusRecord | None:
        """The job's row as read after event ``event_id`` was committed; one read shared by
        every caller that needs the same job at or below the same event."""
        cached = self._loads.get(job_id)
        if cached is not None and cached[0] >= event_id:
            self._loads.move_to_end(job_id)
            task = cached[1]
        else:
            # Those events, and the caller's own event, are committed already.
            version = max(self.feed.last_id, event_id)
            task = asyncio.ensure_future(self.store.get_job_status(job_id))
            self._loads[job_id] = (version, task)
            task.add_done_callback(functools.partial(self._forget_failed, job_id))
            while len(self._loads) > self._cache_size:
                self._loads.popitem(last=False)
        return await asyncio.shield(task)

    def _forget_failed(self, job_id: int, task: asyncio.Task[JobStatusRecord | None]) -> None:
        if task.cancelled() or task.exception() is not None:
            cached = self._loads.get(job_id)
            if cached is not None and cached[1] is task:
                del self._loads[job_id]

    def close(self) -> None:
        """End every listener (``Closed``) and refuse new ones."""
        self.closed = True
        for table in (self._jobs, self._users):
            for members in table.values():
                for listener in members:
                    listener.close()


async def read_all_after(feed: ChangeFeed, query: EventsOf, key: int, after: int) -> list[JobEvent]:
    """Every event of ``key`` after ``after`` from the table, oldest first (paged)."""
    found: list[JobEvent] = []
    while True:
        page = await feed.read_after(query, key, after, PAGE)
        found.extend(page)
        if len(page) < PAGE:
            return found
        after = page[-1].id


class LiveProgress:
    """The app's live progress: its one hub, made (and subscribed to the feed) on first use, so
    a server nobody watches keeps no subscriber on its feed."""

    def __init__(self, store: JobStore, *, queue_limit: int = 256) -> None:
        self.store = store
        self.queue_limit = queue_limit
        self._hub: Hub | None = None

    def hub(self) -> Hub:
        if self._hub is None:
            self._hub = Hub(self.store, queue_limit=self.queue_limit)
        return self._hub

    @property
    def subscribers(self) -> int:
        """Open live-progress streams (``/metrics``)."""
        return 0 if self._hub is None else self._hub.listeners

    def close_threadsafe(self) -> None:
        """Close the hub (every listener ends with ``Closed``); safe to call from a signal
        handler or another thread."""
        hub = self._hub
        if hub is None:
            return
        try:
            hub._loop.call_soon_threadsafe(hub.close)
        except RuntimeError:  # its loop is closed already
            pass
