"""``users``: operate on users."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from rpc.config import Settings


def cmd_set_role(args: argparse.Namespace, settings: Settings) -> int:
    from storage.engine import open_store

    async def main() -> int:
        store = await open_store(settings.database_url)
        try:
            user_id = await store.set_user_role(args.open_id, args.role)
            print(f"user {args.open_id} (id {user_id}) is now {args.role}")
            return 0
        finally:
            await store.driver.close()

    return anyio.run(main)


def register(sub: Any) -> None:
    users = sub.add_parser("users", help="operate on users")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    set_role = users_sub.add_parser("set-role", help="make a user an admin (or a user)")
    set_role.add_argument("open_id")
    set_role.add_argument("role", choices=["admin", "user"])
    set_role.set_defaults(run=cmd_set_role)
