"""One tree's API, driven in process: the ASGI app (``rpc.app.create_app``) gets tRPC GET
requests one after another, with no HTTP server, no wrk and no other process in the measured
loop. Reads its job (JSON) from the first line of stdin, then for each further line ``N``
runs N requests and prints the process's CPU µs per request as a JSON line. Run with the tree
to measure as the working directory (``bench.api_inproc`` runs ours and a ``--baseline``
checkout's side by side), so it only uses what every revision has: ``create_app`` and the
ASGI lifespan."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any
from urllib.parse import quote


async def _lifespan(app: Any) -> tuple[asyncio.Queue[Any], asyncio.Task[Any]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    started = asyncio.get_running_loop().create_future()

    async def receive() -> Any:
        return await inbox.get()

    async def send(message: Any) -> None:
        if message["type"].startswith("lifespan.startup") and not started.done():
            started.set_result(message["type"])

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    outcome = await started
    if outcome != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan: {outcome}")
    return inbox, task


def _scope(path: str, query: bytes, token: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {token}".encode()),
                    (b"user-agent", b"inproc")],
    }  # fmt: skip


def _log_as_serve_does() -> None:
    """Logging set up from the environment, as ``vision-pipeline serve`` sets it up (LOG_LEVEL,
    ACCESS_LOG): without it the access log's lines are never made. Trees from before
    ``rpc.logs`` have no such switch."""
    try:
        from rpc.config import Settings
        from rpc.logs import setup_logging
    except ImportError:
        return
    setup_logging(Settings())


async def _main(spec: dict[str, Any]) -> None:
    from rpc.app import create_app

    _log_as_serve_does()
    app = create_app(run_worker=False)
    inbox, task = await _lifespan(app)
    clients = [(int(u), t) for u, t in spec["clients"]]
    users, per_user = spec["users"], spec["per_user"]
    rng = random.Random(7)
    requests = []
    for _ in range(2000):
        user, token = rng.choice(clients)
        if spec["procedure"] == "status":
            job = user + users * rng.randrange(per_user)
            path, raw = "/api/trpc/visionPipeline.getJobStatus", f'{{"json":{{"jobId":{job}}}}}'
        else:
            path, raw = "/api/trpc/visionPipeline.getJobHistory", '{"json":{"limit":20,"offset":0}}'
        requests.append(_scope(path, b"input=" + quote(raw, safe="").encode(), token))
    statuses: list[int] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    at = 0

    async def one_pass(count: int) -> None:
        nonlocal at
        for i in range(at, at + count):
            await app(requests[i % len(requests)], receive, send)
        at += count

    await one_pass(spec["warmup"])
    # Then one measured pass per line read: "N" runs N requests and prints their figures, so
    # the caller can interleave short passes of two trees (drift between them cancels).
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        n = int(line)
        statuses.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        await one_pass(n)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        bad = sum(1 for s in statuses if s != 200)
        print(json.dumps({"cpu_us": 1e6 * cpu / n, "wall_us": 1e6 * wall / n, "non_200": bad}),
              flush=True)  # fmt: skip
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 30)


if __name__ == "__main__":
    asyncio.run(_main(json.loads(sys.stdin.readline())))
