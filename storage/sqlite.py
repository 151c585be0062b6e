"""The SQLite driver: WAL, one writer thread per process with group commit, reads on the loop.

Why this shape:
- SQLite allows one writer at a time. Every write transaction of this process goes to one
  thread that owns the write connection and starts each transaction with ``BEGIN IMMEDIATE``,
  so two of our writes never race for the lock ("database is locked" mid-transaction cannot
  happen), and a lock held by another process is waited for in that thread, never on the
  event loop.
- The writer drains whatever transactions are queued and runs them under one
  ``BEGIN IMMEDIATE … COMMIT``, each in its own savepoint (a failing body rolls back alone).
  Under load many API and worker writes share one commit; idle, a write commits at once.
- Reads (a primary-key lookup is ~30 µs) run directly on the event loop on a read-only
  connection: a thread hop would cost more than the read. WAL readers never wait for the
  writer; in the rare case SQLite still answers busy, the read falls back to a thread.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from storage.driver import DatabaseUnavailable, Statement, Work, single
from storage.wake import Announcer, SqliteListener

T = TypeVar("T")
log = logging.getLogger("storage.sqlite")

# How long a writer keeps retrying a lock held by another process before it gives up on a
# batch (each BEGIN IMMEDIATE itself waits busy_timeout).
LOCK_DEADLINE_SECONDS = 60.0
BUSY_TIMEOUT_MS = 2000
MAX_BATCH = 128


def _adapt(args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not any(isinstance(a, datetime) for a in args):
        return args
    from storage.timeutil import to_sqlite

    return tuple(to_sqlite(a) if isinstance(a, datetime) else a for a in args)


def enter_wal(execute: Callable[[str], object], *, deadline: float = LOCK_DEADLINE_SECONDS) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process holds a lock.

    Leaving the rollback journal of a database file just created needs a moment with no other
    connection reading or writing, and SQLite answers "database is locked" at once instead of
    waiting busy_timeout when it cannot have it: six processes starting on a fresh file at once
    hit this (tests/test_migrations.py). Once the file is in WAL mode the pragma is a no-op."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(0.02)


def _connect(path: str, *, readonly: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {0 if readonly else BUSY_TIMEOUT_MS}")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
        # The reads run on the event loop: with SQLite's default 2 MiB page cache every page
        # of a large file is a pread. Mapped (read-only here) and a 64 MiB cache: +16-17%
        # getJobStatus/getJobHistory at 1M rows (bench/RESULTS.md, Miss D).
        conn.execute("PRAGMA mmap_size = 1073741824")
        conn.execute("PRAGMA cache_size = -65536")
    else:
        enter_wal(conn.execute)
        # NORMAL in WAL mode: a commit survives a crash of the process; only a power loss can
        # take back the last commits. Written jobs are never half-written either way.
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _perform(conn: sqlite3.Connection, stmt: Statement) -> Any:
    sql = stmt.query.sqlite
    if sql is None:
        raise LookupError(f"statement {stmt.query.name} has no SQLite text")
    cur = conn.execute(sql, _adapt(stmt.args))
    if stmt.mode == "all":
        return cur.fetchall()
    if stmt.mode == "one":
        row = cur.fetchone()
        cur.fetchall()  # finish the statement (RETURNING rows are produced while stepping)
        return row
    cur.fetchall()
    return cur.rowcount


def _drive(conn: sqlite3.Connection, work: Callable[[], Work[T]]) -> T:
    gen = work()
    try:
        stmt = next(gen)
        while True:
            stmt = gen.send(_perform(conn, stmt))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class _Job:
    __slots__ = ("future", "loop", "work")

    def __init__(
        self, work: Callable[[], Work[Any]], loop: asyncio.AbstractEventLoop, future: Any
    ) -> None:
        self.work = work
        self.loop = loop
        self.future = future


def _settle(job: _Job, result: Any, error: BaseException | None) -> None:
    def apply() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    job.loop.call_soon_threadsafe(apply)


class SqliteDriver:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = _connect(path, readonly=False)
        self._reader = _connect(path, readonly=True)
        self._fallback_lock = threading.Lock()
        self._fallback: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._write_loop, name="sqlite-writer", daemon=True)
        self.announcer = Announcer(path)  # tells other processes' feeds that we committed
        self._thread.start()

    def listener(self) -> SqliteListener:
        return SqliteListener(self.path, self.announcer)

    # -- writes --------------------------------------------------------------------------------

    async def run(self, work: Callable[[], Work[T]]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(work, loop, future))
        return await future

    async def write(self, statement: Statement) -> Any:
        return await self.run(lambda: single(statement))

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._commit_batch(batch)

    def _begin(self) -> None:
        deadline = time.monotonic() + LOCK_DEADLINE_SECONDS
        delay = 0.01
        while True:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(f"SQLite stayed locked: {exc}") from exc
                log.warning("SQLite write lock busy (%s); retrying", exc)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _commit_batch(self, batch: list[_Job]) -> None:
        try:
            self._begin()
        except BaseException as exc:
            for job in batch:
                _settle(job, None, exc)
            return
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            for job in batch:
                if len(batch) == 1:
                    try:
                        outcomes.append((job, _drive(self._writer, job.work), None))
                    except Exception as exc:
                        self._writer.execute("ROLLBACK")
                        _settle(job, None, exc)
                        return
                    continue
                self._writer.execute("SAVEPOINT w")
                try:
                    result = _drive(self._writer, job.work)
                except Exception as exc:
                    self._writer.execute("ROLLBACK TO w")
                    self._writer.execute("RELEASE w")
                    outcomes.append((job, None, exc))
                else:
                    self._writer.execute("RELEASE w")
                    outcomes.append((job, result, None))
            self._writer.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: nothing of the batch stands
            try:
                self._writer.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for job in batch:
                _settle(job, None, DatabaseUnavailable(f"SQLite commit failed: {exc}"))
            return
        self.announcer.announce()
        for job, result, error in outcomes:
            _settle(job, result, error)

    # -- reads ---------------------------------------------------------------------------------

    async def read(self, statement: Statement) -> Any:
        try:
            return _perform(self._reader, statement)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        return await asyncio.to_thread(self._read_waiting, statement)

    def _read_waiting(self, statement: Statement) -> Any:
        with self._fallback_lock:
            if self._fallback is None:
                self._fallback = _connect(self.path, readonly=True)
                self._fallback.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS * 5}")
            return _perform(self._fallback, statement)

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """``Driver.exclusive``: a non-blocking ``flock`` of ``<database>.<name>.lock``
        (the operating system lets go of it when the process dies)."""
        fd = os.open(f"{self.path}.{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    async def reclaim_space(self) -> None:
        """``Driver.reclaim_space``: nothing; a deleted row's pages go to the freelist and the
        next writes reuse them (bench/RESULTS.md §13: the file stays at its high-water mark)."""

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._writer.close()
        self._reader.close()
        self.announcer.close()
        if self._fallback is not None:
            self._fallback.close()
