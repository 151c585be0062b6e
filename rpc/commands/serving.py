"""``serve`` (the API, with the worker unless --no-worker) and ``worker`` (the worker only)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
import sys
from types import FrameType
from typing import Any

import anyio

from rpc.config import Settings

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket | str:
    """The listening socket, bound before anything else starts (so a port in use is one
    line, not uvicorn's traceback), or why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # uvicorn's own default backlog: a burst of connections waits instead of being refused
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is in use (choose another with --port)"
        return f"cannot listen on {host} port {port}: {exc.strerror or exc}"


def _prepare(settings: Settings, role: str, concurrency: str) -> None:
    """Create or upgrade the schema (or, with MIGRATE_ON_START=false, check it), then log
    the banner; a StoreUnusable goes up to the command line's one-line error."""
    from rpc.banner import banner
    from storage.engine import prepare

    done = anyio.run(lambda: prepare(settings.database_url, create=settings.migrate_on_start))
    log.info("%s", banner(settings, role, done, concurrency))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if settings.local_mode and not _is_loopback(args.host):
        print(
            f"refusing to listen on {args.host} in local mode (no JWT_SECRET): every request "
            "would act as the local user. Set JWT_SECRET, or use --host 127.0.0.1.",
            file=sys.stderr,
        )
        return 2

    listening = _listen(args.host, args.port)
    if isinstance(listening, str):
        print(f"vision-pipeline: {listening}", file=sys.stderr)
        return 2
    with listening:
        concurrency = "no worker" if args.no_worker else (
            f"worker concurrency {settings.worker_concurrency}")  # fmt: skip
        _prepare(settings, f"serve on {args.host}:{args.port}", concurrency)
        _run_uvicorn(args, settings, listening)
    return 0


def _run_uvicorn(args: argparse.Namespace, settings: Settings, listening: socket.socket) -> None:
    import uvicorn

    from rpc.app import create_app

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            # Open live-progress streams would hold the graceful shutdown for its whole
            # timeout: end them now (without `return`, so their clients resume elsewhere).
            services = getattr(app.state, "services", None)
            if services is not None:
                services.live.close_threadsafe()
            # uvicorn re-raises a captured SIGTERM after shutting down, so the process would
            # die "by signal"; a drained, signalled stop is a clean one: exit 0.
            self._captured_signals.clear()

    app = create_app(settings, run_worker=not args.no_worker)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        access_log=False,  # rpc.observe writes the access log
        log_config=None,  # uvicorn's lines go through rpc.logs' handler, in LOG_FORMAT
        timeout_graceful_shutdown=max(int(settings.shutdown_grace_seconds) + 5, 5),
    )
    Server(config).run(sockets=[listening])


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.runner import run, run_worker
    from pipeline.service import build_worker
    from rpc.job_log import JobLines
    from rpc.probes import Probes, bind_probe_socket, serve_probes
    from storage.engine import open_store

    sock = None
    if args.metrics_port is not None:  # bound first: a port in use is one line, at once
        try:
            sock = bind_probe_socket(args.metrics_host, args.metrics_port)
        except OSError as exc:
            print(f"worker --metrics-port {args.metrics_port}: {exc.strerror}", file=sys.stderr)
            return 2

    _prepare(settings, "worker", f"concurrency {settings.worker_concurrency}")

    async def main() -> None:
        store = await open_store(
            settings.database_url, create=settings.migrate_on_start, pool_size=settings.pool_size()
        )
        worker = build_worker(store, settings)
        job_lines = JobLines.of(worker.report)  # finished-job lines, batched (rpc.job_log)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(job_lines.flush_periodically)
            if sock is not None:  # /metrics, /healthz, /readyz beside it
                tasks.start_soon(serve_probes, Probes(store, worker, settings.metrics_token), sock)
            await run_worker(store, worker)
            tasks.cancel_scope.cancel()

    run(main)
    return 0


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="the API, with the worker in the same process")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=3000, help="port to listen on")
    serve.add_argument("--no-worker", action="store_true", help="API only")
    serve.set_defaults(run=cmd_serve)

    worker = sub.add_parser("worker", help="the worker only (run as many as you like)")
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics, /healthz and /readyz on this port (default: off)",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address the --metrics-port server listens on",
    )
    worker.set_defaults(run=cmd_worker)
