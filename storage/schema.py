"""The DDL: ``schema.sql`` written out from the models, and ``db push`` (create or update).

``python -m storage.schema > schema.sql`` regenerates the file; a test proves the committed
file is what the models produce and that applying it yields the same tables as the models.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import CreateIndex, CreateTable

from storage import triggers
from storage.tables import metadata
from storage.urls import DatabaseUrl

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


async def push(url: DatabaseUrl) -> list[str]:
    """Create missing tables and indexes, add missing columns. Safe to run at every start."""
    engine = create_async_engine(url.sqlalchemy_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata().create_all, checkfirst=True)
            added = await conn.run_sync(_add_missing_columns)
            for statement in triggers.for_dialect(conn.dialect.name):
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()
    return added


if __name__ == "__main__":
    sys.stdout.write(schema_sql())
