"""Pickup latency: an idle worker, one job created through the API, the time until its status
leaves ``pending``, measured on the database's own timestamps: the job's ``createdAt`` (set in
the creating transaction) to the ``createdAt`` of its first non-pending ``visionJobEvents``
row (the claim's time, written by the trigger in the claiming transaction).

Two layouts per backend, real processes with the offline providers:
- ``serve``: ``rpc.cli serve``, its worker in the same process (woken by the creating request);
- ``serve + worker``: ``rpc.cli serve --no-worker`` and a separate ``rpc.cli worker`` (woken by
  NOTIFY on PostgreSQL, by the change feed's poll of the event counter on SQLite).
Each job runs to its end before the next is created after a random 20–60 ms pause, so the
worker is idle every time. The first jobs (warm-up) are not counted.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio

from bench.common import (
    ROOT,
    Db,
    api_client,
    create_job,
    database,
    percentile,
    seconds_between,
    start_serve,
    start_worker,
)

WARMUP = 5
FINISHED = """SELECT status IN ('complete', 'error') FROM "visionJobs" WHERE id = $1"""
PICKED = """SELECT j.id, j."createdAt", MIN(e."createdAt") FROM "visionJobs" j
    JOIN "visionJobEvents" e ON e."jobId" = j.id AND e.status <> 'pending'
    WHERE j.id > $1 GROUP BY j.id, j."createdAt" ORDER BY j.id"""


def summary(latencies_ms: list[float]) -> dict[str, Any]:
    return {
        "n": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 50), 2),
        "p95_ms": round(percentile(latencies_ms, 95), 2),
        "max_ms": round(max(latencies_ms, default=float("nan")), 2),
    }


async def measure(
    backend: str, layout: str, tmp: Path, jobs: int, cwd: Path = ROOT
) -> dict[str, Any]:
    """``cwd``: the checkout whose processes run (a ``--baseline`` revision's, or ours)."""
    tag = f"pickup_{backend}_{'sep' if layout != 'serve' else 'in'}"
    # A baseline revision's serve makes its own schema: one pushed by this checkout may be
    # newer than it knows, and it rightly refuses to run on that.
    async with database(backend, tmp, tag, schema=cwd == ROOT) as url:
        procs = []
        try:
            if layout == "serve":
                api = await start_serve(url, tmp / f"{tag}.log", cwd=cwd, LOG_LEVEL="warning")
                procs.append(api)
            else:
                api = await start_serve(
                    url, tmp / f"{tag}_api.log", "--no-worker", cwd=cwd, LOG_LEVEL="warning"
                )
                procs.append(api)
                procs.append(await start_worker(url, tmp / f"{tag}_worker.log", cwd=cwd))
            db = await Db.open(url)
            try:
                async with api_client(api.base) as client:
                    first_counted = 0
                    for i in range(WARMUP + jobs):
                        job_id = await create_job(client)
                        if i == WARMUP - 1:
                            first_counted = job_id
                        # another process changes the row: nothing to wait on but the row
                        while not await db.scalar(FINISHED, job_id):  # noqa: ASYNC110
                            await anyio.sleep(0.002)
                        await anyio.sleep(random.uniform(0.02, 0.06))
                rows = await db.fetch(PICKED, first_counted)
            finally:
                await db.close()
        finally:
            for proc in procs:
                proc.stop()
    latencies = [1000 * seconds_between(created, picked) for _, created, picked in rows]
    return {**summary(latencies), "latencies_ms": [round(v, 3) for v in latencies]}
