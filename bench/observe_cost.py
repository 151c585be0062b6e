"""The in-process cost of the access log and the HTTP metrics (rpc.observe) per request:
N getJobStatus calls straight through the ASGI app (no sockets, no HTTP client), with the
access log written to a file, with it off (ACCESS_LOG=false), and with nothing noted
(``Observer.note`` a no-op: neither metrics nor lines); medians of alternated rounds, in
microseconds per request. Then the parts alone: ``Observer.note`` with its share of the
batches (the HTTP metrics moved and the access lines written) per request, and
``Reporter.written`` (a worker's tallies, metrics and finished-job line) per job, each with
its log line on and off.

Last, ``rpc.app.App``'s own layer (the gate's checks, the routing, the timing and the
note) around a stand-in dispatcher that only sends a 200 (and returns it, as
``Dispatcher.answer`` does), against that stand-in alone, with
the access log off; once as it is and once with ``note`` a no-op.

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


async def _round(app: App, n: int, noted: bool) -> float:
    note = app.observer.note
    if not noted:
        app.observer.note = lambda *_: None  # type: ignore[method-assign]
    query = b'input={"jobId":1}'
    started = time.perf_counter()
    try:
        for _ in range(n):
            await _call(app, "GET", "/api/trpc/visionPipeline.getJobStatus", query)
    finally:
        app.observer.note = note  # type: ignore[method-assign]
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
        results: dict[str, list[float]] = {"log on": [], "log off": [], "not noted": []}
        for r in range(rounds):
            order = list(results) if r % 2 == 0 else list(reversed(results))
            for name in order:
                access = name == "log on"
                setup_logging(settings.model_copy(update={"access_log": access}), log_file)
                results[name].append(await _round(app, requests, noted=name != "not noted"))
        await send.send({"type": "lifespan.shutdown"})
        await back_receive.receive()
    logging.getLogger().handlers.clear()
    for name, values in results.items():
        print(f"{name:>9}: {statistics.median(values):7.1f} µs per getJobStatus "
              f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip


def _per_call(call: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1e6


def parts(n: int, log_file: Any) -> None:
    """``Observer.note`` + its share of the batches, and ``Reporter.written``, in µs a call."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from pipeline.reporting import Reporter, Tally
    from rpc.job_log import JobLines
    from rpc.observe import Observer
    from storage.jobstate import Outcome, Stage
    from storage.records import AttemptRecord, StageUsage

    settings = Settings(providers="offline")
    observer = Observer(["visionPipeline.getJobStatus"])
    scope = {"type": "http", "method": "GET", "path": "/api/trpc/visionPipeline.getJobStatus"}
    reporter = Reporter(Tally(), "offline", "offline", settings)
    job_lines = JobLines.of(reporter)  # as the service writes finished-job lines (batched)
    job = SimpleNamespace(id=1, attempt=1, locked_at=datetime.now(UTC))
    used = StageUsage("offline", 0, 0, 3)
    record = AttemptRecord(Outcome.COMPLETE, Stage.CONTENT, None, used, used, 0.0)

    def request() -> None:
        observer.note(scope, 200, time.perf_counter() - 0.0001)

    for on in (True, False):
        setup_logging(settings.model_copy(update={"access_log": on}), log_file)
        per_request = _per_call(request, n) + _per_call(observer.flush, 1) / n
        logging.getLogger("pipeline.jobs").setLevel(logging.NOTSET if on else logging.WARNING)
        per_job = _per_call(lambda: reporter.written(job, record), n)  # type: ignore[arg-type]
        per_job += _per_call(job_lines.flush, 1) / n
        state = "on" if on else "off"
        print(f"   lines {state:>3}: Observer.note {per_request:.2f} µs a request, "
              f"Reporter.written {per_job:.2f} µs a job")  # fmt: skip
    logging.getLogger().handlers.clear()


async def app_layer(n: int) -> None:
    """``App.__call__`` around a dispatcher that only answers, less that dispatcher alone."""
    from starlette.applications import Starlette

    async def answer(scope: Any, receive: Any, send: Any) -> int:  # as Dispatcher.answer
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        return 200

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        pass

    logging.getLogger().handlers.clear()
    logging.getLogger("rpc.access").setLevel(logging.WARNING)  # the access log off
    app = App(Starlette(), None, ["visionPipeline.getJobStatus"])
    app.hot = answer
    quiet = App(Starlette(), None, ["visionPipeline.getJobStatus"])
    quiet.hot = answer
    quiet.observer.note = lambda *_: None  # type: ignore[method-assign]
    scope = {"type": "http", "method": "GET", "path": "/api/trpc/visionPipeline.getJobStatus",
             "headers": [(b"host", b"127.0.0.1:3000")]}  # fmt: skip
    took: dict[str, list[float]] = {"app": [], "not noted": [], "alone": []}
    targets: dict[str, Any] = {"app": app, "not noted": quiet, "alone": answer}
    for _ in range(5):
        for name, target in targets.items():
            started = time.perf_counter()
            for _ in range(n):
                await target(dict(scope), receive, send)
            took[name].append((time.perf_counter() - started) / n * 1e6)
    alone = statistics.median(took["alone"])
    print(f"  App around a stand-in dispatcher: {statistics.median(took['app']) - alone:.2f} µs "
          f"a request, {statistics.median(took['not noted']) - alone:.2f} with nothing noted "
          f"(the stand-in alone {alone:.2f} µs; access log off)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7, help="alternated rounds")
    args = parser.parse_args()
    anyio.run(main, args.requests, args.rounds)
    parts(args.requests * 5, (Path(tempfile.mkdtemp()) / "parts.log").open("w"))
    anyio.run(app_layer, args.requests * 5)
