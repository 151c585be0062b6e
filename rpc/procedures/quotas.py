"""Quotas on ``createJob``: how fast one user may add jobs, how many may wait, how full the
queue may get.

What this module promises (settings in ``rpc.config``; 0 turns a limit off):

- JOBS_PER_MINUTE_PER_USER (60): a user's jobs created in the last 60 s. Over it:
  ``TOO_MANY_REQUESTS`` (429) "Too many jobs: at most 60 per minute. Try again in 12 s.",
  the seconds being when the oldest of those jobs leaves the window.
- MAX_WAITING_JOBS_PER_USER (100): a user's unfinished jobs (pending or running). Over it:
  ``TOO_MANY_REQUESTS`` "Too many jobs waiting: at most 100 at once. Try again when one of
  them has finished."
- MAX_WAITING_JOBS (100,000): pending jobs of everyone, so a flood cannot fill the disk.
  Over it: ``SERVICE_UNAVAILABLE`` (503), not 429: the caller did nothing wrong, the service
  is overloaded; "The queue is full. Try again in a few minutes."
- Each refusal carries a ``Retry-After`` header, and nothing is created.
- ``admit`` wraps the insert: within one process, one user's creations are checked one at
  a time (a batch of 50 createJob calls cannot all pass a count taken before any insert).

Design (why it is cheap): the per-user limits cost one extra read of the database, in one
round trip (``USER_QUOTA_COUNTS``): two counts over ranges of the (userId, createdAt, id) and
(userId, status) indexes, each cut off at its limit, so the work is bounded by the limits and
not by how many jobs a user ever made. Counting in the database, not in an in-process
sliding window, keeps the limits right when several API processes share one PostgreSQL.
The global count is a scan of the pending-jobs partial index stopped at the cap; it is
cached per process for ``GLOBAL_COUNT_TTL`` seconds and bumped locally on every admitted
job, so it costs at most one query per second per process whatever the request rate.

The limits are soft across processes: requests of one user reaching two API processes at
the same instant can both pass, so a user can overshoot by one job per API process. The
global cap can overshoot by what other processes insert within ``GLOBAL_COUNT_TTL``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio

from rpc.wire.errors import TRPCError
from storage.timeutil import utcnow

if TYPE_CHECKING:
    from rpc.config import Settings
    from storage.store import JobStore

WINDOW = timedelta(minutes=1)
GLOBAL_COUNT_TTL = 1.0


@dataclass
class UserLock:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    holders: int = 0  # holding or waiting; the entry goes when it drops to 0


@asynccontextmanager
async def holding(users: dict[int, UserLock], user_id: int) -> AsyncIterator[None]:
    """The body runs while no other holder of ``user_id``'s lock in ``users`` does; the entry
    is dropped when nobody holds or waits for it, so the table stays as small as the traffic."""
    entry = users.get(user_id)
    if entry is None:
        entry = users[user_id] = UserLock()
    entry.holders += 1
    try:
        async with entry.lock:
            yield
    finally:
        entry.holders -= 1
        if entry.holders == 0:
            users.pop(user_id, None)


@dataclass
class Quotas:
    """The app's quota state (``rpc.context.Services.quotas``): the cached global count and
    the per-user admission locks."""

    waiting: int = 0  # the cached global count
    expires: float = 0.0  # time.monotonic() when it must be counted again
    count_lock: anyio.Lock = field(default_factory=anyio.Lock)
    users: dict[int, UserLock] = field(default_factory=dict)


@asynccontextmanager
async def admit(
    state: Quotas, settings: Settings, store: JobStore, user_id: int
) -> AsyncIterator[None]:
    """Check every quota for ``user_id``, then run the body (the insert) while holding the
    user's admission lock: the calls of one batch, which run concurrently, are checked one
    after another, each seeing the jobs the previous ones created. Raises the quota's
    ``TRPCError`` (before the body runs) when the job may not be created."""
    if not (
        settings.jobs_per_minute_per_user
        or settings.max_waiting_jobs_per_user
        or settings.max_waiting_jobs
    ):
        yield  # every quota is off
        return
    async with holding(state.users, user_id):
        await _check_user(settings, store, user_id)
        await _check_global(settings, store, state)
        yield
        state.waiting += 1  # this job, until the next count sees it


async def _check_user(settings: Settings, store: JobStore, user_id: int) -> None:
    per_minute = settings.jobs_per_minute_per_user
    per_user = settings.max_waiting_jobs_per_user
    if not (per_minute or per_user):
        return
    now = utcnow()
    recent, oldest, waiting = await store.user_quota_counts(
        user_id, now - WINDOW, per_minute, per_user
    )
    if per_minute and recent >= per_minute:
        left = (oldest + WINDOW - now).total_seconds() if oldest else WINDOW.total_seconds()
        retry = min(max(math.ceil(left), 1), int(WINDOW.total_seconds()))
        raise TRPCError(
            "TOO_MANY_REQUESTS",
            f"Too many jobs: at most {per_minute} per minute. Try again in {retry} s.",
            headers={"retry-after": str(retry)},
        )
    if per_user and waiting >= per_user:
        raise TRPCError(
            "TOO_MANY_REQUESTS",
            f"Too many jobs waiting: at most {per_user} at once. "
            "Try again when one of them has finished.",
            headers={"retry-after": "30"},
        )


async def _check_global(settings: Settings, store: JobStore, state: Quotas) -> None:
    cap = settings.max_waiting_jobs
    if not cap:
        return
    if time.monotonic() >= state.expires:
        async with state.count_lock:
            if time.monotonic() >= state.expires:  # not refreshed while we waited
                state.waiting = await store.count_waiting_jobs(cap)
                state.expires = time.monotonic() + GLOBAL_COUNT_TTL
    if state.waiting >= cap:
        raise TRPCError(
            "SERVICE_UNAVAILABLE",
            f"The queue is full ({cap:,} jobs waiting). Try again in a few minutes.",
            headers={"retry-after": "120"},
        )
