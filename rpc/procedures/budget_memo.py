"""createJob's budget check's memo (``rpc.procedures.budgets``): the users lately found
without a budget, not read again for a few seconds. Its own module so that the services
(``rpc.context``) can hold one without importing the procedures that take the context."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.budgets import UserSpend

# How long a user seen without any budget is not read again (rpc.auth.sessions.ROLE_SECONDS').
NO_BUDGET_SECONDS = 2.0
_MEMO_LIMIT = 100_000  # users remembered at most (then forgotten all at once)


@dataclass
class NoBudgetMemo:
    """The users lately found without a budget while there is no default one: until when
    each needs no read; and the reads in flight, shared by the calls of one user that arrive
    together (a batch of 50 createJob calls makes one read). Per process, on the services."""

    until: dict[int, float] = field(default_factory=dict)
    reading: dict[int, asyncio.Future[UserSpend | None]] = field(default_factory=dict)

    async def read(
        self, user_id: int, load: Callable[[], Awaitable[UserSpend | None]]
    ) -> UserSpend | None:
        task = self.reading.get(user_id)
        if task is None:
            task = asyncio.ensure_future(load())
            self.reading[user_id] = task

            def done(finished: asyncio.Future[UserSpend | None]) -> None:
                if self.reading.get(user_id) is finished:
                    del self.reading[user_id]

            task.add_done_callback(done)
        return await asyncio.shield(task)

    def fresh(self, user_id: int, now: float) -> bool:
        return self.until.get(user_id, 0.0) > now

    def remember(self, user_id: int, now: float) -> None:
        if len(self.until) >= _MEMO_LIMIT:
            self.until.clear()
        self.until[user_id] = now + NO_BUDGET_SECONDS
