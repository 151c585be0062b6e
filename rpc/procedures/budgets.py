"""Users' daily spending budgets (issue 17): createJob's check, and ``visionPipeline.getUsage``.

What this module promises:

- A user's budget is their own (``vision-pipeline users set-budget``: USD, or ``none``), else
  USER_DAILY_BUDGET_USD (0: none). Admins have none (exempt).
- Their spend today is the cost of their attempts (``visionJobSessions.costUsd``; a result
  served from the cache costs 0) that ended since midnight UTC.
- Once it reached the budget, createJob answers ``PAYMENT_REQUIRED`` (402) "Daily budget of
  $2.00 reached ($2.01 spent today); it resets at 2026-12-05T00:00:00Z.", with a Retry-After
  header (the seconds until then), and nothing is created. Only createJob is gated: jobs
  already created run to completion, so a day's spend can exceed the budget by the cost of
  the jobs in flight when it was reached.

Cost: one read per createJob of a user who is not an admin (``user_spend_today``: the users
row, and only when a budget applies, the sum over the user's jobs changed today by the
(userId, updatedAt) index and their attempts by the (jobId, attempt) one). With no default
budget (USER_DAILY_BUDGET_USD=0, the default), a user found without a budget of their own is
not read again for ``NO_BUDGET_SECONDS`` (``NoBudgetMemo``): the read, one round trip per
createJob that the inserts' coalescing cannot share, halved the API's job creation with 100
users (bench/RESULTS.md §20). So a budget set for such a user reaches a running server within
those seconds, as a role change does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import TYPE_CHECKING, Any, Literal

from rpc.procedures.budget_memo import NoBudgetMemo
from rpc.wire.errors import TRPCError
from storage.timeutil import utcnow

if TYPE_CHECKING:
    from rpc.auth.sessions import Caller
    from rpc.config import Settings
    from rpc.context import Context
    from storage.budgets import UserSpend
    from storage.store import JobStore

Source = Literal["user", "default", "none"]


@dataclass(frozen=True, slots=True)
class Budget:
    usd: float | None  # None: no budget
    source: Source
    exempt: bool  # an admin


def midnight(now: datetime) -> datetime:
    """The start of ``now``'s day, UTC."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def budget_of(spend: UserSpend | None, default: float) -> Budget:
    """The budget that applies to a user (``spend``: their row, None when they have none)."""
    if spend is not None and spend.role == "admin":
        return Budget(None, "none", True)
    if spend is None or spend.budget is None:
        return Budget(default, "default", False) if default > 0 else Budget(None, "none", False)
    return Budget(spend.budget, "user", False) if spend.budget > 0 else Budget(None, "none", False)


def money(usd: float) -> str:
    return f"${usd:,.2f}"


async def check(store: JobStore, settings: Settings, caller: Caller, memo: NoBudgetMemo) -> None:
    """createJob's check: ``PAYMENT_REQUIRED`` when the caller's spend today reached their
    budget. Admins are not read at all, nor (for a few seconds) a user just found without one."""
    if caller.role == "admin":
        return
    default = settings.user_daily_budget_usd
    clock = monotonic()
    if default <= 0 and memo.fresh(caller.user_id, clock):
        return
    now = utcnow()
    today = midnight(now)
    spend = await memo.read(
        caller.user_id, lambda: store.user_spend(caller.user_id, default, today)
    )
    budget = budget_of(spend, default)
    if budget.usd is None and default <= 0:
        memo.remember(caller.user_id, clock)
    if budget.usd is None or spend is None or spend.spent is None:
        return
    if spend.spent >= budget.usd:
        resets = today + timedelta(days=1)
        retry = max(math.ceil((resets - now).total_seconds()), 1)
        raise TRPCError(
            "PAYMENT_REQUIRED",
            f"Daily budget of {money(budget.usd)} reached ({money(spend.spent)} spent today); "
            f"it resets at {iso(resets)}.",
            headers={"retry-after": str(retry)},
        )


async def get_usage(ctx: Context, _: None) -> dict[str, Any]:
    """``visionPipeline.getUsage``: the caller's spend today and their budget."""
    caller = await ctx.caller()
    assert caller is not None
    settings = ctx.services.settings
    today = midnight(utcnow())
    default = settings.user_daily_budget_usd
    spend = await ctx.services.store.user_spend(caller.user_id, default, today, always=True)
    budget = budget_of(spend, default)
    spent = round(spend.spent or 0.0, 6) if spend is not None else 0.0
    return {
        "spentTodayUsd": spent,
        "budgetUsd": budget.usd,
        "remainingUsd": None if budget.usd is None else round(max(budget.usd - spent, 0.0), 6),
        "resetsAt": iso(today + timedelta(days=1)),
        "exempt": budget.exempt,
        "budgetSource": budget.source,
    }
