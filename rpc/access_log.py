"""The access log's buffer (``rpc.line_batch``): ``rpc.observe`` hands it each batch of requests
seen, as they were noted (`Seen`), and the lines are made from them when the batch is written.

A log record and a formatter call per request cost ~8 µs, about 5% of a getJobStatus's server
CPU (bench/RESULTS.md: ~160 µs); batched, a text line costs ~0.5 µs (§30, §31)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from rpc.line_batch import LineBatch, json_time
from rpc.logs import ACCESS_LOGGER

access_log = logging.getLogger(ACCESS_LOGGER)
MESSAGE = "%s %s %d %.1f ms"

# What a request leaves (``rpc.observe``): time.perf_counter() at its end, method, path,
# status, seconds.
Seen = tuple[float, str, str, int, float]
# A line's facts: time.time() at the request's end, method, target, status, seconds.
Fields = tuple[float, str, str, int, float]
# rpc.logs.TEXT_FORMAT's line: its time, then a middle (" INFO rpc.access: GET target 200 ")
# made once a method, path and status (`_MIDDLES_REMEMBERED` of them at most), then the ms.
_TEXT = "%s,%03d%s%.1f ms\n"
_MIDDLES_REMEMBERED = 1024


class AccessBuffer(LineBatch[Seen]):
    """``target_of``: a path's access-log target (the tRPC procedure names, or the path, made
    one printable line)."""

    def __init__(self, target_of: Callable[[str], str]) -> None:
        super().__init__(access_log)
        self.target_of = target_of
        self.wall = 0.0  # time.time() - time.perf_counter(), read when a batch is written
        self._middles: dict[tuple[str, str, int], str] = {}

    def flush(self) -> None:
        self.wall = time.time() - time.perf_counter()
        super().flush()

    def fields(self, seen: Seen) -> Fields:
        ended, method, path, status, seconds = seen
        return self.wall + ended, method, self.target_of(path), status, seconds

    def text_lines(self, batch: list[Seen]) -> str:
        """``rpc.logs.TEXT_FORMAT``'s line of each request (the line its record would make,
        asctime and all), in one pass: this runs once a request (a request's note and share
        of its batch, log on: 1.01 → 0.91 µs, bench/RESULTS.md §31)."""
        wall, of_second, middles = self.wall, self.stamp.of_second, self._middles
        last, stamp = -1, ""
        lines = []
        for ended, method, path, status, seconds in batch:
            created = wall + ended
            second = int(created)
            if second != last:
                last, stamp = second, of_second(second)
            middle = middles.get((method, path, status))
            if middle is None:
                middle = f" INFO {ACCESS_LOGGER}: {method} {self.target_of(path)} {status} "
                if len(middles) < _MIDDLES_REMEMBERED:
                    middles[method, path, status] = middle
            # %03d truncates the milliseconds, as Stamp does.
            lines.append(_TEXT % (stamp, (created - second) * 1000, middle, seconds * 1000))
        return "".join(lines)

    def json_line(self, entry: Seen) -> str:
        """``rpc.logs.JsonLineFormatter``'s line for an access entry."""
        created, method, target, status, seconds = self.fields(entry)
        ms = round(seconds * 1000, 1)
        line = {"time": json_time(created), "level": "INFO", "logger": ACCESS_LOGGER,
                "message": MESSAGE % (method, target, status, seconds * 1000),
                "method": method, "target": target, "status": status,
                "duration_ms": ms}  # fmt: skip
        return json.dumps(line) + "\n"

    def log_record(self, entry: Seen) -> None:
        access_log.handle(record_of(self.fields(entry)))


def record_of(fields: Fields) -> logging.LogRecord:
    """The log record of an access line (when another handler listens, and in tests)."""
    created, method, target, status, seconds = fields
    ms = round(seconds * 1000, 1)
    args = (method, target, status, seconds * 1000)
    record = access_log.makeRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 0, MESSAGE, args, None,
        extra={"method": method, "target": target, "status": status, "duration_ms": ms},
    )  # fmt: skip
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record
