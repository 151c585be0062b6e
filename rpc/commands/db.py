"""``db``: the schema (upgrade, current, check) and the one-off conversion of older versions'
data: URLs."""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from rpc.config import Settings


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Create the database's tables or bring them to this version's revision (``db push``,
    0.1.0's command, is the same)."""
    from storage.engine import prepare

    done = anyio.run(lambda: prepare(settings.database_url, create=True))
    assert done is not None
    if done.before is None and not done.stamped:
        print(f"created the schema at revision {done.after}")
    elif done.stamped or done.before != done.after:
        print(f"upgraded the schema from {done.before or '0.1.0 (no revision)'} to {done.after}")
    else:
        print(f"the schema is up to date (revision {done.after})")
    if done.added:
        print(f"added columns: {', '.join(done.added)}")
    if done.repaired:
        print(f"restored: {', '.join(done.repaired)}")
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    from storage.engine import inspect_existing
    from storage.migrate import HEAD

    state = anyio.run(inspect_existing, settings.database_url)
    revision = state.revision or "0.1.0 (no revision)"
    head = " (head)" if state.revision == HEAD else f" (this version's head: {HEAD})"
    print(revision + head)
    return 0 if state.revision == HEAD else 1


def cmd_db_check(args: argparse.Namespace, settings: Settings) -> int:
    """The differences between the database and what this version's models describe."""
    from storage.engine import inspect_existing
    from storage.migrate import HEAD

    state = anyio.run(lambda: inspect_existing(settings.database_url, check=True))
    problems = [str(d) for d in state.differences]
    if state.revision != HEAD:
        problems.insert(0, f"revision {state.revision or 'none'}, this version's is {HEAD}")
    if not problems:
        print(f"schema matches revision {HEAD}")
        return 0
    for problem in problems:
        print(problem)
    print("`vision-pipeline db upgrade` restores missing tables, indexes and triggers")
    return 1


def cmd_db_convert_images(args: argparse.Namespace, settings: Settings) -> int:
    """Move the whole data: URLs older versions kept in visionJobs.imageUrl into the image
    store (serve and worker do it at start; this does it now, and says what it did). The
    database must exist; an older one is upgraded first, as serve would."""
    from storage.engine import inspect_existing, open_store, prepare
    from storage.images import INVALID_IMAGE_URL, convert_inline_images

    async def main() -> None:
        await inspect_existing(settings.database_url)  # refuses a missing database
        await prepare(settings.database_url, create=True)
        store = await open_store(settings.database_url)
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
    upgrade_help = "create the database's tables or upgrade them to this version's schema"
    db_sub.add_parser("upgrade", help=upgrade_help).set_defaults(run=cmd_db_upgrade)
    db_sub.add_parser("push", help="the same as upgrade (its name before 0.2)").set_defaults(
        run=cmd_db_upgrade
    )
    db_sub.add_parser("current", help="print the database's schema revision").set_defaults(
        run=cmd_db_current
    )
    db_sub.add_parser(
        "check", help="compare the database with this version's schema (exit 1 if it differs)"
    ).set_defaults(run=cmd_db_check)
    db_sub.add_parser(
        "convert-images", help="move data: URLs stored by older versions into the image store"
    ).set_defaults(run=cmd_db_convert_images)
