"""The claim statement alone (issue 17): this checkout's ``claim_jobs`` against a revision's,
on the same rows, 10,000 waiting jobs over 1 and over 100 users (16 running).

    .venv/bin/python -m bench.claim_cost --baseline 8c21bf7 [--claim 16] [--reps 300]

PostgreSQL: each run in a transaction rolled back, the two statements alternated, prepared
(asyncpg's statement cache, as the driver runs them), median round trip; then one EXPLAIN
ANALYZE of each (its execution time). SQLite: the same in process (sqlite3). Prints a table.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from bench.common import ROOT, create_pg, drop_pg
from storage.queries import parse
from storage.schema import push
from storage.urls import parse_database_url

FILL = """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose", "outputFormat",
    "creativityLevel", status, progress, "retryCount", "maxRetries", "createdAt", "updatedAt",
    "runAfter", attempt, "cancelRequested", "costUsd")
SELECT 1 + (g % $2), 'http://x/y.png', 'p', 'bullet_points', 1,
    CASE WHEN g <= 16 THEN 'gemini_analyzing' ELSE 'pending' END, 0, 0, 3, $1, $1, $1, 0,
    FALSE, 0
FROM generate_series(1, 10016) AS g"""
SQLITE_FILL = """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose",
    "outputFormat", "creativityLevel", status, progress, "retryCount", "maxRetries", "createdAt",
    "updatedAt", "runAfter", attempt, "cancelRequested", "costUsd")
VALUES (?1, 'http://x/y.png', 'p', 'bullet_points', 1, ?2, 0, 0, 3, ?3, ?3, ?3, 0, 0, 0)"""


def statements(rev: str, dialect: str) -> tuple[str, str]:
    """(the revision's claim_jobs, ours) for a dialect's file."""
    name = f"storage/sql/{dialect}.sql"
    before = subprocess.run(
        ["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return parse(before)["claim_jobs"][1], parse((ROOT / name).read_text())["claim_jobs"][1]


async def postgres(rev: str, users: int, n: int, reps: int) -> dict[str, Any]:
    old, new = statements(rev, "postgres")
    url = await create_pg("claimcost")
    try:
        await push(parse_database_url(url))
        conn = await asyncpg.connect(url)
        try:
            now = datetime.now(UTC)
            await conn.execute(FILL, now, users)
            await conn.execute('VACUUM ANALYZE "visionJobs"')
            args = ("w", now, now + timedelta(seconds=30), n)
            cases = {"before": (old, args), "after": (new, (*args, 0))}
            times: dict[str, list[float]] = {"before": [], "after": []}
            for i in range(reps):
                for name in ("before", "after") if i % 2 else ("after", "before"):
                    sql, a = cases[name]
                    tr = conn.transaction()
                    await tr.start()
                    t = time.perf_counter()
                    got = await conn.fetch(sql, *a)
                    times[name].append(1000 * (time.perf_counter() - t))
                    await tr.rollback()
                    assert len(got) == n
                if i % 50 == 49:
                    await conn.execute('VACUUM "visionJobs"')
            explained = {}
            for name, (sql, a) in cases.items():
                tr = conn.transaction()
                await tr.start()
                plan = await conn.fetch("EXPLAIN ANALYZE " + sql, *a)
                await tr.rollback()
                explained[name] = plan[-1][0].split(": ")[1]
        finally:
            await conn.close()
    finally:
        await drop_pg(url)
    return {
        k: f"{statistics.median(v):.3f} ms (EXPLAIN ANALYZE {explained[k]})"
        for k, v in times.items()
    }


def sqlite(rev: str, users: int, n: int, reps: int) -> dict[str, Any]:
    old, new = statements(rev, "sqlite")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "claim.db"
        anyio.run(push, parse_database_url(f"sqlite:///{path}"))
        conn = sqlite3.connect(path, isolation_level=None)
        now = datetime.now(UTC).isoformat()
        conn.execute("BEGIN")
        conn.executemany(
            SQLITE_FILL,
            [(1 + g % users, "gemini_analyzing" if g <= 16 else "pending", now)
             for g in range(1, 10017)],
        )  # fmt: skip
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        args = ("w", later, later, n)
        cases = {"before": (old, args), "after": (new, (*args, 0))}
        times: dict[str, list[float]] = {"before": [], "after": []}
        for i in range(reps):
            for name in ("before", "after") if i % 2 else ("after", "before"):
                sql, a = cases[name]
                conn.execute("BEGIN")
                t = time.perf_counter()
                got = conn.execute(sql, a).fetchall()
                times[name].append(1000 * (time.perf_counter() - t))
                conn.execute("ROLLBACK")
                assert len(got) == n
        conn.close()
    return {k: f"{statistics.median(v):.3f} ms" for k, v in times.items()}


async def _postgres_all(rev: str, n: int, reps: int) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for users in (1, 100):
        out.append((f"postgresql, {users} users", await postgres(rev, users, n, reps)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.claim_cost", description=__doc__)
    p.add_argument("--baseline", required=True, metavar="REV", help="the revision compared")
    p.add_argument("--claim", type=int, default=16, help="jobs asked for by each claim")
    p.add_argument("--reps", type=int, default=300, help="runs of each statement")
    a = p.parse_args()
    rows = [(f"sqlite, {u} users", sqlite(a.baseline, u, a.claim, a.reps)) for u in (1, 100)]
    rows += anyio.run(_postgres_all, a.baseline, a.claim, a.reps)
    print(f"claim_jobs of {a.claim} jobs, 10,000 waiting + 16 running, median of {a.reps}")
    for case, found in rows:
        print(f"{case:24}  before ({a.baseline}) {found['before']}   after {found['after']}")


if __name__ == "__main__":
    main()
