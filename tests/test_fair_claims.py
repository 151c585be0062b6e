"""Fair claims (issue 17): round-robin across the users with waiting jobs, each user's own
jobs in order, on both backends (claim_jobs, and PostgreSQL's complete_and_claim)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import anyio
import pytest

from storage.batches import insert_jobs
from storage.driver import execute
from storage.engine import open_store
from storage.records import AttemptRecord, ClaimedJob, NewJob, Outputs
from storage.store import JobStore
from storage.timeutil import utcnow
from tests.support import adhoc, scalar

pytestmark = pytest.mark.anyio
LEASE = timedelta(seconds=30)


async def _user(store: JobStore, name: str) -> int:
    user_id, _ = await store.user_seen(name, None)
    return user_id


async def _waiting(store: JobStore, user_id: int, count: int) -> list[int]:
    """``count`` pending jobs of the user in one statement; their ids."""
    new = NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
    found = await store.driver.write(insert_jobs([new] * count))
    return sorted(int(r["id"]) for r in found)


async def _heavy_and_lone(store: JobStore, heavy: int, lone: int) -> tuple[list[int], list[int]]:
    """One user with ``heavy`` waiting jobs, then ``lone`` users with one job each."""
    heavy_ids = await _waiting(store, await _user(store, "heavy"), heavy)
    lone_ids = [(await _waiting(store, await _user(store, f"lone{i}"), 1))[0] for i in range(lone)]
    return heavy_ids, lone_ids


async def test_lone_jobs_are_claimed_in_the_first_rounds_despite_a_long_queue(
    store: JobStore,
) -> None:
    heavy, lone = await _heavy_and_lone(store, 300, 5)
    first = [j.id for j in await store.claim_jobs("w1", 4, LEASE)]
    second = [j.id for j in await store.claim_jobs("w1", 4, LEASE)]
    # Round one: one job per user (rank 1 each), oldest first; round two: the other lone
    # users before the heavy user's second job (it runs one already).
    assert first == [heavy[0], *lone[:3]]
    assert sorted(second) == [heavy[1], heavy[2], *lone[3:]]


async def test_each_users_jobs_stay_in_order_and_users_take_turns(store: JobStore) -> None:
    users = [await _user(store, name) for name in ("a", "b", "c")]
    ids = {u: await _waiting(store, u, 10) for u in users}
    taken: dict[int, list[int]] = defaultdict(list)
    for _ in range(10):
        claimed = await store.claim_jobs("w1", 3, LEASE)
        assert sorted(j.user_id for j in claimed) == users  # one job of each user per round
        for job in claimed:
            taken[job.user_id].append(job.id)
    assert dict(taken) == ids  # every user's jobs, in id order
    assert await store.claim_jobs("w1", 3, LEASE) == []


async def test_a_claim_larger_than_the_users_takes_several_jobs_of_each(store: JobStore) -> None:
    a, b = await _user(store, "a"), await _user(store, "b")
    a_ids, b_ids = await _waiting(store, a, 5), await _waiting(store, b, 5)
    claimed = await store.claim_jobs("w1", 8, LEASE)
    assert sorted(j.id for j in claimed) == sorted(a_ids[:4] + b_ids[:4])
    alone = await _waiting(store, await _user(store, "alone"), 20)
    # A user with no one else waiting (a and b run 4 each) fills the claim alone.
    claimed = await store.claim_jobs("w1", 8, LEASE)
    assert sorted(j.id for j in claimed) == sorted([a_ids[4], b_ids[4], *alone[:6]])


async def test_a_large_claim_takes_a_quarter_of_itself_from_each_user_in_turn(
    store: JobStore,
) -> None:
    # A claim of 16 serves users four consecutive jobs at a time (each user's jobs are
    # neighbours in the table, so the claim and the stage writes touch a few pages, not 16),
    # counting the jobs a user runs already: still round-robin, in quanta of n / 4.
    users = [await _user(store, f"q{i}") for i in range(5)]
    ids = {u: await _waiting(store, u, 10) for u in users}
    first = await store.claim_jobs("w1", 16, LEASE)
    assert [j.id for j in first] == [i for u in users[:4] for i in ids[u][:4]]
    second = await store.claim_jobs("w1", 16, LEASE)
    # The fifth user's first quantum, then the next quantum of the users who ran one (their
    # fifth job ranks with the fifth user's second quantum; the oldest win the ties).
    assert sorted(j.id for j in second) == sorted(
        ids[users[4]][:4] + [i for u in users[:3] for i in ids[u][4:8]]
    )


async def test_users_past_the_window_are_served_in_turn(store: JobStore) -> None:
    # More users than one claim looks at (max(8, 2 x 4)): the window rotates, so none starves,
    # and the heavy user (the lowest id) gets no second job while lone users wait.
    heavy, lone = await _heavy_and_lone(store, 100, 50)
    claimed: list[int] = []
    for _ in range(13):  # ceil(51 / 4)
        claimed += [j.id for j in await store.claim_jobs("w1", 4, LEASE)]
    assert set(lone) <= set(claimed)
    assert [i for i in claimed if i in heavy] == heavy[: len(claimed) - len(lone)]
    assert len(claimed) - len(lone) <= 2


async def test_users_whose_jobs_wait_for_later_do_not_fill_the_window(store: JobStore) -> None:
    # 40 users whose jobs may run only in an hour (a retry's backoff), then one user whose job
    # may run now: the claim walks past the first without counting them, and finds it.
    for i in range(40):
        await _waiting(store, await _user(store, f"later{i}"), 2)
    await store.driver.write(execute(adhoc(
        """UPDATE "visionJobs" SET "runAfter" = "runAfter" + interval '1 hour'"""
        if store.dialect == "postgresql"
        else """UPDATE "visionJobs" SET "runAfter" = '9999-01-01T00:00:00+00:00'""")))  # fmt: skip
    [now_id] = await _waiting(store, await _user(store, "now"), 1)
    assert [j.id for j in await store.claim_jobs("w1", 4, LEASE)] == [now_id]
    assert await store.claim_jobs("w1", 4, LEASE) == []


async def test_concurrent_claimers_over_many_users_never_take_a_job_twice(
    database_url: str,
) -> None:
    stores = [await open_store(database_url, create=True) for _ in range(3)]  # as 3 processes
    try:
        expected: list[int] = []
        for i in range(45):
            expected += await _waiting(stores[0], await _user(stores[0], f"u{i}"), 4)
        taken: list[ClaimedJob] = []

        async def claimer(store: JobStore, name: str) -> None:
            while claimed := await store.claim_jobs(name, 7, LEASE):
                taken.extend(claimed)

        async with anyio.create_task_group() as tg:
            for i, s in enumerate(stores):
                tg.start_soon(claimer, s, f"w{i}")
        ids = [j.id for j in taken]
        assert sorted(ids) == sorted(set(ids)) == sorted(expected)
    finally:
        for s in stores:
            await s.driver.close()


async def test_a_completion_claims_the_lone_users_job_first(store: JobStore) -> None:
    heavy, _ = await _heavy_and_lone(store, 50, 0)
    running = await store.claim_jobs("w1", 4, LEASE)
    [lone_id] = await _waiting(store, await _user(store, "lone"), 1)
    outputs = Outputs(*([None] * 9), content_pieces="[]")  # type: ignore[arg-type]
    done, claimed = await store.complete_and_claim(
        running[0], "[]", outputs, AttemptRecord("complete", "x"), claim=2, lease=LEASE
    )
    assert done
    if store.dialect == "sqlite":  # the worker's claim loop claims, not the completion
        assert claimed == ()
        claimed = tuple(await store.claim_jobs("w1", 2, LEASE))
    # The lone user runs nothing, the heavy user three or four: its job comes first.
    assert sorted(j.id for j in claimed) == [heavy[4], lone_id]
    pending = await scalar(store, """SELECT COUNT(*) FROM "visionJobs" WHERE status = 'pending'""")
    assert pending == 50 - 4 - 1


async def test_jobs_stats_lists_waiting_jobs_by_user(store: JobStore) -> None:
    heavy, lone = await _heavy_and_lone(store, 30, 3)
    await store.claim_jobs("w1", 4, LEASE)  # heavy's first and the three lone jobs
    stats = await store.queue_stats(utcnow() - timedelta(hours=1))
    assert [(b.open_id, b.waiting, b.running) for b in stats.waiting_by_user] == [
        ("heavy", len(heavy) - 1, 1)
    ]
    assert len(lone) == 3
    for i in range(12):
        await _waiting(store, await _user(store, f"more{i:02}"), 1 + i % 2)
    backlog = (await store.queue_stats(utcnow())).waiting_by_user
    assert len(backlog) == 10  # the most waiting first, then by user id
    assert [b.open_id for b in backlog[:7]] == ["heavy", "more01", "more03", "more05",
                                               "more07", "more09", "more11"]  # fmt: skip
    assert [b.waiting for b in backlog] == [29] + [2] * 6 + [1] * 3
