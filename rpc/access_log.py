"""The access log's buffer (``rpc.line_batch``): ``rpc.observe`` appends each request's facts
(time, method, target, status, seconds) a batch at a time, and the lines are written so.

A log record and a formatter call per request cost ~8 µs, about 5% of a getJobStatus's server
CPU (bench/RESULTS.md: ~160 µs); batched, a line costs ~0.5 µs (§30)."""

from __future__ import annotations

import json
import logging

from rpc.line_batch import LineBatch, json_time
from rpc.logs import ACCESS_LOGGER

access_log = logging.getLogger(ACCESS_LOGGER)
MESSAGE = "%s %s %d %.1f ms"

Entry = tuple[float, str, str, int, float]  # time.time(), method, target, status, seconds
_TEXT = f"%s,%03d INFO {ACCESS_LOGGER}: {MESSAGE}\n"  # text_line's, in one %-format


class AccessBuffer(LineBatch[Entry]):
    def __init__(self) -> None:
        super().__init__(access_log)

    def text_lines(self, batch: list[Entry]) -> str:
        """`text_line` of each entry, written out with %-formatting (0.89 → 0.57 µs a line,
        bench/RESULTS.md §30): this runs once a request."""
        of_second = self.stamp.of_second
        lines = []
        for created, method, target, status, seconds in batch:
            second = int(created)
            ms = (created - second) * 1000  # %03d truncates, as Stamp does
            lines.append(_TEXT % (of_second(second), ms, method, target, status, seconds * 1000))
        return "".join(lines)

    def text_line(self, entry: Entry) -> str:
        """``rpc.logs.TEXT_FORMAT``'s line, its asctime made once per second."""
        created, method, target, status, seconds = entry
        return (
            f"{self.stamp(created)} INFO {ACCESS_LOGGER}: "
            f"{method} {target} {status} {seconds * 1000:.1f} ms\n"
        )  # MESSAGE

    def json_line(self, entry: Entry) -> str:
        """``rpc.logs.JsonLineFormatter``'s line for an access entry."""
        created, method, target, status, seconds = entry
        ms = round(seconds * 1000, 1)
        line = {"time": json_time(created), "level": "INFO", "logger": ACCESS_LOGGER,
                "message": MESSAGE % (method, target, status, seconds * 1000),
                "method": method, "target": target, "status": status,
                "duration_ms": ms}  # fmt: skip
        return json.dumps(line) + "\n"

    def log_record(self, entry: Entry) -> None:
        access_log.handle(_record(entry))


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
