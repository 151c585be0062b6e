"""Columns are declared once, in storage/tables.py: every record the store hands out names
table columns (in snake_case), and the statement that reads each record returns exactly
those columns, in the record's order, on both dialects."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from sqlmodel import SQLModel

from storage import tables
from storage.changes import JobEvent
from storage.queries import QUERIES
from storage.records import (
    AttemptRecord,
    ClaimedJob,
    HeldLease,
    JobStatusRecord,
    JobSummary,
    NewJob,
    Outputs,
    StageUsage,
    StoredImage,
    UserRecord,
)
from storage.schema import push
from storage.urls import parse_database_url
from tests.support import reset_database

# Fields that are no column of their table under their own name: what the column is instead
# (None: not a column at all, something the store adds).
RENAMED: dict[type, dict[str, str | None]] = {
    ClaimedJob: {"stage": "status", "worker_id": None},
    JobEvent: {"at": "createdAt"},
}
# Each record, its table, and the statements that read it (their columns, in field order).
RECORDS: list[tuple[type, type[SQLModel], list[str]]] = [
    (UserRecord, tables.User, ["get_user"]),
    (NewJob, tables.VisionJob, []),
    (JobStatusRecord, tables.VisionJob, ["get_job_status"]),
    (JobSummary, tables.VisionJob, ["list_user_jobs"]),
    (ClaimedJob, tables.VisionJob, ["claim_jobs"]),
    (HeldLease, tables.VisionJob, ["renew_leases", "store_vision_outputs"]),
    (Outputs, tables.VisionJobOutput, []),
    (JobEvent, tables.VisionJobEvent, ["events_after", "job_events_after", "user_events_after"]),
    (StoredImage, tables.VisionImage, ["get_image", "get_image_info", "get_any_image"]),
]


def _fields(record: type) -> list[str]:
    if dataclasses.is_dataclass(record):
        return [f.name for f in dataclasses.fields(record)]
    return list(record._fields)  # type: ignore[attr-defined]  # a NamedTuple


def _columns(table: type[SQLModel]) -> list[str]:
    return [c.name for c in table.__table__.columns]  # type: ignore[attr-defined]


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _column_of(record: type, table: type[SQLModel], field: str) -> str | None:
    renamed = RENAMED.get(record, {})
    if field in renamed:
        return renamed[field]
    return field if field in _columns(table) else _camel(field)


def _read_columns(record: type, table: type[SQLModel]) -> list[str]:
    columns = [_column_of(record, table, f) for f in _fields(record)]
    return [c for c in columns if c is not None]


@pytest.mark.parametrize("record, table", [(r, t) for r, t, _ in RECORDS])
def test_every_record_field_is_a_column_of_its_table(record: type, table: Any) -> None:
    assert set(_read_columns(record, table)) <= set(_columns(table))
    assert all(f == f.lower() for f in _fields(record)), "one naming style: snake_case"


def test_a_user_record_is_the_whole_users_row() -> None:
    assert _read_columns(UserRecord, tables.User) == _columns(tables.User)


def test_an_attempt_record_is_a_visionJobSessions_row() -> None:
    columns = set(_columns(tables.VisionJobSession))
    own = [_camel(f.name) for f in dataclasses.fields(AttemptRecord) if f.type != "StageUsage"]
    assert set(own) <= columns
    # The result cache's key of a stage is the job's (visionCacheKey, contentCacheKey).
    on_job = {"cache_key": ("visionCacheKey", "contentCacheKey")}
    for i, prefix in enumerate(("gemini", "deepseek")):  # vision, content
        fields = [f.name for f in dataclasses.fields(StageUsage)]
        usage = [prefix + _camel("_" + f) for f in fields if f not in on_job]
        assert set(usage) <= columns
        job_columns = {on_job[f][i] for f in fields if f in on_job}
        assert job_columns <= set(_columns(tables.VisionJob))


def _expected() -> list[tuple[str, list[str]]]:
    return [(name, _read_columns(r, t)) for r, t, names in RECORDS for name in names]


def test_the_statements_return_the_records_columns_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    anyio.run(push, parse_database_url(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    try:
        for name, columns in _expected():
            sql = QUERIES[name].sqlite
            assert sql is not None
            count = max((int(n) for n in re.findall(r"\?(\d+)", sql)), default=0)
            cursor = conn.execute(sql, [0] * count)
            cursor.fetchall()
            assert [d[0] for d in cursor.description] == columns, name
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@pytest.mark.postgres
def test_the_statements_return_the_records_columns_on_postgresql(pg_url: str) -> None:
    reset_database(pg_url)

    async def check() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            for name, columns in _expected():
                sql = QUERIES[name].postgres
                assert sql is not None
                prepared = await conn.prepare(sql)
                assert [a.name for a in prepared.get_attributes()] == columns, name
        finally:
            await conn.close()

    anyio.run(check)
