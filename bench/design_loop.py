"""The design document's worker loop, reproduced as a baseline (shared/seed/000_…: Step 3).

``setInterval(pollAndProcessJobs, 2000)`` with an initial poll: each tick takes the oldest
pending job (``SELECT … WHERE status = 'pending' ORDER BY createdAt LIMIT 1``) and runs it
through ``updateVisionJobStatus`` (gemini_analyzing 25), the vision call,
(deepseek_generating 60), the content call, ``completeVisionJob`` (complete 100 with both
outputs, the job read back, the outputs row inserted), then looks for failed jobs to retry
(``status = 'error' AND retryCount < maxRetries … LIMIT 5``). Every statement commits on its
own, as drizzle runs them. The providers answer at once, so what is measured is the loop.

Jobs are created through our API (``serve --no-worker``) on the same tables, so the figures
come from the same rows as ours: pickup from the job's createdAt to its first non-pending
event (the triggers record the loop's updates too). The loop runs a short time and its
throughput is extrapolated to the 5,000-job run (one job per tick cannot do more).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from bench.common import Db, api_client, create_job, create_jobs, database, start_serve

POLL_INTERVAL_S = 2.0
NEXT_PENDING = """SELECT id, "userId", "geminOutput" FROM "visionJobs" WHERE status = 'pending'
    ORDER BY "createdAt" LIMIT 1"""
UPDATE_STATUS = """UPDATE "visionJobs" SET status = $2, progress = $3, "updatedAt" = $4
    WHERE id = $1"""
COMPLETE = """UPDATE "visionJobs" SET status = 'complete', progress = 100, "geminOutput" = $2,
    "geminAnalyzedAt" = $4, "deepseekOutput" = $3, "deepseekGeneratedAt" = $4,
    "completedAt" = $4, "updatedAt" = $4 WHERE id = $1"""
BY_ID = 'SELECT * FROM "visionJobs" WHERE id = $1'
INSERT_OUTPUTS = """INSERT INTO "visionJobOutputs" ("jobId", "userId", colors_primary, mood,
    content_pieces, "isTrainingData", "createdAt") VALUES ($1, $2, '["#287959"]', 'calm',
    $3, TRUE, $4)"""
FAILED_FOR_RETRY = """SELECT id FROM "visionJobs" WHERE status = 'error'
    AND "retryCount" < "maxRetries" ORDER BY "updatedAt" LIMIT 5"""
PICKED = """SELECT j.id, j."createdAt", MIN(e."createdAt") FROM "visionJobs" j
    JOIN "visionJobEvents" e ON e."jobId" = j.id AND e.status <> 'pending'
    GROUP BY j.id, j."createdAt\""""
COMPLETED = """SELECT COUNT(*) FROM "visionJobs" WHERE status = 'complete'"""
GEMIN = '{"colors":{"primary":["#287959"]},"mood_and_tone":{"mood":"calm"}}'
DEEPSEEK = '[{"title":"Colour palette","body":"A calm green."}]'


def _now(db: Db) -> Any:
    from storage.timeutil import to_sqlite

    now = datetime.now(UTC)
    return to_sqlite(now) if db.dialect == "sqlite" else now


async def _exec(db: Db, sql: str, *args: Any) -> None:
    if db.dialect == "sqlite":
        await db.fetch(sql, *args)  # autocommit: each statement commits on its own
    else:
        await db.conn.execute(sql, *args)


async def poll_and_process(db: Db) -> None:
    """One tick of the design document's pollAndProcessJobs."""
    rows = await db.fetch(NEXT_PENDING)
    if rows:
        job_id, user_id, _ = rows[0]
        await _exec(db, UPDATE_STATUS, job_id, "gemini_analyzing", 25, _now(db))
        await _exec(db, UPDATE_STATUS, job_id, "deepseek_generating", 60, _now(db))
        await _exec(db, COMPLETE, job_id, GEMIN, DEEPSEEK, _now(db))
        await db.fetch(BY_ID, job_id)
        await _exec(db, INSERT_OUTPUTS, job_id, user_id, DEEPSEEK, _now(db))
    await db.fetch(FAILED_FOR_RETRY)


async def run_loop(db: Db, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """``setInterval`` semantics: a tick every 2 s from the start, whatever a tick took."""
    start = anyio.current_time()
    task_status.started()
    tick = 0
    while True:
        await poll_and_process(db)
        tick += 1
        await anyio.sleep_until(start + tick * POLL_INTERVAL_S)


async def measure(backend: str, tmp: Path, *, pickups: int, seconds: float) -> dict[str, Any]:
    """Pickup of ``pickups`` lone jobs, then ``seconds`` of the loop on a queue that never
    runs dry (more jobs waiting than the loop can take in that time)."""
    from bench.common import seconds_between

    async with database(backend, tmp, f"design_{backend}") as url:
        api = await start_serve(
            url, tmp / f"design_{backend}.log", "--no-worker", LOG_LEVEL="warning"
        )
        db, loop_db = await Db.open(url), await Db.open(url)  # the loop has its own connection
        try:
            async with api_client(api.base) as client, anyio.create_task_group() as tg:
                await tg.start(run_loop, loop_db)
                await anyio.sleep(random.uniform(0, POLL_INTERVAL_S))
                for i in range(pickups):  # lone jobs at random moments of the tick
                    await create_job(client)
                    # the loop runs in this process but says nothing: watch the row
                    while int(await db.scalar(COMPLETED)) < i + 1:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                    await anyio.sleep(random.uniform(0, POLL_INTERVAL_S))
                picked = await db.fetch(PICKED)
                before = int(await db.scalar(COMPLETED))
                await create_jobs(client, int(seconds / POLL_INTERVAL_S) + 20, batch=50)
                t0 = time.monotonic()
                await anyio.sleep(seconds)
                done = int(await db.scalar(COMPLETED)) - before
                elapsed = time.monotonic() - t0
                tg.cancel_scope.cancel()
        finally:
            await db.close()
            await loop_db.close()
            api.stop()
    rate = done / elapsed
    return {
        "pickup_ms": [1000 * seconds_between(c, p) for _, c, p in picked],
        "ran_seconds": round(elapsed, 1),
        "completed": done,
        "jobs_per_s": round(rate, 3),
        "extrapolated_5000_jobs_s": round(5000 / rate) if rate else None,
    }
