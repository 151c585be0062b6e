"""The cost of issue 17's reads on createJob: the budget check (``user_spend_today``, one
statement: the users row and, when a budget applies, the sum over the user's jobs changed
today) and the idempotencyKey look-up (``find_keyed_job``), on a table where the user has
20,000 jobs over 30 days (200 today, each with one attempt) beside 100,000 jobs of others.

    .venv/bin/python -m bench.budget [sqlite|postgresql]

Prints the median and p95 of 500 calls of each, in milliseconds (one connection, no other
load: the statement's own cost, not a throughput figure).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import anyio

from storage.budgets import KEY_TTL
from storage.driver import fetch_all
from storage.engine import open_store
from storage.queries import QUERIES, Query
from storage.timeutil import to_sqlite, utcnow
from tests.support import create_pg_database, drop_pg_database, sql

USER, OTHERS, MINE, TODAY = 1, 100_000, 20_000, 200


def _fill(url: str) -> None:
    now = utcnow()
    sqlite = url.startswith("sqlite")

    def ts(delta: timedelta) -> object:
        return to_sqlite(now - delta) if sqlite else now - delta

    sql(url, """INSERT INTO users ("openId", role, "createdAt", "updatedAt", "lastSignedIn",
        "dailyBudgetUsd") VALUES ('bench', 'user', ?, ?, ?, 5.0)""", ts(timedelta()),
        ts(timedelta()), ts(timedelta()))  # fmt: skip
    insert = """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose",
        "outputFormat", "creativityLevel", status, progress, "retryCount", "maxRetries",
        "createdAt", "updatedAt", "runAfter", attempt, "cancelRequested", "costUsd",
        "idempotencyKey") VALUES (?, 'https://x/y.png', 'p', 'bullet_points', 1.0,
        'complete', 100, 0, 3, ?, ?, ?, 1, FALSE, 0.01, ?)"""
    for i in range(OTHERS + MINE):
        user = USER if i < MINE else 2 + i % 500
        age = timedelta(minutes=i % TODAY) if i < TODAY else timedelta(days=1 + i % 30)
        key = f"k{i}" if i < TODAY else None
        _batch.append((user, ts(age), ts(age), ts(age), key))
        if len(_batch) == 2000 or i == OTHERS + MINE - 1:
            _flush(url, insert)
    sql(
        url,
        """INSERT INTO "visionJobSessions" ("jobId", attempt, outcome, "endedAt",
        "geminiInputTokens", "geminiOutputTokens", "geminiLatencyMs", "deepseekInputTokens",
        "deepseekOutputTokens", "deepseekLatencyMs", "costUsd")
        SELECT id, 1, 'complete', "updatedAt", 0, 0, 0, 0, 0, 0, 0.01 FROM "visionJobs" """,
    )


_batch: list[tuple[object, ...]] = []


def _flush(url: str, insert: str) -> None:
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split(":///", 1)[1])
        conn.executemany(insert, _batch)
        conn.commit()
        conn.close()
    else:
        import asyncpg

        parts = insert.split("?")
        numbered = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))

        async def run() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.executemany(numbered, _batch)
            finally:
                await conn.close()

        anyio.run(run)
    _batch.clear()


async def _measure(url: str) -> None:
    store = await open_store(url)
    try:
        midnight = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        for name, call in (
            ("user_spend_today", lambda: store.user_spend(USER, 0.0, midnight)),
            ("find_keyed_job", lambda: store.find_keyed_job(USER, "k7")),
        ):
            times = []
            for _ in range(520):
                start = time.perf_counter()
                await call()
                times.append((time.perf_counter() - start) * 1000)
            times = sorted(times[20:])
            p95 = times[int(len(times) * 0.95)]
            print(f"{name}: median {statistics.median(times):.3f} ms, p95 {p95:.3f} ms")
        query = QUERIES["user_spend_today"]
        explain = "EXPLAIN QUERY PLAN " if url.startswith("sqlite") else "EXPLAIN "
        plan = Query("plan", "", explain + str(query.postgres), explain + str(query.sqlite))
        rows = await store.driver.read(fetch_all(plan, USER, 0.0, True, midnight))
        print("  plan: " + " | ".join(str(r[-1]).strip() for r in rows))
        spent = await store.user_spend(USER, 0.0, midnight)
        print(f"  (spend read: ${spent.spent if spent else None}; keys kept {KEY_TTL})")
    finally:
        await store.driver.close()


async def _create(url: str) -> None:
    store = await open_store(url, create=True)
    await store.driver.close()


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    with tempfile.TemporaryDirectory() as tmp:
        url = (f"sqlite:///{Path(tmp) / 'bench.db'}" if backend == "sqlite"
               else create_pg_database("vp_bench_budget"))  # fmt: skip
        try:
            anyio.run(_create, url)
            _fill(url)
            if backend != "sqlite":
                sql(url, "ANALYZE")
            anyio.run(_measure, url)
        finally:
            if backend != "sqlite":
                drop_pg_database(url)


if __name__ == "__main__":
    main()
