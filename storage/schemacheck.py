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
_FUNCTION = re.compile(r"FUNCTION (\w+)\(\) RETURNS trigger AS \$\$(.*)\$\$", re.DOTALL)
_RUNS = re.compile(r"EXECUTE FUNCTION (\w+)\(\)")
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


def _canonical(definition: str) -> str:
    """A trigger's definition as the database gives it back, whitespace aside: SQLite drops
    IF NOT EXISTS, PostgreSQL writes CREATE TRIGGER and qualifies the table."""
    text = definition.replace("IF NOT EXISTS ", "").replace("CREATE OR REPLACE ", "CREATE ")
    text = re.sub(r'\b\w+\.("visionJobs")', r"\1", text)
    return " ".join(text.split())


def expected_triggers(dialect: str) -> dict[str, tuple[str, str | None]]:
    """Each trigger's name -> (its definition, the body of the function it runs, if any)."""
    statements = triggers.for_dialect(dialect)
    bodies = {m.group(1): m.group(2) for s in statements if (m := _FUNCTION.search(s))}
    found: dict[str, tuple[str, str | None]] = {}
    for statement in statements:
        if name := _TRIGGER_NAME.search(statement):
            runs = _RUNS.search(statement)
            body = bodies.get(runs.group(1)) if runs else None
            found[name.group(1)] = (_canonical(statement), body)
    return found


def _trigger_differences(conn: sa.Connection) -> list[Difference]:
    expected = expected_triggers(conn.dialect.name)
    live = {
        str(name): (_canonical(str(definition)), body)
        for name, definition, body in _rows(conn, QUERIES["schema_triggers"])
    }
    found = [Difference("missing", "trigger", name) for name in sorted(set(expected) - set(live))]
    found += [Difference("extra", "trigger", name) for name in sorted(set(live) - set(expected))]
    for name in sorted(set(expected) & set(live)):
        if expected[name] != live[name]:
            found.append(Difference("differs", "trigger", name, "not this version's definition"))
    return found


def expected_partial_indexes() -> set[str]:
    return {
        str(index.name)
        for table in metadata().sorted_tables
        for index in table.indexes
        if any(index.dialect_options[d]["where"] is not None for d in ("sqlite", "postgresql"))
    }


def _rows(conn: sa.Connection, q: Query) -> list[Any]:
    text = q.sqlite if conn.dialect.name == "sqlite" else q.postgres
    assert text is not None
    return list(conn.exec_driver_sql(text))


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
    found += _trigger_differences(conn)
    inspector = sa.inspect(conn)
    live_indexes = {
        index["name"]
        for table in metadata().sorted_tables
        if inspector.has_table(table.name)
        for index in inspector.get_indexes(table.name)
    }
    partial = {str(row[0]) for row in _rows(conn, QUERIES["schema_partial_indexes"])}
    for name in sorted((expected_partial_indexes() & live_indexes) - partial):
        found.append(Difference("differs", "partial index", name, "it has no WHERE condition"))
    return sorted(found, key=str)
