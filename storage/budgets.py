"""``JobStore``'s methods for createJob's idempotencyKey and the users' daily budgets (a base
class of it, as ``UserStore``), issue 17.

A keyed createJob is one transaction of its own, never batched with other creations: a key
its user holds makes the insert a no-op (``ON CONFLICT … DO NOTHING`` on the unique partial
index of (userId, idempotencyKey)), and the job holding it is read instead. The index decides
between two API processes inserting the same key at once (PostgreSQL: the second waits for
the first to commit, then does nothing; SQLite: one writer at a time), so a key never makes a
second job. A key older than ``KEY_TTL`` is let go before the insert (the housekeeping clears
them all in batches, ``clear_old_keys``), so it can be used again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from storage.driver import Driver, Work, execute, fetch_one
from storage.images import image_path, keep_image
from storage.jobstate import JobStatus
from storage.queries import QUERIES
from storage.records import NewImage, NewJob
from storage.timeutil import as_datetime, utcnow

T = TypeVar("T")

# How long a key names its job.
KEY_TTL = timedelta(hours=24)
# Keys cleared per statement by the housekeeping.
KEY_BATCH = 500


@dataclass(frozen=True, slots=True)
class KeyedJob:
    """The job a key names: ``created`` when this call made it; else an earlier one's, with
    its current status and the fingerprint of the inputs it was made with."""

    id: int
    status: str
    fingerprint: str | None
    created: bool


@dataclass(frozen=True, slots=True)
class UserSpend:
    """A user's budget as stored (``budget``: None follows the default, 0 is none), role, and
    spend today (None when not read: no budget applies and it was not asked for)."""

    role: str
    budget: float | None
    spent: float | None


def _keyed_insert(
    job: NewJob, image: NewImage | str | None, key: str, fingerprint: str
) -> Work[KeyedJob | None]:
    """The transaction of a keyed create: the stale key let go, the image kept (inline) or
    held (named; None returned when the user has no such image), the job inserted, or the
    job holding the key read."""
    now = utcnow()
    yield execute(QUERIES["clear_stale_key"], job.user_id, key, now - KEY_TTL)
    if isinstance(image, NewImage):
        yield from keep_image(job.user_id, image)
        job = replace(job, image_url=image_path(image.sha256))
    elif isinstance(image, str):
        if (yield fetch_one(QUERIES["hold_image"], job.user_id, image)) is None:
            return None
    row = yield fetch_one(
        QUERIES["insert_keyed_job"], job.user_id, job.image_url, job.image_context,
        job.analysis_purpose, job.output_format, job.creativity_level,
        job.additional_instructions, job.max_retries, now, key, fingerprint, job.bypass_cache,
    )  # fmt: skip
    if row is not None:
        return KeyedJob(int(row["id"]), JobStatus.PENDING.value, fingerprint, True)
    held = yield fetch_one(QUERIES["find_keyed_job"], job.user_id, key)
    assert held is not None  # the conflict's row, committed before the insert gave up
    return KeyedJob(int(held["id"]), str(held["status"]), held["fingerprint"], False)


class BudgetStore:
    driver: Driver

    async def _write(self, work: Callable[[], Work[T]]) -> T:
        raise NotImplementedError  # JobStore's

    def _jobs_committed(self, created: bool) -> None:
        raise NotImplementedError  # JobStore's

    async def _yield_to_claim(self) -> None:
        raise NotImplementedError  # JobStore's

    async def find_keyed_job(self, user_id: int, key: str) -> KeyedJob | None:
        """The job user ``user_id`` created with ``key`` in the last ``KEY_TTL``, if any."""
        row = await self.driver.read(fetch_one(QUERIES["find_keyed_job"], user_id, key))
        if row is None:
            return None
        created = as_datetime(row["createdAt"])
        if created is not None and created < utcnow() - KEY_TTL:
            return None  # let go; the next keyed insert clears it
        return KeyedJob(int(row["id"]), str(row["status"]), row["fingerprint"], False)

    async def create_keyed_job(
        self, job: NewJob, image: NewImage | str | None, key: str, fingerprint: str
    ) -> KeyedJob | None:
        """createJob with an idempotencyKey: the new job, or the one the key already names
        (whatever its inputs: the caller compares the fingerprints). ``image``: the inline
        image brought, or the SHA-256 of the stored image named (None returned when the user
        has no such image, nothing written), or None for any other URL."""
        keyed = await self.driver.run(lambda: _keyed_insert(job, image, key, fingerprint))
        self._jobs_committed(keyed is not None and keyed.created)
        if keyed is not None and keyed.created:
            await self._yield_to_claim()
        return keyed

    async def clear_old_keys(self, before: datetime) -> int:
        """The housekeeping: every idempotencyKey of a job created before ``before`` cleared
        (in batches of ``KEY_BATCH``, a transaction each). Returns how many."""
        cleared = 0
        while True:
            n = int(await self.driver.write(execute(QUERIES["clear_old_keys"], before, KEY_BATCH)))
            cleared += n
            if n < KEY_BATCH:
                return cleared

    async def user_spend(
        self, user_id: int, default_budget: float, since: datetime, *, always: bool = False
    ) -> UserSpend | None:
        """User ``user_id``'s budget and role, and the cost of their attempts that ended since
        ``since``, read only when ``always`` or a budget applies to them (theirs, else
        ``default_budget``; admins have none). None when the user does not exist."""
        row = await self.driver.read(
            fetch_one(QUERIES["user_spend_today"], user_id, default_budget, always, since)
        )
        if row is None:
            return None
        budget = None if row["budget"] is None else float(row["budget"])
        spent = None if row["spent"] is None else float(row["spent"])
        return UserSpend(str(row["role"]), budget, spent)

    async def set_user_budget(self, open_id: str, budget: float | None) -> int | None:
        """`users set-budget`: the user's id, or None when the openId is unknown."""

        def work() -> Work[int | None]:
            row = yield fetch_one(QUERIES["set_user_budget"], open_id, budget, utcnow())
            return None if row is None else int(row["id"])

        return await self._write(work)
