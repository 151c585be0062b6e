"""The PostgreSQL driver: an asyncpg pool; each transaction body runs on one pooled connection.

Claims use ``FOR UPDATE SKIP LOCKED`` (in ``storage.queries``), so many workers on many hosts
claim side by side without waiting on each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg

from storage.driver import DatabaseUnavailable, Statement, Work

T = TypeVar("T")
log = logging.getLogger("storage.postgres")

_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.CannotConnectNowError)  # fmt: skip


async def _perform(conn: Any, stmt: Statement) -> Any:
    sql = stmt.query.postgres
    if sql.startswith("--"):  # a statement SQLite needs and PostgreSQL did in another one
        return [] if stmt.mode == "all" else (None if stmt.mode == "one" else 0)
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
        self.dsn = dsn  # the change feed opens its own LISTEN connection with it

    @classmethod
    async def connect(cls, dsn: str, *, pool_size: int = 10) -> PostgresDriver:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, reset=_keep)
        return cls(pool, dsn)

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

    async def close(self) -> None:
        await self.pool.close()
