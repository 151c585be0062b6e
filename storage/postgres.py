"""The PostgreSQL driver: an asyncpg pool; each transaction body runs on one pooled connection.

Claims use ``FOR UPDATE SKIP LOCKED`` (``storage/sql/postgres.sql``), so many workers on many
hosts claim side by side without waiting on each other.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import asyncpg
from anyio.abc import TaskStatus

from storage.driver import DatabaseUnavailable, Statement, Work, execute
from storage.jobstate import JobStatus
from storage.queries import QUERIES
from storage.triggers import CHANNEL

T = TypeVar("T")
log = logging.getLogger("storage.postgres")

_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError)  # fmt: skip


async def _perform(conn: Any, stmt: Statement) -> Any:
    sql = stmt.query.postgres
    if sql is None:
        raise LookupError(f"statement {stmt.query.name} has no PostgreSQL text")
    if stmt.mode == "all":
        return await conn.fetch(sql, *stmt.args)
    if stmt.mode == "one":
        return await conn.fetchrow(sql, *stmt.args)
    if "RETURNING" in sql.upper():
        return len(await conn.fetch(sql, *stmt.args))
    status: str = await conn.execute(sql, *stmt.args)
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


async def _keep(conn: Any) -> None:
    """asyncpg's default reset runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: a round trip per transaction. The store sets no session
    state on pooled connections (the change feed LISTENs on a connection of its own), so
    there is nothing to reset; an open transaction is still rolled back by the pool."""


class PostgresDriver:
    dialect = "postgresql"

    def __init__(self, pool: Any, dsn: str = "") -> None:
        self.pool = pool
        self.dsn = dsn  # the listener opens its own LISTEN connection with it

    @classmethod
    async def connect(cls, dsn: str, *, pool_size: int = 10) -> PostgresDriver:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, reset=_keep)
        return cls(pool, dsn)

    def listener(self) -> PostgresListener:
        return PostgresListener(self.dsn)

    async def run(self, work: Callable[[], Work[T]]) -> T:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                gen = work()
                try:
                    stmt = next(gen)
                    while True:
                        stmt = gen.send(await _perform(conn, stmt))
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    async def write(self, statement: Statement) -> Any:
        return await self.read(statement)  # autocommit: the statement is its own transaction

    async def read(self, statement: Statement) -> Any:
        try:
            async with self.pool.acquire() as conn:
                return await _perform(conn, statement)
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """``Driver.exclusive``: a session-level advisory try-lock on a connection of its own
        (not a pooled one: the pool does not reset session state, so the lock would stay with
        whoever got that connection next). Closing the connection lets go of it."""
        try:
            conn = await asyncpg.connect(self.dsn)
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        try:
            sql = QUERIES["try_exclusive_lock"].postgres
            yield bool(await conn.fetchval(sql, name))
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()

    async def reclaim_space(self) -> None:
        """``Driver.reclaim_space``: ``VACUUM`` the pruned tables, so the space of the deleted
        rows is reused even where autovacuum is off (bench/RESULTS.md §13). VACUUM refuses to
        run in a transaction block: ``write`` runs it alone on a pooled connection, sent with
        the simple query protocol (no arguments), outside any transaction."""
        await self.write(execute(QUERIES["vacuum_pruned_tables"]))

    async def close(self) -> None:
        await self.pool.close()


class PostgresListener:
    """The PostgreSQL driver's listener (``storage.driver.Listener``): LISTEN on a connection
    of its own for the triggers' NOTIFY, whose payload says when a job became claimable
    (``storage.triggers``); re-established when lost, with a catch-up wake. Event ids are
    taken before their transactions commit, so they can become visible out of order."""

    poll_seconds = 1.0  # NOTIFY does the waking; the poll only covers a lost connection
    tells_pending = True
    ids_in_order = False
    counter_first = False

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def listen(
        self,
        wake: Callable[[], None],
        pending: Callable[[], None],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        def notified(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == JobStatus.PENDING:
                pending()
            wake()

        task_status.started()
        delay = 0.1
        while True:
            lost = anyio.Event()
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.dsn)
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(CHANNEL, notified)
                delay = 0.1
                wake()  # catch up on whatever happened while we were not listening
                pending()
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
