"""Test helpers for schemas: a database as vision-pipeline 0.1.0 made it, and a description of
a live schema (tables, columns, indexes, triggers) to compare two databases by."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from tests.support import sql

PREVIOUS_RELEASE = Path(__file__).resolve().parent / "schema_0_1_0.sql"


def _section(dialect: str) -> str:
    text = PREVIOUS_RELEASE.read_text()
    sqlite_part, postgres_part = text.split("-- ==== SQLite ====")[1].split(
        "-- ==== PostgreSQL ===="
    )
    return sqlite_part if dialect == "sqlite" else postgres_part


def create_previous_release(url: str) -> None:
    """The tables, indexes and triggers 0.1.0's ``db push`` made (no ``alembic_version``)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        conn.executescript(_section("sqlite"))
        conn.close()
        return

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(_section("postgres"))  # several statements: simple protocol
        finally:
            await conn.close()

    anyio.run(run)


_PG_DESCRIBE = {
    "columns": """SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = current_schema()
        ORDER BY table_name, column_name""",
    "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = current_schema() ORDER BY indexname""",
    "triggers": """SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger AS t
        JOIN pg_class AS c ON c.oid = t.tgrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND n.nspname = current_schema() ORDER BY t.tgname""",
    "functions": """SELECT p.proname, p.prosrc FROM pg_proc AS p
        JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = current_schema() ORDER BY p.proname""",
    "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
        ORDER BY conrelid::regclass::text, conname""",
}


def describe(url: str) -> dict[str, Any]:
    """Everything about a schema two databases must share to be 'the same schema'."""
    if url.startswith("sqlite"):
        found = sql(url, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
        columns = {
            name: sql(url, f"SELECT * FROM pragma_table_info('{name}')")
            for kind, name, _, _ in found
            if kind == "table"
        }
        return {"objects": found, "columns": columns}
    return {key: sql(url, statement) for key, statement in _PG_DESCRIBE.items()}
