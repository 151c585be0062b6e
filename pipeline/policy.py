"""The retry policy: after a failed attempt, retry or fail, and with which message.

One pure function, ``verdict``, for both places an attempt can fail: the worker (a stage
raised) and the reaper (the attempt's lease expired, ``lease_expired``), which the store
applies inside its reaping transaction (``JobStore.reap_expired(lease_expired)``). How long a
retry waits is ``pipeline.retry``'s.
"""

from __future__ import annotations

from storage.jobstate import Stage, Verdict

LEASE_EXPIRED = "the worker stopped responding (lease expired)"
CANCELLED = "Cancelled by an operator"
SHUT_DOWN = "worker shut down"


def verdict(
    stage: Stage, reason: str, failures: int, max_retries: int, *, retryable: bool = True
) -> Verdict:
    """A job failed in ``stage`` for ``reason``, its ``failures``-th failed attempt (this one
    included): a retryable failure is retried while the job has attempts left; a fatal one,
    or the last, fails the job for good."""
    if not retryable:
        return Verdict(False, f"{stage}: {reason}")
    if failures < max_retries:
        return Verdict(True, f"{stage}: {reason}. Retry {failures}/{max_retries}")
    return Verdict(False, f"Failed after {failures} attempts in {stage}: {reason}")


def lease_expired(stage: Stage, failures: int, max_retries: int) -> Verdict:
    """The reaper's verdict on an attempt whose worker stopped renewing its lease."""
    return verdict(stage, LEASE_EXPIRED, failures, max_retries)
