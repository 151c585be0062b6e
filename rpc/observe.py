"""Every HTTP request, seen once on its way out: the HTTP metrics (``pipeline.metrics``) and one
access-log line (``rpc.access``: method, tRPC procedure names or the path, status, ms).

Never logged: the query string (a tRPC GET's input), bodies, headers (cookies, tokens). Names
that are not procedures come from the client: they are escaped, cut short, and counted in the
metrics as "unknown" so a scanner cannot grow the label set. The cost is a few microseconds:
no query, no lock, and no log record at all when the access log is off."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import metrics
from rpc.access_log import AccessBuffer, access_log
from rpc.wire.dispatch import BASE_PATH

# The other routes, as the metrics label them (prefix → label); anything else is "other".
_ROUTES = (("/healthz", "/healthz"), ("/readyz", "/readyz"), ("/metrics", "/metrics"),
           ("/api/jobs/", "/api/jobs/{id}/events"), ("/api/images/", "/api/images/{sha256}"),
           ("/api/oauth/", "/api/oauth/callback"))  # fmt: skip
_MAX_LOGGED = 200


class Observed:
    """An ASGI app around ``app`` that records each HTTP request when its answer is sent."""

    def __init__(self, app: ASGIApp, procedures: Collection[str]) -> None:
        self.app = app
        self.procedures = frozenset(procedures)
        self.recorder = metrics.HTTP  # the process's
        self.access = AccessBuffer()  # its lines are written in batches (rpc.access_log)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the server answers when the app fails before its response

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            self.record(scope, status, time.perf_counter() - started)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        path: str = scope["path"]
        known = self.procedures
        names = path[len(BASE_PATH) :].split(",") if path.startswith(BASE_PATH) else None
        if names is None:
            self.recorder.record(_route_of(path), status, seconds)
        else:
            for name in names:
                self.recorder.record(name if name in known else "unknown", status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            if names is None:
                target = _escaped(path)
            else:
                target = ",".join(n if n in known else _escaped(n) for n in names)
            self.access.add(scope["method"], target[:_MAX_LOGGED], status, round(seconds * 1000, 1))


def _route_of(path: str) -> str:
    for prefix, label in _ROUTES:
        if path.startswith(prefix):
            return label
    return "other"


def _escaped(text: str) -> str:
    """A client's text made one printable line (no forged log lines), at most 200 characters."""
    text = text[:_MAX_LOGGED]
    return text if text.isprintable() else ascii(text)[1:-1]
