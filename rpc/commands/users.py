"""``users``: list them, and set a user's role."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rpc.commands.common import CommandError, add_json, positive_int, print_json, with_store
from rpc.commands.tables import print_listing
from rpc.config import Settings

if TYPE_CHECKING:
    from storage.store import JobStore

COLUMNS = ("id", "openId", "name", "email", "role", "jobs", "createdAt", "lastSignedIn")


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def body(store: JobStore) -> int:
        users = await store.list_users(args.limit)
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


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="list users, set a user's role")
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
