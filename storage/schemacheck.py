"""Does a live database hold the schema the code describes?

The models (``storage/tables.py``) are the source of truth; Alembic's comparison of them with
the database finds missing or extra tables, columns, indexes and unique constraints, and
columns whose type or nullability differ. What Alembic does not see is checked here: the
triggers (``storage/triggers.py``) and which indexes are partial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage import triggers
from storage.queries import QUERIES, Query
from storage.tables import metadata

_TRIGGER_NAME = re.compile(r"CREATE (?:OR REPLACE )?TRIGGER (?:IF NOT EXISTS )?(\w+)")
# Alembic's own bookkeeping table is not the models'.
_OWN_TABLES = {"alembic_version"}


@dataclass(frozen=True, slots=True)
class Difference:
    problem: str  # "missing", "extra", "differs"
    kind: str  # "table", "column", "index", "unique constraint", "trigger", "partial index"
    name: str
    detail: str = ""

    @property
    def restorable(self) -> bool:
        """What ``db upgrade`` puts back from the models (it never drops nor alters)."""
        return self.problem == "missing" and self.kind in ("table", "index", "trigger")

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.problem} {self.kind} {self.name}{detail}"


def expected_triggers(dialect: str) -> set[str]:
    return {m.group(1) for s in triggers.for_dialect(dialect) if (m := _TRIGGER_NAME.search(s))}


def expected_partial_indexes() -> set[str]:
    return {
        str(index.name)
        for table in metadata().sorted_tables
        for index in table.indexes
        if any(index.dialect_options[d]["where"] is not None for d in ("sqlite", "postgresql"))
    }


def _names(conn: sa.Connection, q: Query) -> set[str]:
    text = q.sqlite if conn.dialect.name == "sqlite" else q.postgres
    assert text is not None
    return {str(row[0]) for row in conn.exec_driver_sql(text)}


def _from_alembic(diff: Any) -> Difference | None:
    """One entry of Alembic's comparison as a Difference (None: one we do not report)."""
    if isinstance(diff, list):  # column modifications come as a list of changes
        op, _, table, column = diff[0][:4]
        return Difference("differs", "column", f"{table}.{column}", op.removeprefix("modify_"))
    op, obj = diff[0], diff[1]
    problem = "missing" if op.startswith("add_") else "extra"
    kind = op.split("_", 1)[1].replace("constraint", "unique constraint")
    if kind == "table":
        if obj.name in _OWN_TABLES:
            return None
        return Difference(problem, "table", obj.name)
    if kind == "column":
        return Difference(problem, "column", f"{diff[2]}.{diff[3].name}")
    columns = ", ".join(c.name for c in obj.columns)
    name = obj.name or f"({columns})"
    return Difference(problem, kind, f"{obj.table.name}.{name}")


def compare(conn: sa.Connection) -> list[Difference]:
    """Every difference between the database and what the code describes (empty: a match)."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    found = [d for diff in compare_metadata(context, metadata()) if (d := _from_alembic(diff))]
    for problem, names in _set_differences(
        expected_triggers(conn.dialect.name), _names(conn, QUERIES["schema_triggers"])
    ):
        found += [Difference(problem, "trigger", name) for name in names]
    inspector = sa.inspect(conn)
    live_indexes = {
        index["name"]
        for table in metadata().sorted_tables
        if inspector.has_table(table.name)
        for index in inspector.get_indexes(table.name)
    }
    partial = _names(conn, QUERIES["schema_partial_indexes"])
    for name in sorted((expected_partial_indexes() & live_indexes) - partial):
        found.append(Difference("differs", "partial index", name, "it has no WHERE condition"))
    return sorted(found, key=str)


def _set_differences(expected: set[str], live: set[str]) -> list[tuple[str, list[str]]]:
    return [("missing", sorted(expected - live)), ("extra", sorted(live - expected))]
