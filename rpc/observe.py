"""Every HTTP request, seen once when it ends (``rpc.app.App`` notes it): the HTTP metrics
(``pipeline.metrics``) and one access-log line (``rpc.access``: method, tRPC procedure names or
the path, status, ms).

A request only appends what was seen (method, path, status, times) to a list; the metrics are
moved and the access lines made from it in batches: when `FLUSH_LINES` wait, every
`FLUSH_SECONDS` (``flush_periodically``), before ``/metrics`` is rendered, and at shutdown.
Why: the same work done once a request, between the request's own code, cost ~2 µs more
than in a batch, where the metrics' dicts and the logger stay in the CPU's caches
(bench/RESULTS.md §30). No query, no lock, no log record a request.

Never logged: the query string (a tRPC GET's input), bodies, headers (cookies, tokens). Names
that are not procedures come from the client: they are escaped, cut short, and counted in the
metrics as "unknown" so a scanner cannot grow the label set."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

import anyio
from starlette.types import Scope

from pipeline import metrics
from rpc.access_log import AccessBuffer, Seen, access_log
from rpc.line_batch import FLUSH_LINES, FLUSH_SECONDS
from rpc.wire.dispatch import BASE_PATH

# The other routes, as the metrics label them (prefix → label); anything else is "other".
_ROUTES = (("/healthz", "/healthz"), ("/readyz", "/readyz"), ("/metrics", "/metrics"),
           ("/api/jobs/", "/api/jobs/{id}/events"), ("/api/images/", "/api/images/{sha256}"),
           ("/api/oauth/", "/api/oauth/callback"))  # fmt: skip
_MAX_LOGGED = 200
_PATHS_REMEMBERED = 1024


class Observer:
    """The requests seen since the last batch. ``rpc.app.App`` times each HTTP request and
    notes it here when it ends (`note`)."""

    def __init__(self, procedures: Collection[str]) -> None:
        self.procedures = frozenset(procedures)
        self.seen: list[Seen] = []
        self.access = AccessBuffer(self._target)  # the batches moved so far, until written
        self._paths: dict[str, tuple[tuple[str, ...], str]] = {}

    def note(self, scope: Scope, status: int, started: float) -> None:
        """A request that ended: ``started`` is its time.perf_counter() when it came in."""
        ended = time.perf_counter()
        seen = self.seen
        seen.append((ended, scope["method"], scope["path"], status, ended - started))
        if len(seen) >= FLUSH_LINES:
            self.flush()

    def flush(self) -> None:
        """`fold_seen`, and the access lines written."""
        self.fold_seen()
        self.access.flush()

    def fold_seen(self) -> None:
        """The requests seen since the last batch moved into the HTTP metrics (run before
        ``/metrics`` is rendered) and into the access lines waiting to be written."""
        batch, self.seen = self.seen, []
        if batch:
            self.fold(batch)

    async def flush_periodically(self) -> None:
        try:
            while True:
                await anyio.sleep(FLUSH_SECONDS)
                self.flush()
        finally:
            self.flush()

    def fold(self, batch: list[Seen]) -> None:
        """A batch's requests into the HTTP metrics (grouped by path and status first: a
        metric's key made and looked up once a group) and, if the access log is on, into
        its lines."""
        groups: dict[tuple[str, int], list[float]] = {}
        for _, _, path, status, seconds in batch:
            durations = groups.get((path, status))
            if durations is None:
                groups[path, status] = [seconds]
            else:
                durations.append(seconds)
        paths, describe = self._paths, self._describe
        for (path, status), durations in groups.items():
            for label in (paths.get(path) or describe(path))[0]:
                metrics.http_requests(label, status, durations)
        if access_log.isEnabledFor(logging.INFO):
            self.access.pending.extend(batch)  # its lines are made when they are written

    def _target(self, path: str) -> str:
        return (self._paths.get(path) or self._describe(path))[1]

    def _describe(self, path: str) -> tuple[tuple[str, ...], str]:
        """A path's metric labels (one per tRPC call of a batch) and its access-log target.
        Remembered for paths made of known procedures only, so a batch pays one dict lookup a
        request instead of a split, a join and an escape, and a scanner's made-up names cannot
        grow the memory."""
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
