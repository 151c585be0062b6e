"""Throughput: jobs created through the API in tRPC batches, one worker process running them.

- instant providers (section 2): jobs/s from the first job's createdAt to the last job's
  completedAt, the whole lifecycle (claim, both stage writes, outputs row, attempt row);
- realistic providers (section 3): 1.5 s vision, 3 s content (``anyio.sleep``) with
  WORKER_CONCURRENCY 64, against the ideal 64 / 4.5 s, with the jobs in flight sampled;
- memory (section 6): the instant worker's RSS as the completed count grows.

The API is ``rpc.cli serve --no-worker``; the worker is ``bench.instant_worker`` (the real
Worker, providers swapped). Each run gets a fresh database.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.common import (
    ROOT,
    Db,
    Proc,
    api_client,
    cpu_seconds,
    create_jobs,
    database,
    median,
    rss_mib,
    seconds_between,
    start_serve,
    start_worker,
    wait_until,
)

DONE = """SELECT COUNT(*) FROM "visionJobs" WHERE status IN ('complete', 'error')"""
RUNNING = """SELECT COUNT(*) FROM "visionJobs"
    WHERE status IN ('gemini_analyzing', 'deepseek_generating')"""
SPAN = """SELECT MIN("createdAt"), MAX("completedAt"), COUNT(*) FILTER (WHERE status = 'complete')
    FROM "visionJobs\""""
# Jobs claimed together share the claim's lockedAt: rows per distinct lockedAt = claim size.
CLAIM_SIZE = """SELECT COUNT(*), COUNT(DISTINCT "lockedAt") FROM "visionJobs"
    WHERE "lockedAt" IS NOT NULL"""
CHECK = """SELECT (SELECT COUNT(*) FROM "visionJobOutputs"), (SELECT COUNT(*) FROM
    "visionJobSessions" WHERE outcome = 'complete')"""


def worker_stats(proc: Proc) -> dict[str, Any]:
    for line in reversed(proc.log().splitlines()):
        if line.startswith("BENCH-STATS "):
            return dict(json.loads(line.split(" ", 1)[1]))
    return {}


async def _lifecycle(
    backend: str,
    tmp: Path,
    jobs: int,
    *,
    concurrency: int,
    vision: float = 0.0,
    content: float = 0.0,
    batch: int = 50,
    sample_running: bool = False,
    cwd: Path = ROOT,
    users: int = 1,
) -> dict[str, Any]:
    """Create ``jobs`` through the API while one worker runs them; figures from the rows.
    ``cwd``: the checkout whose processes run (a ``--baseline`` revision's, or ours);
    ``users``: the jobs spread over that many users (batch i is user i mod users's)."""
    tag = f"tp_{backend}_{concurrency}_{int(vision * 10)}_{users}"
    # A baseline revision's serve makes its own schema: one pushed by this checkout may be
    # newer than it knows, and it rightly refuses to run on that.
    async with database(backend, tmp, tag, schema=cwd == ROOT) as url:
        api = await start_serve(
            url, tmp / f"{tag}_api.log", "--no-worker", cwd=cwd, LOG_LEVEL="warning"
        )
        worker = await start_worker(
            url,
            tmp / f"{tag}_worker.log",
            cwd=cwd,
            instant=True,
            vision_seconds=vision,
            content_seconds=content,
            WORKER_CONCURRENCY=str(concurrency),
        )
        db, sampler = await Db.open(url), await Db.open(url)  # one connection per task
        samples: list[int] = []
        try:
            cpu0 = {"api": cpu_seconds(api.pid), "worker": cpu_seconds(worker.pid)}
            wall0 = time.monotonic()
            async with anyio.create_task_group() as tg:
                if sample_running:

                    async def sample() -> None:
                        while True:
                            samples.append(int(await sampler.scalar(RUNNING)))
                            await anyio.sleep(0.25)

                    tg.start_soon(sample)
                await _create_spread(api.base, jobs, batch, users)
                created_wall = time.monotonic() - wall0
                finished = await wait_until(db, DONE, jobs, within=max(120.0, jobs / 10))
                tg.cancel_scope.cancel()
            wall = time.monotonic() - wall0
            cpu = {
                "api": cpu_seconds(api.pid) - cpu0["api"],
                "worker": cpu_seconds(worker.pid) - cpu0["worker"],
            }
            first, last, complete = (await db.fetch(SPAN))[0]
            outputs, attempts = (await db.fetch(CHECK))[0]
            claimed, claims = (await db.fetch(CLAIM_SIZE))[0]
            rss = rss_mib(worker.pid)
        finally:
            await db.close()
            await sampler.close()
            worker.stop()
            api.stop()
    span = seconds_between(first, last) if finished else float("nan")
    return {
        "jobs": jobs,
        "complete": complete,
        "outputs_rows": outputs,
        "attempt_rows": attempts,
        "finished": finished,
        "seconds": round(span, 3),
        "jobs_per_s": round(complete / span, 1),
        "create_seconds": round(created_wall, 3),
        "wall_seconds": round(wall, 3),
        "cpu_api_s": round(cpu["api"], 2),
        "cpu_worker_s": round(cpu["worker"], 2),
        "worker_rss_mib": round(rss, 1),
        "mean_claim_size": round(claimed / max(claims, 1), 2),
        "worker": worker_stats(worker),
        "running_samples": samples,
    }


async def _create_spread(base: str, jobs: int, batch: int, users: int) -> None:
    """``jobs`` through createJob in batches of ``batch``, 4 batches in flight, the batches
    dealt round-robin to ``users`` users (one user: the single client of before). Each user
    is seen once first, so the span (first createdAt on) holds the same work as one user's."""
    if users <= 1:
        async with api_client(base) as client:
            await create_jobs(client, jobs, batch=batch)
        return
    sizes = [min(batch, jobs - start) for start in range(0, jobs, batch)]
    clients = [api_client(base, f"bench-{u}") for u in range(min(users, len(sizes)))]
    limiter = anyio.Semaphore(4)

    async def meet(client: httpx.AsyncClient) -> None:
        async with limiter:  # a user's first request creates its row: not in the timed part
            (await client.get("/auth.me")).raise_for_status()

    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(meet, client)

    async def send(index: int, size: int) -> None:
        async with limiter:
            await create_jobs(clients[index % len(clients)], size, batch=size, parallel=1)

    try:
        async with anyio.create_task_group() as tg:
            for index, size in enumerate(sizes):
                tg.start_soon(send, index, size)
    finally:
        for client in clients:
            await client.aclose()


async def instant(
    backend: str, tmp: Path, jobs: int, concurrency: int = 16, cwd: Path = ROOT, users: int = 1
) -> dict[str, Any]:
    return await _lifecycle(backend, tmp, jobs, concurrency=concurrency, cwd=cwd, users=users)


async def realistic(
    backend: str,
    tmp: Path,
    jobs: int,
    concurrency: int = 64,
    vision: float = 1.5,
    content: float = 3.0,
) -> dict[str, Any]:
    """Jobs/s against the ideal ``concurrency / (vision + content)``; in-flight sampled."""
    result = await _lifecycle(
        backend,
        tmp,
        jobs,
        concurrency=concurrency,
        vision=vision,
        content=content,
        sample_running=True,
    )
    ideal = concurrency / (vision + content)
    samples = result.pop("running_samples")
    # Steady state: leave out the first and last stage-lengths of samples (ramp up / down).
    edge = int((vision + content) / 0.25)
    steady = samples[edge:-edge] if len(samples) > 2 * edge + 2 else samples
    result.update(
        ideal_jobs_per_s=round(ideal, 2),
        vs_ideal=round(result["jobs_per_s"] / ideal, 3),
        in_flight_median=median(steady),
        in_flight_max=max(samples, default=0),
    )
    return result


INSERT_PENDING = """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose",
    "outputFormat", "creativityLevel", status, progress, "retryCount", "maxRetries", "createdAt",
    "updatedAt", "runAfter", attempt, "cancelRequested", "costUsd")
    VALUES (1, 'https://bench.invalid/x.png', 'memory', 'bullet_points', 1.0, 'pending', 0, 0,
    3, $1, $1, $1, 0, FALSE, 0)"""


async def _insert_pending(db: Db, count: int) -> None:
    """Pending jobs straight into the table (the worker is measured here, not the API)."""
    from storage.timeutil import to_sqlite, utcnow

    now = utcnow()
    if db.dialect == "sqlite":
        sql = INSERT_PENDING.replace("$1", "?")
        db.conn.execute("BEGIN IMMEDIATE")
        db.conn.executemany(sql, [(to_sqlite(now),) * 3] * count)
        db.conn.execute("COMMIT")
    else:
        await db.conn.executemany(INSERT_PENDING, [(now,)] * count)


async def memory(
    backend: str, tmp: Path, checkpoints: list[int], chunk: int = 5000
) -> dict[str, Any]:
    """The instant worker's RSS after each checkpoint's count of completed jobs. Jobs are
    inserted in chunks straight into the table (kept ahead of the worker, never all at once),
    the worker finds them through the change feed."""
    tag = f"mem_{backend}"
    rss: dict[str, float] = {}
    async with database(backend, tmp, tag) as url:
        worker = await start_worker(
            url, tmp / f"{tag}_worker.log", instant=True, LOG_LEVEL="warning"
        )
        db = await Db.open(url)
        t0 = time.monotonic()
        try:
            inserted = 0
            for point in checkpoints:
                while inserted < point:
                    count = min(chunk, point - inserted)
                    await _insert_pending(db, count)
                    inserted += count
                    # keep at most two chunks waiting
                    await wait_until(db, DONE, inserted - chunk, within=600, interval=0.1)
                await wait_until(db, DONE, point, within=600, interval=0.1)
                await anyio.sleep(1.0)  # let the feed and the allocator settle
                rss[str(point)] = round(rss_mib(worker.pid), 1)
        finally:
            await db.close()
            worker.stop()
    first, last = rss[str(checkpoints[0])], rss[str(checkpoints[-1])]
    return {
        "rss_mib": rss,
        "growth_mib": round(last - first, 1),
        "growth_pct": round(100 * (last - first) / first, 1),
        "seconds": round(time.monotonic() - t0, 1),
    }
