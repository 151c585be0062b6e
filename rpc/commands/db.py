"""``db``: the schema (push) and the one-off conversion of older versions' data: URLs."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from rpc.config import Settings


def cmd_db_push(args: argparse.Namespace, settings: Settings) -> int:
    from storage.schema import push
    from storage.urls import parse_database_url

    added = anyio.run(push, parse_database_url(settings.database_url))
    print("tables are up to date" + (f" (added columns: {', '.join(added)})" if added else ""))
    return 0


def cmd_db_convert_images(args: argparse.Namespace, settings: Settings) -> int:
    """Move the whole data: URLs older versions kept in visionJobs.imageUrl into the image
    store (serve and worker do it at start; this does it now, and says what it did)."""
    from storage.engine import open_driver
    from storage.images import INVALID_IMAGE_URL, convert_inline_images
    from storage.schema import push
    from storage.store import JobStore
    from storage.urls import parse_database_url

    async def main() -> None:
        url = parse_database_url(settings.database_url)
        await push(url)
        store = JobStore(await open_driver(url))
        try:
            done = await convert_inline_images(store)
        finally:
            await store.driver.close()
        print(f"converted {done.jobs} jobs with a data: URL into {done.images} stored images"
              + (f" ({done.invalid} not valid base64: now {INVALID_IMAGE_URL})"
                 if done.invalid else ""))  # fmt: skip

    anyio.run(main)
    return 0


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="database commands")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("push", help="create or update the tables").set_defaults(run=cmd_db_push)
    db_sub.add_parser(
        "convert-images", help="move data: URLs stored by older versions into the image store"
    ).set_defaults(run=cmd_db_convert_images)
