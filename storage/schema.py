"""The DDL: ``schema.sql`` written out from the models (``storage.migrate`` upgrades a database).

``python -m storage.schema > schema.sql`` regenerates the file; a test proves the committed
file is what the models produce and that applying it yields the same tables as the models.
"""

from __future__ import annotations

import sys

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
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


async def push(url: DatabaseUrl) -> list[str]:
    """``db push`` of 0.1.0, now ``db upgrade`` (``storage.migrate.upgrade``): the columns a
    database older than 0.1.0 lacked and were added."""
    from storage.migrate import upgrade  # storage.migrate reads this module's models

    return list((await upgrade(url)).added)


if __name__ == "__main__":
    sys.stdout.write(schema_sql())
