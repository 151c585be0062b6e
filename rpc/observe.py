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
_PATHS_REMEMBERED = 1024


class Observed:
    """An ASGI app around ``app`` that records each HTTP request when its answer is sent."""

    def __init__(self, app: ASGIApp, procedures: Collection[str]) -> None:
        self.app = app
        self.procedures = frozenset(procedures)
        self.access = AccessBuffer()  # its lines are written in batches (rpc.access_log)
        self._paths: dict[str, tuple[tuple[str, ...], str]] = {}

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
        labels, target = self._paths.get(path) or self._describe(path)
        record = metrics.http_request
        for label in labels:
            record(label, status, seconds)
        if access_log.isEnabledFor(logging.INFO):
            self.access.add(scope["method"], target, status, seconds)

    def _describe(self, path: str) -> tuple[tuple[str, ...], str]:
        """A path's metric labels (one per tRPC call of a batch) and its access-log target.
        Remembered for paths made of known procedures only, so the hot path pays one dict
        lookup instead of a split, a join and an escape (``Observed.record``: 2.7 → 2.2 µs a
        request, bench/RESULTS.md §14) and a scanner's made-up names cannot grow the memory."""
        if not path.startswith(BASE_PATH):
            return (_route_of(path),), _escaped(path)
        names = path[len(BASE_PATH) :].split(",")
        known = self.procedures
        labels = tuple(n if n in known else "unknown" for n in names)
        target = ",".join(n if n in known else _escaped(n) for n in names)[:_MAX_LOGGED]
        if "unknown" not in labels and len(self._paths) < _PATHS_REMEMBERED:
            self._paths[path] = (labels, target)
        return labels, target


def _route_of(path: str) -> str:
    for prefix, label in _ROUTES:
        if path.startswith(prefix):
            return label
    return "other"


def _escaped(text: str) -> str:
    """A client's text made one printable line (no forged log lines), at most 200 characters."""
    text = text[:_MAX_LOGGED]
    return text if text.isprintable() else ascii(text)[1:-1]
