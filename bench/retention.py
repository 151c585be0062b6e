"""§13 Retention: rounds of finished jobs created in bulk and pruned, on each backend; the
database's size and row counts after each round stay bounded.

The jobs are inserted straight into the tables (INSERT … SELECT, the triggers writing each
job's first event), not through the API: 200,000 createJob calls and runs would take an hour
and measure the API, not retention. Each job is complete, finished two days ago, with 4 events,
one attempt row, one outputs row (~3 KB of text with its job's outputs) and, one job in ten, a
stored image of its own (2 KiB). Then one housekeeping run prunes them as the product does
(``pipeline.retention.Housekeeping.run_once`` with RETENTION_DAYS=1, EVENT_RETENTION_HOURS=24:
``prune_events``, ``prune_jobs`` with their paced batches, then ``reclaim_space``, PostgreSQL's
VACUUM); each write transaction of the prunes is timed (wall time, queueing included), the
longest as the bound on how long a prune holds its locks, and the VACUUM apart.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import Db, database
from storage.store import JobStore

_JOBS = {
    "sqlite": """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose", "outputFormat",
    "creativityLevel", status, progress, "geminOutput", "deepseekOutput", "retryCount",
    "maxRetries", "createdAt", "updatedAt", "completedAt", "runAfter", attempt,
    "cancelRequested", "costUsd")
SELECT 1 + i % 50, CASE WHEN i % 10 = 0 THEN '/api/images/' || printf('%064d', $3 + i)
    ELSE 'https://example.com/a.png' END, 'brand', 'social', 1.0, 'complete', 100,
    printf('%.1000c', 'v'), printf('%.2000c', 'c'), 0, 3, $1, $1, $1, $1, 1, 0, 0.001
FROM n""",
    "postgresql": """
INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose", "outputFormat",
    "creativityLevel", status, progress, "geminOutput", "deepseekOutput", "retryCount",
    "maxRetries", "createdAt", "updatedAt", "completedAt", "runAfter", attempt,
    "cancelRequested", "costUsd")
SELECT 1 + i % 50, CASE WHEN i % 10 = 0 THEN '/api/images/' || lpad(($3 + i)::text, 64, '0')
    ELSE 'https://example.com/a.png' END, 'brand', 'social', 1.0, 'complete', 100,
    repeat('v', 1000), repeat('c', 2000), 0, 3, $1, $1, $1, $1, 1, FALSE, 0.001
FROM generate_series(1, $2::int) AS i""",
}
_IMAGES = {
    "sqlite": """INSERT INTO "visionImages" ("userId", sha256, "mimeType", "byteSize", width,
    height, data, "createdAt")
SELECT "userId", substr("imageUrl", 13), 'image/png', 2048, 64, 48, randomblob(2048), $1
FROM "visionJobs" WHERE id > $2 AND substr("imageUrl", 1, 12) = '/api/images/'""",
    "postgresql": """INSERT INTO "visionImages" ("userId", sha256, "mimeType", "byteSize", width,
    height, data, "createdAt")
SELECT "userId", substr("imageUrl", 13), 'image/png', 2048, 64, 48,
    decode(repeat('ab', 2048), 'hex'), $1
FROM "visionJobs" WHERE id > $2 AND substr("imageUrl", 1, 12) = '/api/images/'""",
}
# Three more events per job (its first, 'pending', the insert trigger wrote).
_EVENTS = """INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress, "createdAt")
SELECT j.id, j."userId", s.status, s.progress, j."updatedAt" FROM "visionJobs" AS j
CROSS JOIN (SELECT 'gemini_analyzing' AS status, 10 AS progress
            UNION ALL SELECT 'deepseek_generating', 50 UNION ALL SELECT 'complete', 100) AS s
WHERE j.id > $1"""
_SESSIONS = """INSERT INTO "visionJobSessions" ("jobId", attempt, "workerId", "stageReached",
    outcome, "startedAt", "endedAt", "geminiModel", "geminiInputTokens", "geminiOutputTokens",
    "geminiLatencyMs", "deepseekModel", "deepseekInputTokens", "deepseekOutputTokens",
    "deepseekLatencyMs", "costUsd")
SELECT id, 1, 'bench-worker', 'deepseek', 'complete', "updatedAt", "updatedAt", 'gemini',
    1200, 400, 900, 'deepseek', 600, 800, 1500, 0.001 FROM "visionJobs" WHERE id > $1"""
_OUTPUTS = """INSERT INTO "visionJobOutputs" ("jobId", "userId", colors_primary, mood, tone,
    content_pieces, "isTrainingData", "createdAt")
SELECT id, "userId", '["#112233"]', 'calm', 'warm', "deepseekOutput", TRUE, "updatedAt"
FROM "visionJobs" WHERE id > $1"""
DAY = timedelta(days=1)
TABLES = ("visionJobs", "visionJobEvents", "visionJobSessions", "visionJobOutputs",
          "visionImages")  # fmt: skip


async def _fill(db: Db, jobs: int, first_sha: int, finished: Any) -> None:
    """``jobs`` complete jobs finished at ``finished``, with their rows, in one transaction."""
    after = int(await db.scalar('SELECT coalesce(max(id), 0) FROM "visionJobs"'))
    sqlite = db.dialect == "sqlite"
    stamp = finished.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") if sqlite else finished
    statements = [
        (_JOBS[db.dialect], (stamp, jobs, first_sha)),
        (_IMAGES[db.dialect], (stamp, after)),
        (_EVENTS, (after,)),
        (_SESSIONS, (after,)),
        (_OUTPUTS, (after,)),
    ]
    if sqlite:
        db.conn.execute("BEGIN")
        for sql, args in statements:
            db.conn.execute(sql.replace("$", "?"), args)
        db.conn.execute("COMMIT")
        return
    async with db.conn.transaction():
        for sql, args in statements:
            await db.conn.execute(sql, *args)


async def _sizes(db: Db, url: str) -> dict[str, Any]:
    counts = {t: int(await db.scalar(f'SELECT count(*) FROM "{t}"')) for t in TABLES}
    out: dict[str, Any] = {"rows_jobs": counts["visionJobs"],
                           "rows_events": counts["visionJobEvents"],
                           "rows_other": sum(counts.values()) - counts["visionJobs"]
                           - counts["visionJobEvents"]}  # fmt: skip
    if db.dialect == "sqlite":
        path = url.split(":///", 1)[1]
        page = int(await db.scalar("PRAGMA page_size"))
        out["file_mib"], out["wal_mib"] = _file_mib(path), _file_mib(path + "-wal")
        out["free_mib"] = round(int(await db.scalar("PRAGMA freelist_count")) * page / 2**20, 1)
        return out
    out["db_mib"] = round(int(await db.scalar("SELECT pg_database_size(current_database())"))
                          / 2**20, 1)  # fmt: skip
    for t in TABLES:
        size = await db.scalar("SELECT pg_total_relation_size($1::regclass)", f'"{t}"')
        out[f"{t[6:].lower() or 'jobs'}_mib"] = round(int(size) / 2**20, 1)
    return out


def _file_mib(path: str) -> float:
    return round(os.path.getsize(path) / 2**20, 1) if os.path.exists(path) else 0.0


def _timed(store: JobStore, took: list[float], vacuum: list[float]) -> None:
    """Record how long each write transaction the store runs (the prunes' batches) and each
    ``reclaim_space`` took, in ms."""
    write, reclaim = store._write, store.reclaim_space

    async def timed(work: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await write(work)
        finally:
            took.append((time.perf_counter() - t0) * 1000)

    async def timed_reclaim() -> None:
        t0 = time.perf_counter()
        await reclaim()
        vacuum.append(time.perf_counter() - t0)

    store._write = timed  # type: ignore[method-assign]
    store.reclaim_space = timed_reclaim  # type: ignore[method-assign]


async def rounds(backend: str, tmp: Path, n_rounds: int, jobs: int) -> list[dict[str, Any]]:
    from pipeline.config import PipelineSettings
    from pipeline.retention import Housekeeping
    from storage.engine import open_store
    from storage.timeutil import utcnow

    found: list[dict[str, Any]] = []
    async with database(backend, tmp, "retention") as url:
        store, db = await open_store(url), await Db.open(url)
        settings = PipelineSettings(database_url=url, retention_days=1, event_retention_hours=24)
        housekeeping = Housekeeping(store, settings)  # as the worker runs it
        took: list[float] = []
        vacuum: list[float] = []
        _timed(store, took, vacuum)
        try:
            for r in range(1, n_rounds + 1):
                t0 = time.perf_counter()
                await _fill(db, jobs, r * 10_000_000, utcnow() - 2 * DAY)
                full = await _sizes(db, url)
                t1 = time.perf_counter()
                took.clear()
                vacuum.clear()
                pruned = await housekeeping.run_once()
                t2 = time.perf_counter()
                assert pruned is not None, "the bench's housekeeping did not get its lock"
                after = await _sizes(db, url)
                size_key = "file_mib" if backend == "sqlite" else "db_mib"
                found.append({"round": r, "created": r * jobs, "fill_s": round(t1 - t0, 1),
                              "prune_s": round(t2 - t1, 1), "vacuum_s": round(sum(vacuum), 1),
                              "transactions": len(took),
                              "median_tx_ms": round(statistics.median(took), 1),
                              "longest_tx_ms": round(max(took), 1),
                              "over_100ms": sum(t > 100 for t in took),
                              "events_pruned": pruned.events, "jobs_pruned": pruned.jobs,
                              f"full_{size_key}": full[size_key], **after})  # fmt: skip
        finally:
            await db.close()
            await store.driver.close()
    return found


async def section(s: Any, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    """``python -m bench --only retention``: a table per backend, one row per round."""
    for backend in o["backends"]:
        results = await rounds(backend, tmp, o["retention_rounds"], o["retention_jobs"])
        for row in results:
            s.row(f"{backend}, round {row.pop('round')}", **row)
        key = "file_mib" if backend == "sqlite" else "db_mib"
        first, last = results[0][f"full_{key}"], results[-1][f"full_{key}"]
        s.target(f"database bounded {backend}",
                 f"{first} → {last} MiB at the fullest, {results[-1]['rows_jobs']} jobs left "
                 f"after {results[-1]['created']:,} created", "≤ +25% over the first round",
                 last <= first * 1.25)  # fmt: skip
        longest = max(r["longest_tx_ms"] for r in results)
        s.target(f"prune transactions {backend}", f"longest {longest} ms", "≤ 100 ms",
                 longest <= 100)  # fmt: skip
