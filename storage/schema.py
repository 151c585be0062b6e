"""The DDL: ``schema.sql`` written out from the models, and ``db push`` (create or update).

``python -m storage.schema > schema.sql`` regenerates the file; a test proves the committed
file is what the models produce and that applying it yields the same tables as the models.
"""

from __future__ import annotations

import sys
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable

from storage import triggers
from storage.tables import metadata
from storage.urls import DatabaseUrl

# pg_advisory_xact_lock's key for ``push`` (any constant no other code of ours locks).
_PUSH_LOCK = 0x5649_5350  # "VISP"
# How long a SQLite push waits for another process's write lock (sqlite3's timeout).
_CONNECT_ARGS: dict[str, dict[str, Any]] = {"sqlite": {"timeout": 60}, "postgresql": {}}

HEADER = """-- vision-pipeline schema. Generated from storage/tables.py by
--   python -m storage.schema > schema.sql
-- Do not edit by hand: tests/test_schema.py fails when this file and the models disagree.
"""


def _tidy(statement: str) -> str:
    return "\n".join(line.rstrip() for line in statement.strip().splitlines())


def ddl(dialect: Dialect) -> list[str]:
    """CREATE statements for every table and index, in dependency order."""
    out: list[str] = []
    for table in metadata().sorted_tables:
        out.append(_tidy(str(CreateTable(table).compile(dialect=dialect))))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(_tidy(str(CreateIndex(index).compile(dialect=dialect))))
    return out


def schema_sql() -> str:
    parts = [HEADER]
    dialects: list[tuple[str, Dialect]] = [
        ("SQLite", sqlite.dialect()),
        ("PostgreSQL", postgresql.dialect()),  # type: ignore[no-untyped-call]
    ]
    for title, dialect in dialects:
        parts.append(f"\n-- ==== {title} ====\n")
        parts.extend(statement + ";\n" for statement in ddl(dialect))
        parts.extend(statement + ";\n" for statement in triggers.for_dialect(dialect.name))
    return "\n".join(parts)


def _add_missing_columns(conn: sa.Connection) -> list[str]:
    """Additive migration: columns the models have and the database lacks are added."""
    inspector = sa.inspect(conn)
    added: list[str] = []
    for table in metadata().sorted_tables:
        existing = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            col_type = column.type.compile(dialect=conn.dialect)
            default = ""
            if not column.nullable:
                default = " DEFAULT " + ("FALSE" if isinstance(column.type, sa.Boolean) else "0")
            null = "" if column.nullable else " NOT NULL"
            conn.execute(
                sa.text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {col_type}'
                        f"{default}{null}")
            )  # fmt: skip
            added.append(f"{table.name}.{column.name}")
    return added


def _add_missing_indexes(conn: sa.Connection) -> None:
    """Indexes the models have and an existing table lacks (create_all skips a table that
    exists, indexes and all)."""
    for table in metadata().sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def _serialize(engine: AsyncEngine) -> None:
    """One push at a time, so processes starting together never both create the same table
    or index (the second would fail on the first's): on SQLite the whole push is one
    ``BEGIN IMMEDIATE`` transaction (SQLAlchemy's recipe; pysqlite would run each CREATE on its
    own), on PostgreSQL it holds a transaction-scoped advisory lock."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


async def push(url: DatabaseUrl) -> list[str]:
    """Create missing tables and indexes, add missing columns. Safe to run at every start,
    by any number of processes at once."""
    engine = create_async_engine(url.sqlalchemy_url(), connect_args=_CONNECT_ARGS[url.dialect])
    _serialize(engine)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PUSH_LOCK})")
            await conn.run_sync(metadata().create_all, checkfirst=True)
            added = await conn.run_sync(_add_missing_columns)
            await conn.run_sync(_add_missing_indexes)
            for statement in triggers.for_dialect(conn.dialect.name):
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()
    return added


if __name__ == "__main__":
    sys.stdout.write(schema_sql())
