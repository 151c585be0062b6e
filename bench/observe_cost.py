"""The in-process cost of the access log and the HTTP metrics (rpc.observe) per request:
N getJobStatus calls straight through the ASGI app (no sockets, no HTTP client), with the
access log written to a file, with it off (ACCESS_LOG=false), and with ``rpc.observe``
bypassed altogether; medians of alternated rounds, in microseconds per request.

    python -m bench.observe_cost [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from rpc.app import App, create_app
from rpc.config import Settings
from rpc.logs import setup_logging

CREATE = (b'{"imageUrl":"https://example.com/a.png","analysisPurpose":"bench",'
          b'"outputFormat":"social_media_post"}')  # fmt: skip


async def _call(app: Any, method: str, path: str, query: bytes = b"", body: bytes = b"") -> int:
    sent: list[dict[str, Any]] = []
    headers = [(b"host", b"127.0.0.1:3000"), (b"content-type", b"application/json")]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query, "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 3000)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


async def _round(app: App, n: int, bypass: bool) -> float:
    target: Any = app._route if bypass else app
    query = b'input={"jobId":1}'
    started = time.perf_counter()
    for _ in range(n):
        await _call(target, "GET", "/api/trpc/visionPipeline.getJobStatus", query)
    return (time.perf_counter() - started) / n * 1e6


async def main(requests: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(database_url=f"sqlite:///{tmp / 'jobs.db'}", providers="offline")
    app = create_app(settings, run_worker=False)
    log_file = (tmp / "access.log").open("w")
    send, receive = anyio.create_memory_object_stream[Any](4)
    back_send, back_receive = anyio.create_memory_object_stream[Any](4)
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(app, lifespan, receive.receive, back_send.send)
        await send.send({"type": "lifespan.startup"})
        await back_receive.receive()
        assert await _call(app, "POST", "/api/trpc/visionPipeline.createJob", body=CREATE) == 200
        results: dict[str, list[float]] = {"log on": [], "log off": [], "bypassed": []}
        for r in range(rounds):
            order = list(results) if r % 2 == 0 else list(reversed(results))
            for name in order:
                access = name == "log on"
                setup_logging(settings.model_copy(update={"access_log": access}), log_file)
                results[name].append(await _round(app, requests, bypass=name == "bypassed"))
        await send.send({"type": "lifespan.shutdown"})
        await back_receive.receive()
    logging.getLogger().handlers.clear()
    for name, values in results.items():
        print(f"{name:>9}: {statistics.median(values):7.1f} µs per getJobStatus "
              f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7, help="alternated rounds")
    args = parser.parse_args()
    anyio.run(main, args.requests, args.rounds)
