"""The finished-job lines of this process's worker, batched as the access lines are
(``rpc.line_batch``): the worker's ``Reporter`` hands each finished job's facts to
``JobLines.add`` (its ``lines``), and the lines are written in batches, the same lines
``rpc.logs``' handler would write for the record ``pipeline.reporting.log_finished`` makes.
When that handler is not the only one (a test's capture, a handler someone added), each job
is logged at once as that record, as without this module."""

from __future__ import annotations

import json
import logging

from pipeline.reporting import MESSAGE, FinishedJob, Reporter, extras, log_finished
from rpc.line_batch import LineBatch, json_time, sole_handler

jobs_log = logging.getLogger("pipeline.jobs")


class JobLines(LineBatch[FinishedJob]):
    def __init__(self) -> None:
        super().__init__(jobs_log)

    @classmethod
    def of(cls, report: Reporter) -> JobLines:
        """A buffer that ``report`` (a worker's ``Reporter``) hands its lines to; the caller
        runs its ``flush_periodically`` beside the worker."""
        lines = cls()
        report.lines = lines.add
        return lines

    def add(self, entry: FinishedJob) -> None:
        """``Reporter.lines``: keep the line for the next batch, or log it now when another
        handler listens (it expects records, and at the time they happen)."""
        if sole_handler(jobs_log) is None:
            log_finished(entry)
        else:
            self.keep(entry)

    def text_line(self, entry: FinishedJob) -> str:
        """``rpc.logs.TEXT_FORMAT``'s line of the record ``log_finished`` makes."""
        created, job_id, status, error, attempts, ms, cost = entry
        message = MESSAGE % (job_id, status, error, attempts, ms, cost)
        return f"{self.stamp(created)} INFO {jobs_log.name}: {message}\n"

    def json_line(self, entry: FinishedJob) -> str:
        """``rpc.logs.JsonLineFormatter``'s line of the record ``log_finished`` makes."""
        created, job_id, status, error, attempts, ms, cost = entry
        line = {"time": json_time(created), "level": "INFO", "logger": jobs_log.name,
                "message": MESSAGE % (job_id, status, error, attempts, ms, cost),
                **extras(entry)}  # fmt: skip
        return json.dumps(line) + "\n"

    def log_record(self, entry: FinishedJob) -> None:
        log_finished(entry)  # a handler was added since: a record after all
