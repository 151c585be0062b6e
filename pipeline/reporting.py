"""What the worker tells operators when an attempt's end is written: its tallies
(getWorkerStatus), the Prometheus counters (``pipeline.metrics``) and, for a job that is
finished (complete, failed for good, cancelled), one log line. All in memory: no query."""

from __future__ import annotations

import logging
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
        log.info(
            "job %d %s%s: attempts %d, last %d ms, $%.6f", job.id, status, error, job.attempt, ms,
            record.cost_usd,
            extra={"job_id": job.id, "status": status, "attempts": job.attempt,
                   "duration_ms": ms, "cost_usd": record.cost_usd},
        )  # fmt: skip
