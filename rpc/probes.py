"""``/healthz``, ``/readyz`` and ``/metrics``: off the tRPC path, no session auth.

The API's app serves them (`routes`, reading the `Probes` its lifespan puts on
``app.state.probes``); a worker-only process started with ``--metrics-port`` serves them alone
(`probe_app`). ``/healthz``: the process answers. ``/readyz``: one round trip to the database
and, where a worker runs, a heartbeat younger than a lease. ``/metrics``: prometheus-client's
text, behind ``METRICS_TOKEN`` when it is set."""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline import metrics
from pipeline.worker import Worker
from storage.store import JobStore

log = logging.getLogger("rpc.probes")
# A readiness probe's database round trip; longer than this is "not ready".
READY_TIMEOUT_SECONDS = 2.0


@dataclass
class Probes:
    store: JobStore
    worker: Worker | None
    metrics_token: str | None
    subscribers: Callable[[], int] = lambda: 0
    before_render: Callable[[], None] = lambda: None  # the API's HTTP metrics, moved in batches

    async def readiness(self) -> str | None:
        """None when ready, else the short reason it is not."""
        try:
            with anyio.fail_after(READY_TIMEOUT_SECONDS):
                await self.store.ping()
        except Exception as exc:
            log.warning("readiness: the database did not answer (%s)", type(exc).__name__)
            return "database unreachable"
        worker = self.worker
        if worker is None:
            return None
        if not worker.state.running:
            return "worker not running"
        beat = worker.state.last_heartbeat
        if beat is not None:
            age = (datetime.now(UTC) - beat).total_seconds()
            if age > worker.settings.lease_seconds:
                return f"worker heartbeat {age:.0f} s old"
        return None

    def authorized(self, request: Request) -> bool:
        if not self.metrics_token:
            return True
        given = request.headers.get("authorization", "")
        expected = f"Bearer {self.metrics_token}"
        return hmac.compare_digest(given.encode(), expected.encode())

    async def metrics_text(self) -> tuple[bytes, str]:
        try:
            with anyio.fail_after(READY_TIMEOUT_SECONDS):
                await metrics.refresh_queue(self.store)
        except Exception as exc:  # the process's own numbers are still worth answering
            log.warning("metrics: the queue could not be read (%s)", type(exc).__name__)
        self.before_render()
        in_flight = 0 if self.worker is None else len(self.worker.state.in_flight)
        return metrics.render(in_flight, self.subscribers())


def _probes(request: Request) -> Probes | None:
    return getattr(request.app.state, "probes", None)


async def healthz(request: Request) -> Response:
    """Alive: the process answers (the body is the one it always had)."""
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> Response:
    probes = _probes(request)
    reason = "starting" if probes is None else await probes.readiness()
    if reason is None:
        return JSONResponse({"ok": True})
    return JSONResponse({"ok": False, "reason": reason}, status_code=503)


async def metrics_endpoint(request: Request) -> Response:
    probes = _probes(request)
    if probes is None:
        return JSONResponse({"ok": False, "reason": "starting"}, status_code=503)
    if not probes.authorized(request):
        return JSONResponse(
            {"error": "a bearer token is required (METRICS_TOKEN)"}, status_code=401,
            headers={"www-authenticate": "Bearer"},
        )  # fmt: skip
    body, content_type = await probes.metrics_text()
    return Response(body, media_type=content_type)


def routes() -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


def probe_app(probes: Probes) -> Starlette:
    """The three probes alone, for a worker-only process (``worker --metrics-port``)."""
    app = Starlette(routes=routes())
    app.state.probes = probes
    return app


def bind_probe_socket(host: str, port: int) -> socket.socket:
    """The worker's probe port, bound before anything starts so that a port in use is a clear
    error at once (OSError), not a failure inside the running worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_probes(probes: Probes, sock: socket.socket) -> None:
    """Serve `probe_app` on ``sock`` until cancelled. uvicorn's signal handling is left out:
    the worker's own (``pipeline.runner``) drains on SIGTERM and then cancels this."""
    import uvicorn

    class ProbeServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        probe_app(probes), log_config=None, access_log=False, lifespan="off",
        timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = ProbeServer(config)
    host, port = sock.getsockname()[:2]
    log.info("probes on http://%s:%d (/metrics, /healthz, /readyz)", host, port)
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
