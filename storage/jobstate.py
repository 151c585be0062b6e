"""A job's life, in one place: its statuses, the stages that run it, the progress each status
shows, and which statuses are running or final.

The values are the strings the design document puts on the wire and in the database
(``visionJobs.status``, ``errorStage``); code names them through these enums, never as
literals. The state machine::

    pending ──claim──▶ gemini_analyzing ──stage 1 done──▶ deepseek_generating ──▶ complete
       ▲                      │                                   │
       └──── retry ───────────┴───────────── retry ───────────────┘
                              └──────── fail / cancel ─────────────┴──▶ error

A retry returns the job to ``pending`` (a resumed job skips the stage it finished); ``error``
and ``complete`` are final (an operator's retry makes an ``error`` job ``pending`` again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    ANALYZING = "gemini_analyzing"  # stage 1: the vision model reads the image
    GENERATING = "deepseek_generating"  # stage 2: the text model writes the content
    COMPLETE = "complete"
    ERROR = "error"


class Stage(StrEnum):
    """Where a job failed (``errorStage``): a stage, or ``cancelled`` for a cancel."""

    VISION = "gemini"
    CONTENT = "deepseek"
    CANCELLED = "cancelled"


# The progress (0-100) each status shows, as the design document's worker sets it.
PROGRESS: dict[JobStatus, int] = {
    JobStatus.PENDING: 0,
    JobStatus.ANALYZING: 25,
    JobStatus.GENERATING: 60,
    JobStatus.COMPLETE: 100,
    JobStatus.ERROR: 0,
}

RUNNING: frozenset[JobStatus] = frozenset({JobStatus.ANALYZING, JobStatus.GENERATING})
FINAL: frozenset[JobStatus] = frozenset({JobStatus.COMPLETE, JobStatus.ERROR})
# The stage a running status belongs to.
STAGE_OF: dict[JobStatus, Stage] = {
    JobStatus.ANALYZING: Stage.VISION,
    JobStatus.GENERATING: Stage.CONTENT,
}


def stage_of(status: str) -> Stage:
    """The stage a running status (as stored) belongs to."""
    return STAGE_OF[JobStatus(status)]


class Outcome(StrEnum):
    """How an attempt ended (``visionJobSessions.outcome``)."""

    COMPLETE = "complete"
    RETRY = "retry"  # failed, may succeed later: pending again at its retry time (counted)
    ERROR = "error"  # failed for good (counted)
    CANCELLED = "cancelled"  # an operator's cancel (final, not counted)
    RELEASED = "released"  # a graceful shutdown handed it back (pending now, not counted)
    ABANDONED = "abandoned"  # its lease expired: the reaper ended it (counted)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What becomes of a job after a failed attempt, and the errorMessage it then shows."""

    retry: bool  # True: pending again; False: error, for good
    message: str


# The retry policy as the reaper applies it to an attempt whose lease expired: (the stage it
# was in, the job's failed attempts with this one, its maxRetries) -> the verdict. The store
# takes it as an argument (pipeline.policy provides it): storage decides nothing itself.
ExpiryPolicy = Callable[[Stage, int, int], Verdict]
