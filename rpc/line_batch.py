"""Log lines kept in memory and written in batches: every `FLUSH_SECONDS` (``flush_periodically``,
run beside the server or the worker), when `FLUSH_LINES` wait, and at shutdown. The access
lines (``rpc.access_log``) and the worker's finished-job lines (``rpc.job_log``) go this way.

When ``rpc.logs``' handler is the only one their logger reaches, a batch is formatted here
(the same text or JSON lines it would write for the records) and written in one call;
otherwise (a test's capture, a handler someone added) each entry becomes an ordinary log
record. A record, a formatter call and a write per line cost ~5% of a request's CPU and ~9%
of a PostgreSQL worker's per job (bench/RESULTS.md §14, §27)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Generic, TypeVar

import anyio

from rpc.logs import OurHandler

FLUSH_SECONDS = 0.2
FLUSH_LINES = 256
E = TypeVar("E")


class LineBatch(Generic[E]):
    """The entries of one logger waiting for the next batch; a subclass says how one entry is
    a text line, a JSON line or a record."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.pending: list[E] = []
        self.stamp = Stamp()

    def keep(self, entry: E) -> None:
        self.pending.append(entry)
        if len(self.pending) >= FLUSH_LINES:
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
        handler = sole_handler(self.logger)
        if handler is None:
            for entry in batch:
                self.log_record(entry)
        elif handler.log_format == "json":
            handler.write_lines("".join(self.json_line(entry) for entry in batch))
        else:
            handler.write_lines(self.text_lines(batch))

    def text_lines(self, batch: list[E]) -> str:
        return "".join(self.text_line(entry) for entry in batch)

    def text_line(self, entry: E) -> str:
        raise NotImplementedError

    def json_line(self, entry: E) -> str:
        raise NotImplementedError

    def log_record(self, entry: E) -> None:
        raise NotImplementedError


class Stamp:
    """``rpc.logs.TEXT_FORMAT``'s asctime of a time.time(), its date made once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        return f"{self.of_second(second)},{int((created - second) * 1000):03d}"

    def of_second(self, second: int) -> str:
        """The asctime of a whole second, without its milliseconds."""
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return self._stamp


def json_time(created: float) -> str:
    """``rpc.logs.JsonLineFormatter``'s time of a time.time()."""
    when = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return when.replace("+00:00", "Z")


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
