"""What the worker tells operators when an attempt's end is written: its tallies
(getWorkerStatus), the Prometheus counters (``pipeline.metrics``) and, for a job that is
finished (complete, failed for good, cancelled), one log line. All in memory: no query."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline import metrics
from pipeline.config import PipelineSettings
from pipeline.cost import stage_cost
from storage.jobstate import Outcome
from storage.records import AttemptRecord, ClaimedJob, StageUsage

log = logging.getLogger("pipeline.jobs")

_FINISHED = {Outcome.COMPLETE: "complete", Outcome.ERROR: "error",
             Outcome.CANCELLED: "cancelled"}  # fmt: skip
MESSAGE = "job %d %s%s: attempts %d, last %d ms, $%.6f"

# A finished job's line: time.time(), job id, status, " (error message)" or "", attempts,
# milliseconds of its last attempt, cost in USD.
FinishedJob = tuple[float, int, str, str, int, int, float]
JobLineSink = Callable[[FinishedJob], None]


def extras(entry: FinishedJob) -> dict[str, object]:
    """The fields a JSON log line carries beside the message."""
    _, job_id, status, _, attempts, ms, cost = entry
    return {"job_id": job_id, "status": status, "attempts": attempts, "duration_ms": ms,
            "cost_usd": cost}  # fmt: skip


def log_finished(entry: FinishedJob) -> None:
    """A finished job's line as one log record, written at once (``Reporter.lines``' default;
    the service batches them instead: ``rpc.job_log``)."""
    _, job_id, status, error, attempts, ms, cost = entry
    log.info(MESSAGE, job_id, status, error, attempts, ms, cost, extra=extras(entry))


@dataclass
class Tally:
    """Attempts this worker ended, by how (getWorkerStatus's counts)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0


class Reporter:
    def __init__(self, tally: Tally, vision: str, content: str, settings: PipelineSettings) -> None:
        self.tally = tally
        self.vision = vision  # the providers' names ("gemini", "deepseek", "offline")
        self.content = content
        self.settings = settings
        # Where a finished job's line goes. The service sets a batching sink
        # (rpc.job_log.JobLines): a log record and a write per job were ~9% of a PostgreSQL
        # worker's CPU (bench/RESULTS.md §27, §28).
        self.lines: JobLineSink = log_finished

    def cost(self, vision: StageUsage, content: StageUsage) -> float:
        """What an attempt's provider calls cost, from the configured prices."""
        return stage_cost(self.vision, vision, self.settings) + stage_cost(
            self.content, content, self.settings
        )

    def written(self, job: ClaimedJob, record: AttemptRecord) -> None:
        """The attempt's end is in the database: count it, and log the job if it is finished."""
        outcome = record.outcome
        if outcome is Outcome.COMPLETE:
            self.tally.completed += 1
        elif outcome is Outcome.ERROR:
            self.tally.failed += 1
        elif outcome is Outcome.RETRY:
            self.tally.retried += 1
        metrics.attempt_ended(outcome.value, record.stage_reached.value)
        s = self.settings
        metrics.usage(self.vision, record.vision, stage_cost(self.vision, record.vision, s))
        metrics.usage(self.content, record.content, stage_cost(self.content, record.content, s))
        status = _FINISHED.get(outcome)
        if status is None or not log.isEnabledFor(logging.INFO):
            return
        ms = round((datetime.now(UTC) - job.locked_at).total_seconds() * 1000)
        error = f" ({record.error_message})" if record.error_message else ""
        self.lines((time.time(), job.id, status, error, job.attempt, ms, record.cost_usd))
