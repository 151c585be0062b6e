"""The admin dashboard's procedures (``visionPipeline.admin.*``, admins only; the local user is
admin in local mode): the overview of the queue and its workers, and retry / cancel of jobs
by id through the very store methods ``vision-pipeline jobs retry`` / ``jobs cancel`` use
(``storage.operators``). The reads are ``storage.dashboard``'s."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, Field

from rpc.context import Context
from storage.dashboard import Failure, InFlight, Overview, WorkerRow

MAX_IDS = 100
_INT64 = 2**63 - 1
NO_SUCH_JOB = "no such job"
RETRY_WRONG_STATE = "only a job in error can be retried"
CANCEL_WRONG_STATE = "only a waiting or running job can be cancelled"


class JobIdsInput(BaseModel):
    jobIds: list[Annotated[int, Field(ge=1, le=_INT64)]] = Field(min_length=1, max_length=MAX_IDS)


def _ms(delta: timedelta) -> int:
    return max(int(delta.total_seconds() * 1000), 0)


def _worker(row: WorkerRow, alive_since: datetime) -> dict[str, Any]:
    return {
        "workerId": row.worker_id, "host": row.host, "pid": row.pid,
        "startedAt": row.started_at, "lastSeenAt": row.last_seen_at,
        "concurrency": row.concurrency, "running": row.running,
        "alive": row.last_seen_at >= alive_since,
    }  # fmt: skip


def _in_flight(job: InFlight, now: datetime) -> dict[str, Any]:
    age = 0 if job.locked_at is None else _ms(now - job.locked_at)
    return {
        "jobId": job.job_id, "userId": job.user_id, "status": job.status,
        "workerId": job.worker_id, "attempt": job.attempt, "leaseAgeMs": age,
        "streamedChars": job.streamed_chars,
    }  # fmt: skip


def _failure(job: Failure) -> dict[str, Any]:
    return {
        "jobId": job.job_id, "userId": job.user_id, "errorStage": job.error_stage,
        "errorMessage": job.error_message, "retryCount": job.retry_count,
        "updatedAt": job.updated_at,
    }  # fmt: skip


def overview_json(view: Overview, lease_seconds: float) -> dict[str, Any]:
    """The contract's answer. A worker is alive when it beat within three lease renewals
    (one renewal is every third of a lease): one lease."""
    now = view.now
    alive_since = now - timedelta(seconds=lease_seconds)
    return {
        "counts": view.counts,
        "lastHour": [
            {"start": b.start, "completed": b.completed, "failed": b.failed} for b in view.last_hour
        ],
        "inFlight": [_in_flight(j, now) for j in view.in_flight],
        "workers": [_worker(w, alive_since) for w in view.workers],
        "recentFailures": [_failure(f) for f in view.recent_failures],
        "spendPerDay": [
            {"day": d.day, "costUsd": d.cost_usd, "jobs": d.jobs} for d in view.spend_per_day
        ],
        "cacheHitsToday": view.cache_hits_today,
        "waitingByUser": [
            {"userId": b.user_id, "openId": b.open_id, "waiting": b.waiting, "running": b.running}
            for b in view.waiting_by_user
        ],
        "oldestWaitingAgeMs": None
        if view.oldest_waiting is None
        else _ms(now - view.oldest_waiting),
    }


async def overview(ctx: Context, _: None) -> dict[str, Any]:
    """``visionPipeline.admin.overview``: the queue, its workers and its spend, now."""
    view = await ctx.services.store.overview()
    answer = overview_json(view, ctx.services.settings.lease_seconds)
    answer["userDailyBudgetUsd"] = ctx.services.settings.user_daily_budget_usd  # 0: none
    return answer


def _answer(
    wanted: list[int], states: dict[int, str], changed: list[int], wrong_state: str
) -> dict[str, Any]:
    done = set(changed)
    return {
        "changed": [i for i in wanted if i in done],
        "skipped": [
            {"jobId": i,
             "reason": NO_SUCH_JOB if i not in states else f"it is {states[i]}: {wrong_state}"}
            for i in wanted if i not in done
        ],
    }  # fmt: skip


async def retry_jobs(ctx: Context, data: JobIdsInput) -> dict[str, Any]:
    """``visionPipeline.admin.retryJobs``: jobs in error back to pending, retries reset
    (``jobs retry``'s ``JobStore.retry_jobs``, one transaction)."""
    store = ctx.services.store
    wanted = list(dict.fromkeys(data.jobIds))
    states = await store.job_states(wanted)
    changed = await store.retry_jobs([i for i in wanted if i in states])
    return _answer(wanted, states, changed, RETRY_WRONG_STATE)


async def cancel_jobs(ctx: Context, data: JobIdsInput) -> dict[str, Any]:
    """``visionPipeline.admin.cancelJobs``: waiting jobs end at once, running ones stop at
    their next stage boundary (``jobs cancel``'s ``JobStore.cancel_jobs``)."""
    store = ctx.services.store
    wanted = list(dict.fromkeys(data.jobIds))
    states = await store.job_states(wanted)
    done = await store.cancel_jobs([i for i in wanted if i in states])
    return _answer(wanted, states, list(done), CANCEL_WRONG_STATE)
