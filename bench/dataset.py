"""A table of N completed jobs for the API benchmark, bulk-loaded (COPY on PostgreSQL, one
``executemany`` transaction on SQLite), the change-feed triggers off during the load.

Every user owns ``PER_USER`` jobs, interleaved through the table (job ``j`` belongs to user
``(j - 1) % users + 1``), so one user's jobs sit on pages all over a large table and a
history page or a status read touches the index, not a hot corner. The API benchmark's
clients are ``CLIENTS`` of those users spread over the id range.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from storage import triggers
from storage.timeutil import to_sqlite

PER_USER = 20
CLIENTS = 50
CHUNK = 50_000

GEMIN_OUTPUT = json.dumps(
    {
        "colors": {
            "primary": ["#287959", "#1f4e3d"],
            "secondary": ["#f4f1ea", "#c9a66b"],
            "description": "A cool palette led by green (#287959, about 62%), with cream "
            "and a warm tan accent. Colours: green, cream, tan.",
        },
        "mood_and_tone": {
            "mood": "vibrant, confident",
            "tone": "lively, expressive",
            "keywords": ["fresh", "natural", "calm"],
        },
        "composition": {
            "layout": "landscape (3:2) frame, subject left of centre",
            "focal_point": "the bottle on the left third",
            "balance": "asymmetric",
        },
        "brand_insights": {
            "brand_personality": "natural, balanced, with a vibrant feel",
            "perceived_industry": "health and wellness",
            "target_audience": "young, active consumers",
            "strengths": ["clear palette", "uncluttered frame"],
        },
    }
)
DEEPSEEK_OUTPUT = json.dumps(
    [
        {
            "title": "Colour palette",
            "body": "A cool palette led by green sets a calm, natural "
            "tone; cream keeps it light and the tan accent adds warmth without noise.",
        },
        {
            "title": "Audience",
            "body": "Young, active consumers who look for products that fit an "
            "outdoor routine and read clean design as a promise of clean ingredients.",
        },
        {
            "title": "Post idea",
            "body": "Morning light, one bottle, one line of copy: 'Start "
            "green.' Keep the frame as uncluttered as the brand.",
        },
    ]
)

JOB_COLUMNS = (
    "id",
    "userId",
    "imageUrl",
    "imageContext",
    "analysisPurpose",
    "outputFormat",
    "creativityLevel",
    "status",
    "progress",
    "geminOutput",
    "deepseekOutput",
    "retryCount",
    "maxRetries",
    "createdAt",
    "updatedAt",
    "completedAt",
    "runAfter",
    "attempt",
    "cancelRequested",
    "costUsd",
)
USER_COLUMNS = ("id", "openId", "name", "role", "createdAt", "updatedAt", "lastSignedIn")
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def users_for(jobs: int) -> int:
    return max(1, jobs // PER_USER)


def client_users(jobs: int) -> list[int]:
    """The user ids the benchmark's clients act as: spread over all users."""
    users = users_for(jobs)
    step = max(1, users // CLIENTS)
    return [1 + i * step for i in range(min(CLIENTS, users))]


def open_id(user_id: int) -> str:
    return f"bench-{user_id:06d}"


def _job_rows(jobs: int, start: int, stop: int) -> Iterator[tuple[Any, ...]]:
    users = users_for(jobs)
    for j in range(start, stop):
        created = BASE + timedelta(milliseconds=j)
        done = created + timedelta(seconds=4.5)
        yield (
            j,
            (j - 1) % users + 1,
            f"https://cdn.example.com/brand/{j}.jpg",
            "Spring campaign",
            "Brand analysis for wellness product",
            "detailed_analysis",
            1.0,
            "complete",
            100,
            GEMIN_OUTPUT,
            DEEPSEEK_OUTPUT,
            0,
            3,
            created,
            done,
            done,
            created,
            1,
            False,
            0.0012,
        )


def _user_rows(users: int) -> Iterator[tuple[Any, ...]]:
    for u in range(1, users + 1):
        yield (u, open_id(u), f"Bench user {u}", "user", BASE, BASE, BASE)


def _sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(to_sqlite(v) if isinstance(v, datetime) else v for v in row)


def load_sqlite(path: str, jobs: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -400000")  # 400 MB: the indexes stay in memory
        conn.execute("PRAGMA journal_mode = OFF")  # one transaction, a fresh file
        conn.execute("DROP TRIGGER IF EXISTS trg_job_created")
        conn.execute("DROP TRIGGER IF EXISTS trg_job_changed")
        conn.execute("BEGIN")
        marks = ", ".join("?" * len(USER_COLUMNS))
        cols = ", ".join(f'"{c}"' for c in USER_COLUMNS)
        conn.executemany(
            f"INSERT INTO users ({cols}) VALUES ({marks})",
            map(_sqlite_row, _user_rows(users_for(jobs))),
        )
        marks = ", ".join("?" * len(JOB_COLUMNS))
        cols = ", ".join(f'"{c}"' for c in JOB_COLUMNS)
        conn.executemany(
            f'INSERT INTO "visionJobs" ({cols}) VALUES ({marks})',
            map(_sqlite_row, _job_rows(jobs, 1, jobs + 1)),
        )
        conn.execute("COMMIT")
        for statement in triggers.SQLITE:
            conn.execute(statement)
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


async def load_postgres(url: str, jobs: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute('ALTER TABLE "visionJobs" DISABLE TRIGGER USER')
        await conn.copy_records_to_table(
            "users", records=list(_user_rows(users_for(jobs))), columns=USER_COLUMNS
        )
        for start in range(1, jobs + 1, CHUNK):
            rows = list(_job_rows(jobs, start, min(start + CHUNK, jobs + 1)))
            await conn.copy_records_to_table("visionJobs", records=rows, columns=JOB_COLUMNS)
        await conn.execute('ALTER TABLE "visionJobs" ENABLE TRIGGER USER')
        for table in ("users", "visionJobs"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                f'(SELECT MAX(id) FROM "{table}"))'
            )
        await conn.execute('VACUUM ANALYZE "visionJobs"')
        await conn.execute("VACUUM ANALYZE users")
    finally:
        await conn.close()


async def load(url: str, jobs: int) -> None:
    if url.startswith("sqlite"):
        load_sqlite(url.split(":///", 1)[1], jobs)
    else:
        await load_postgres(url, jobs)
