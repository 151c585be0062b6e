"""What idle live-progress subscribers cost the server: RSS and CPU of a ``serve`` process with
none, then with N idle ``onJobProgress`` streams, then how fast one change reaches them all.

    .venv/bin/python -m bench.sse_idle [--subscribers 2000] [--seconds 20] [--ping-ms 10000]

It starts ``vision-pipeline serve --no-worker`` on a fresh SQLite file (offline providers),
creates ``--jobs`` pending jobs (nothing runs them), measures the idle server for ``--seconds``,
opens the subscribers (spread over the jobs), measures again, then fails every job with one SQL
UPDATE (the triggers write the events; the feed's 25 ms poll finds them) and times until every
stream has its final event and ``return``. Figures come from ``/proc`` (Linux only): RSS, and
CPU time over the window as a percentage of one core. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from bench.common import cpu_seconds, rss_mib
from tests.support import Server, start_server


async def window(pid: int, seconds: float) -> tuple[float, float]:
    """(RSS MiB at the end, CPU % of one core) over ``seconds`` of doing nothing here."""
    start, t0 = cpu_seconds(pid), time.monotonic()
    await anyio.sleep(seconds)
    used, elapsed = cpu_seconds(pid) - start, time.monotonic() - t0
    return rss_mib(pid), 100 * used / elapsed


def create_jobs(srv: Server, jobs: int) -> list[int]:
    """Pending jobs (the server has no worker and the image is never fetched)."""
    headers = {"authorization": f"Bearer {srv.token('bench')}"}
    body = {"imageUrl": "http://127.0.0.1:9/never-fetched.png", "analysisPurpose": "bench",
            "outputFormat": "bullet_points"}  # fmt: skip
    with httpx.Client(base_url=srv.trpc, headers=headers, timeout=30) as client:
        return [client.post("/visionPipeline.createJob", json=body).json()["result"]["data"]
                ["jobId"] for _ in range(jobs)]  # fmt: skip


def fail_pending(db_path: Path) -> None:
    """One UPDATE of every pending job: the triggers write one event per job."""
    db = sqlite3.connect(db_path, timeout=30)
    db.execute('UPDATE "visionJobs" SET status = \'error\', "errorMessage" = \'bench\', '
               "\"updatedAt\" = CURRENT_TIMESTAMP WHERE status = 'pending'")  # fmt: skip
    db.commit()
    db.close()


async def run(srv: Server, subscribers: int, job_ids: list[int], seconds: float
              ) -> list[tuple[str, str]]:  # fmt: skip
    pid, jobs = srv.process.pid, len(job_ids)
    headers = {"authorization": f"Bearer {srv.token('bench')}"}
    rows: list[tuple[str, str]] = []
    rss0, cpu0 = await window(pid, seconds)
    rows.append(("idle, no subscribers", f"{rss0:8.1f} {cpu0:8.2f}"))

    ready, gate, all_ready, done = 0, anyio.Semaphore(100), anyio.Event(), 0
    finished = anyio.Event()
    changed_at = 0.0
    last_arrival = 0.0

    async def subscribe(i: int, clients: list[httpx.AsyncClient]) -> None:
        nonlocal ready, done, last_arrival
        params = {"input": json.dumps({"jobId": job_ids[i % jobs]})}
        await gate.acquire()
        events = 0
        client = clients[i % len(clients)]
        async with client.stream("GET", "/visionPipeline.onJobProgress", params=params) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    events += 1
                    if events == 1:  # the current state: this subscriber is set up
                        gate.release()
                        ready += 1
                        if ready == subscribers:
                            all_ready.set()
                    else:
                        last_arrival = time.monotonic()
        done += 1
        if done == subscribers:
            finished.set()

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(600, connect=60)
    # Several clients: one httpx pool holding thousands of connections is slow to use.
    clients = [
        httpx.AsyncClient(base_url=srv.trpc, headers=headers, limits=limits, timeout=timeout)
        for _ in range(max(1, subscribers // 100))
    ]
    async with anyio.create_task_group() as tg:
        t0, cpu_start = time.monotonic(), cpu_seconds(pid)
        for i in range(subscribers):
            tg.start_soon(subscribe, i, clients)
        await all_ready.wait()
        opened, open_cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu_start
        rows.append(
            (
                f"opening {subscribers} subscribers",
                f"{'':8} {'':8}   {opened:.1f} s "
                f"(server CPU {open_cpu:.1f} s, {open_cpu * 1000 / subscribers:.1f} ms each)",
            )
        )
        rss1, cpu1 = await window(pid, seconds)
        per = (rss1 - rss0) * 1024 / subscribers
        rows.append((f"{subscribers} idle subscribers",
                     f"{rss1:8.1f} {cpu1:8.2f}   +{per:.1f} KiB each"))  # fmt: skip
        cpu_before = cpu_seconds(pid)
        changed_at = time.monotonic()
        await anyio.to_thread.run_sync(fail_pending, srv.db_path)
        await finished.wait()
        fan_cpu = (cpu_seconds(pid) - cpu_before) * 1000
    for client in clients:
        await client.aclose()
    fan_out = (last_arrival - changed_at) * 1000
    rows.append(
        (
            "one change to every job",
            f"{'':8} {'':8}   all received it in {fan_out:.0f} ms "
            f"(server CPU {fan_cpu:.0f} ms, {fan_cpu * 1000 / subscribers:.0f} µs each)",
        )
    )
    await anyio.sleep(1)
    rows.append(("after they all ended", f"{rss_mib(pid):8.1f}"))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--seconds", type=float, default=20.0, help="length of each idle window")
    p.add_argument("--ping-ms", type=int, default=10_000, help="SSE_PING_MS of the server")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.subscribers + 1000)),
                                                hard))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        inactivity = str(max(30_000, 3 * args.ping_ms)) if args.ping_ms else "0"
        srv = start_server(Path(tmp) / "jobs.db", Path(tmp) / "server.log", "--no-worker",
                           SSE_PING_MS=str(args.ping_ms), LOG_LEVEL="warning",
                           SSE_RECONNECT_AFTER_INACTIVITY_MS=inactivity)  # fmt: skip
        try:
            job_ids = create_jobs(srv, args.jobs)
            rows = anyio.run(run, srv, args.subscribers, job_ids, args.seconds)
        finally:
            srv.stop()
    print(f"server: vision-pipeline serve --no-worker, SQLite, SSE_PING_MS={args.ping_ms}; "
          f"windows of {args.seconds:g} s; CPU in % of one core")  # fmt: skip
    print(f"{'phase':34} {'RSS MiB':>8} {'CPU %':>8}")
    for name, figures in rows:
        print(f"{name:34} {figures}")


if __name__ == "__main__":
    main()
