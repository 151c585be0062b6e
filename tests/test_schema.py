"""schema.sql is the DDL of the models, and applying it gives the tables the models describe."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from storage.schema import push, schema_sql
from storage.urls import parse_database_url

ROOT = Path(__file__).resolve().parent.parent


def _sqlite_section() -> str:
    text = (ROOT / "schema.sql").read_text()
    return text.split("-- ==== SQLite ====")[1].split("-- ==== PostgreSQL ====")[0]


def _describe(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    try:
        tables = {}
        for (name,) in conn.execute(  # alembic_version: Alembic's bookkeeping, not a model
            "SELECT name FROM sqlite_master WHERE type='table' AND name != 'alembic_version'"
        ):
            columns = [tuple(r) for r in conn.execute(f'PRAGMA table_info("{name}")')]
            tables[name] = columns
        indexes = sorted(
            (name, sql)
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
            )
        )
        triggers = sorted(
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        )
        return {"tables": tables, "indexes": indexes, "triggers": triggers}
    finally:
        conn.close()


def test_schema_sql_is_what_the_models_generate() -> None:
    assert (ROOT / "schema.sql").read_text() == schema_sql(), (
        "schema.sql is stale: run `python -m storage.schema > schema.sql`"
    )


def test_applying_schema_sql_gives_the_tables_the_models_create(tmp_path: Path) -> None:
    from_file = tmp_path / "file.db"
    conn = sqlite3.connect(from_file)
    conn.executescript(_sqlite_section())
    conn.close()
    from_models = tmp_path / "models.db"
    anyio.run(push, parse_database_url(f"sqlite:///{from_models}"))
    assert _describe(from_file) == _describe(from_models)
    tables = _describe(from_models)["tables"]
    assert isinstance(tables, dict)
    assert set(tables) == {"users", "visionJobs", "visionJobOutputs", "visionJobSessions",
                           "visionJobEvents", "visionImages", "visionWorkers"}  # fmt: skip
    assert _describe(from_models)["triggers"] == [
        "trg_job_changed", "trg_job_created", "trg_job_deleted",
    ]  # fmt: skip
    job_columns = {c[1] for c in tables["visionJobs"]}
    # The design document's columns, so its SQL still works, plus the queue's.
    for column in ("id", "userId", "imageUrl", "imageContext", "analysisPurpose", "outputFormat",
                   "creativityLevel", "additionalInstructions", "status", "progress",
                   "geminOutput", "deepseekOutput", "errorMessage", "errorStage", "retryCount",
                   "maxRetries", "createdAt", "updatedAt", "completedAt", "runAfter",
                   "lockedBy", "leaseExpiresAt", "attempt"):  # fmt: skip
        assert column in job_columns


def test_db_push_adds_columns_a_database_lacks(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript(_sqlite_section())
    conn.execute('ALTER TABLE "visionJobSessions" DROP COLUMN "costUsd"')
    conn.close()
    added = anyio.run(push, parse_database_url(f"sqlite:///{db}"))
    assert added == ["visionJobSessions.costUsd"]
    assert anyio.run(push, parse_database_url(f"sqlite:///{db}")) == []


@pytest.mark.parametrize(
    ("url", "dialect", "path"),
    [
        ("sqlite:///jobs.db", "sqlite", "jobs.db"),
        ("sqlite+aiosqlite:///jobs.db", "sqlite", "jobs.db"),
        ("sqlite:////tmp/abs.db", "sqlite", "/tmp/abs.db"),
        ("postgresql://u@h/db", "postgresql", ""),
        ("postgresql+asyncpg://u@h/db", "postgresql", ""),
    ],
)
def test_database_urls_with_or_without_the_driver(url: str, dialect: str, path: str) -> None:
    parsed = parse_database_url(url)
    assert (parsed.dialect, parsed.path) == (dialect, path)
    if dialect == "postgresql":
        assert parsed.dsn == "postgresql://u@h/db"


def test_an_unsupported_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        parse_database_url("mysql://u@h/db")
