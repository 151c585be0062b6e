"""``users``: list them, set a user's role, set a user's daily spending budget."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any

from rpc.commands.common import CommandError, add_json, positive_int, print_json, with_store
from rpc.commands.tables import print_listing
from rpc.config import Settings
from rpc.procedures.budgets import money

if TYPE_CHECKING:
    from storage.store import JobStore

COLUMNS = (
    "id", "openId", "name", "email", "role", "jobs", "budget", "createdAt", "lastSignedIn",
)  # fmt: skip


def budget_text(user: dict[str, Any], default: float) -> str:
    """A user's daily budget as `users list` shows it (rpc.procedures.budgets' rules)."""
    if user.get("role") == "admin":
        return "exempt (admin)"
    own = user.get("dailyBudgetUsd")
    if own is None:
        return f"default ({money(default)})" if default > 0 else "none (default)"
    return money(float(own)) if own > 0 else "none"


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def body(store: JobStore) -> int:
        users = await store.list_users(args.limit)
        for user in users:
            user["budget"] = budget_text(user, settings.user_daily_budget_usd)
        if args.json:
            print_json(users)
        else:
            print_listing(COLUMNS, users, "users", args.limit, "the first")
        return 0

    return with_store(settings, body)


def cmd_set_role(args: argparse.Namespace, settings: Settings) -> int:
    async def body(store: JobStore) -> int:
        if args.create:
            user_id = await store.set_user_role(args.open_id, args.role)
        else:
            found = await store.change_user_role(args.open_id, args.role)
            if found is None:
                raise CommandError(f"user {args.open_id} does not exist; --create to add them")
            user_id = found
        print(f"user {args.open_id} (id {user_id}) is now {args.role}")
        return 0

    return with_store(settings, body)


def budget_value(text: str) -> float | str:
    """set-budget's USD argument: a number (0: no budget), ``none``, or ``default``."""
    word = text.strip().lower()
    if word in ("none", "default"):
        return word
    try:
        usd = float(word.removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an amount in USD, 'none' or 'default'"
        ) from None
    if not math.isfinite(usd) or usd < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a budget is 0 or more USD")
    return usd


def cmd_set_budget(args: argparse.Namespace, settings: Settings) -> int:
    value = args.usd
    stored = None if value == "default" else 0.0 if value == "none" else float(value)

    async def body(store: JobStore) -> int:
        user_id = await store.set_user_budget(args.open_id, stored)
        if user_id is None:
            raise CommandError(f"user {args.open_id} does not exist")
        text = budget_text({"dailyBudgetUsd": stored}, settings.user_daily_budget_usd)
        print(f"user {args.open_id} (id {user_id}): daily budget {text}")
        return 0

    return with_store(settings, body)


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="list users, set a user's role or budget")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    listing = users_sub.add_parser("list", help="the users, by id, with their job counts")
    listing.add_argument("--limit", type=positive_int, default=100, help="how many users at most")
    add_json(listing)
    listing.set_defaults(run=cmd_list)

    set_role = users_sub.add_parser("set-role", help="make a user an admin (or a user)")
    set_role.add_argument("open_id", metavar="OPEN_ID", help="the user's openId")
    set_role.add_argument("role", choices=["admin", "user"], help="the new role")
    set_role.add_argument(
        "--create",
        action="store_true",
        help="add the user if the openId is unknown (before their first login)",
    )
    set_role.set_defaults(run=cmd_set_role)

    set_budget = users_sub.add_parser(
        "set-budget", help="set a user's daily spending budget (createJob refuses past it)"
    )
    set_budget.add_argument("open_id", metavar="OPEN_ID", help="the user's openId")
    set_budget.add_argument(
        "usd",
        metavar="USD",
        type=budget_value,
        help="USD per day (UTC); 0 or 'none': no budget; 'default': USER_DAILY_BUDGET_USD",
    )
    set_budget.set_defaults(run=cmd_set_budget)
