"""The peer queues on the same PostgreSQL, doing no-op jobs: procrastinate and pgqueuer.

    .venv/bin/python -m bench.peers pgqueuer|procrastinate --dsn postgresql://… \
        [--jobs 5000] [--pickup 200] [--concurrency 16]

Each runs in a database of its own (the caller creates and drops it). Measured as ours is:
- pickup: an idle worker; one job is enqueued (its payload carries the wall-clock time just
  before the enqueue call) and its handler notes when it starts; then the next, after a
  short random pause;
- throughput: the worker runs while ``--jobs`` jobs are enqueued in batches of 1,000; jobs
  per second from the first enqueue until the queue holds no unfinished job.
Prints one JSON line. pgqueuer runs with its default batch size (10); procrastinate with
``--concurrency`` (our worker's default, 16).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

BATCH = 1000


class Tally:
    """Counts handler calls; ``expect(n)`` then ``await reached.wait()`` for the n-th."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.done = 0
        self.goal = 0
        self.reached = asyncio.Event()

    def expect(self, goal: int) -> None:
        self.done, self.goal, self.reached = 0, goal, asyncio.Event()

    def hit(self) -> None:
        self.started.append(time.time())
        self.done += 1
        if self.done >= self.goal:
            self.reached.set()


async def _pickup(
    enqueue: Callable[[float], Awaitable[None]], tally: Tally, count: int
) -> list[float]:
    latencies: list[float] = []
    for _ in range(count):
        tally.expect(1)
        t0 = time.time()
        await enqueue(t0)
        await asyncio.wait_for(tally.reached.wait(), 30)
        latencies.append((tally.started[-1] - t0) * 1000)
        await asyncio.sleep(random.uniform(0.02, 0.06))
    return latencies


async def _drain(conn: Any, unfinished_sql: str, within: float) -> None:
    """Wait until the queue table holds no unfinished job (completions may be buffered)."""
    deadline = time.monotonic() + within
    # another connection's commits: nothing to wait on but the table
    while await conn.fetchval(unfinished_sql) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def pgqueuer(dsn: str, jobs: int, pickups: int, concurrency: int) -> dict[str, Any]:
    from pgqueuer import AsyncpgDriver, PgQueuer, Queries
    from pgqueuer.models import Job

    admin = await asyncpg.connect(dsn)
    await Queries(AsyncpgDriver(admin)).install()
    worker_conn = await asyncpg.connect(dsn)
    pgq = PgQueuer.from_asyncpg_connection(worker_conn)
    tally = Tally()

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        tally.hit()

    queries = Queries(AsyncpgDriver(admin))
    runner = asyncio.create_task(pgq.run(batch_size=10))
    await asyncio.sleep(1.0)  # LISTEN established

    async def enqueue_one(t0: float) -> None:
        await queries.enqueue("noop", str(t0).encode())

    latencies = await _pickup(enqueue_one, tally, pickups)
    tally.expect(jobs)
    t0 = time.monotonic()
    for start in range(0, jobs, BATCH):
        n = min(BATCH, jobs - start)
        await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
    await asyncio.wait_for(tally.reached.wait(), 600)
    await _drain(admin, "SELECT COUNT(*) FROM pgqueuer", 60)
    seconds = time.monotonic() - t0
    pgq.shutdown.set()
    await asyncio.wait_for(runner, 30)
    await worker_conn.close()
    await admin.close()
    return {
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "pickup_ms": latencies,
        "settings": "batch_size=10",
    }


async def procrastinate(dsn: str, jobs: int, pickups: int, concurrency: int) -> dict[str, Any]:
    import procrastinate as pc

    app = pc.App(connector=pc.PsycopgConnector(conninfo=dsn))
    tally = Tally()

    @app.task(name="noop")
    async def noop(t: float = 0.0) -> None:
        tally.hit()

    admin = await asyncpg.connect(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        runner = asyncio.create_task(app.run_worker_async(concurrency=concurrency, wait=True))
        await asyncio.sleep(1.0)

        async def enqueue_one(t0: float) -> None:
            await noop.defer_async(t=t0)

        latencies = await _pickup(enqueue_one, tally, pickups)
        tally.expect(jobs)
        t0 = time.monotonic()
        for start in range(0, jobs, BATCH):
            kwargs: list[dict[str, Any]] = [{"t": 0.0}] * min(BATCH, jobs - start)
            await noop.batch_defer_async(*kwargs)
        await asyncio.wait_for(tally.reached.wait(), 600)
        unfinished = "SELECT COUNT(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        await _drain(admin, unfinished, 60)
        seconds = time.monotonic() - t0
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    await admin.close()
    return {
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "pickup_ms": latencies,
        "settings": f"concurrency={concurrency}",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("queue", choices=["pgqueuer", "procrastinate"])
    p.add_argument("--dsn", required=True)
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--pickup", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    run = pgqueuer if args.queue == "pgqueuer" else procrastinate
    result = asyncio.run(run(args.dsn, args.jobs, args.pickup, args.concurrency))
    import importlib.metadata

    result["version"] = importlib.metadata.version(args.queue)
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
