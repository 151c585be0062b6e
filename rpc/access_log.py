"""The access log's buffer: a request only appends its facts (time, method, target, status,
ms) to a list; the lines are written in batches, every `FLUSH_SECONDS` by the app's lifespan,
when `FLUSH_LINES` wait, and at shutdown.

A log record and a formatter call per request cost ~8 µs, about 5% of a getJobStatus's server
CPU (bench/RESULTS.md: ~160 µs); batched, a line costs ~1 µs. When ``rpc.logs``' handler is
the only one, a batch is formatted here (the same text or JSON it would write) and written in
one call; otherwise (a test's capture, a handler someone added) each line becomes an ordinary
``rpc.access`` log record, at the time it was taken."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import anyio

from rpc.logs import ACCESS_LOGGER, OurHandler

access_log = logging.getLogger(ACCESS_LOGGER)
FLUSH_SECONDS = 0.2
FLUSH_LINES = 256
MESSAGE = "%s %s %d %.1f ms"

Entry = tuple[float, str, str, int, float]  # time.time(), method, target, status, seconds


class Stamp:
    """``rpc.logs.TEXT_FORMAT``'s asctime of a time.time(), its date made once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((created - second) * 1000):03d}"


def json_time(created: float) -> str:
    """``rpc.logs.JsonLineFormatter``'s time of a time.time()."""
    when = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


class AccessBuffer:
    def __init__(self) -> None:
        self.pending: list[Entry] = []
        self._stamp = Stamp()

    def add(self, method: str, target: str, status: int, seconds: float) -> None:
        pending = self.pending
        pending.append((time.time(), method, target, status, seconds))
        if len(pending) >= FLUSH_LINES:
            self.flush()

    async def flush_periodically(self) -> None:
        try:
            while True:
                await anyio.sleep(FLUSH_SECONDS)
                self.flush()
        finally:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        handler = sole_handler(access_log)
        if handler is None:
            for entry in batch:
                access_log.handle(_record(entry))
        elif handler.log_format == "json":
            handler.write_lines("".join(_json_line(entry) for entry in batch))
        else:
            handler.write_lines("".join(self._text_line(entry) for entry in batch))

    def _text_line(self, entry: Entry) -> str:
        """``rpc.logs.TEXT_FORMAT``'s line, its asctime made once per second."""
        created, method, target, status, seconds = entry
        return (
            f"{self._stamp(created)} INFO {ACCESS_LOGGER}: "
            f"{method} {target} {status} {seconds * 1000:.1f} ms\n"
        )  # MESSAGE


def sole_handler(logger: logging.Logger) -> OurHandler | None:
    """``rpc.logs``' handler when every record of ``logger`` would reach it alone, unfiltered
    (then a batch of lines can be formatted here and written in one call)."""
    root = logging.getLogger()
    if logger.handlers or logger.filters or not logger.propagate or root.filters:
        return None
    handlers = root.handlers
    if len(handlers) != 1 or not isinstance(handlers[0], OurHandler):
        return None
    handler = handlers[0]
    return handler if not handler.filters and handler.level <= logging.INFO else None


def _record(entry: Entry) -> logging.LogRecord:
    created, method, target, status, seconds = entry
    ms = round(seconds * 1000, 1)
    args = (method, target, status, seconds * 1000)
    record = access_log.makeRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 0, MESSAGE, args, None,
        extra={"method": method, "target": target, "status": status, "duration_ms": ms},
    )  # fmt: skip
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


def _json_line(entry: Entry) -> str:
    """``rpc.logs.JsonLineFormatter``'s line for an access entry."""
    created, method, target, status, seconds = entry
    ms = round(seconds * 1000, 1)
    line = {"time": json_time(created), "level": "INFO", "logger": ACCESS_LOGGER,
            "message": MESSAGE % (method, target, status, seconds * 1000), "method": method,
            "target": target, "status": status, "duration_ms": ms}  # fmt: skip
    return json.dumps(line) + "\n"
