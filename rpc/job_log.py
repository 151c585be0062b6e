"""The finished-job lines of this process's worker, batched as the access lines are
(``rpc.access_log``): the worker's ``Reporter`` hands each finished job's facts to
``JobLines.add``, and the lines are written every ``FLUSH_SECONDS`` (by the task that
``flush_periodically`` runs beside the worker), when ``FLUSH_LINES`` wait, and at shutdown.

A log record, a formatter call and a write per job were ~9% of a PostgreSQL worker's CPU
(bench/RESULTS.md §27); batched, a line is an f-string. The lines are the ones ``rpc.logs``'
handler would write for the record (text or JSON). When that handler is not the only one
(a test's capture, a handler someone added), each job is logged at once as an ordinary
``pipeline.jobs`` record, as ``pipeline.reporting.log_finished`` does."""

from __future__ import annotations

import json
import logging

import anyio

from pipeline.reporting import MESSAGE, FinishedJob, extras, log_finished
from rpc.access_log import Stamp, json_time, sole_handler

jobs_log = logging.getLogger("pipeline.jobs")
FLUSH_SECONDS = 0.2
FLUSH_LINES = 256


class JobLines:
    def __init__(self) -> None:
        self.pending: list[FinishedJob] = []
        self._stamp = Stamp()

    def add(self, entry: FinishedJob) -> None:
        """``Reporter.lines``: keep the line for the next batch, or log it now when another
        handler listens (it expects records, and at the time they happen)."""
        if sole_handler(jobs_log) is None:
            log_finished(entry)
            return
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
        handler = sole_handler(jobs_log)
        if handler is None:  # a handler was added since: records after all
            for entry in batch:
                log_finished(entry)
        elif handler.log_format == "json":
            handler.write_lines("".join(_json_line(entry) for entry in batch))
        else:
            handler.write_lines("".join(self._text_line(entry) for entry in batch))

    def _text_line(self, entry: FinishedJob) -> str:
        """``rpc.logs.TEXT_FORMAT``'s line of the record ``log_finished`` makes."""
        created, job_id, status, error, attempts, ms, cost = entry
        message = MESSAGE % (job_id, status, error, attempts, ms, cost)
        return f"{self._stamp(created)} INFO {jobs_log.name}: {message}\n"


def _json_line(entry: FinishedJob) -> str:
    """``rpc.logs.JsonLineFormatter``'s line of the record ``log_finished`` makes."""
    created, job_id, status, error, attempts, ms, cost = entry
    line = {"time": json_time(created), "level": "INFO", "logger": jobs_log.name,
            "message": MESSAGE % (job_id, status, error, attempts, ms, cost),
            **extras(entry)}  # fmt: skip
    return json.dumps(line) + "\n"
