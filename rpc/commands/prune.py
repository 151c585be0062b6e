"""``jobs prune``: delete finished jobs older than an age now, whatever RETENTION_DAYS says
(the job part of ``pipeline.retention``'s housekeeping, on demand)."""

from __future__ import annotations

import argparse
import json
import re
from datetime import timedelta
from typing import Any

import anyio

from rpc.config import Settings

_AGE = re.compile(r"(\d{1,6})([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h`` or ``90m`` as a timedelta (argparse's type: a one-line error else)."""
    match = _AGE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: a positive number of days, hours or minutes (30d, 12h, 90m)"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    from storage.engine import open_store
    from storage.timeutil import utcnow

    async def main() -> int:
        store = await open_store(settings.database_url)
        try:
            cutoff = utcnow() - args.older_than
            if args.dry_run:
                count = await store.count_prunable_jobs(cutoff)
            else:
                count = await store.prune_jobs(cutoff)
                if count:
                    await store.reclaim_space()  # as the housekeeping does
        finally:
            await store.driver.close()
        if args.json:
            print(json.dumps({"jobs": count, "dryRun": args.dry_run,
                              "finishedBefore": cutoff.isoformat()}))  # fmt: skip
        elif args.dry_run:
            print(f"{count} finished jobs (complete, error) older than {args.age_text} would be "
                  "deleted; dry run, nothing changed")  # fmt: skip
        else:
            print(f"deleted {count} finished jobs (complete, error) older than {args.age_text}, "
                  "with their attempts, events, outputs and unused images")  # fmt: skip
        return 0

    args.age_text = _age_text(args.older_than)
    return anyio.run(main)


def _age_text(age: timedelta) -> str:
    minutes = int(age.total_seconds()) // 60
    if minutes % (24 * 60) == 0:
        return f"{minutes // (24 * 60)}d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def register(jobs_sub: Any) -> None:
    prune = jobs_sub.add_parser(
        "prune",
        help="delete finished jobs older than an age, with their attempts, events, outputs and "
        "unused stored images (pending and running jobs are never touched)",
    )
    prune.add_argument(
        "--older-than", required=True, type=parse_age, metavar="AGE",
        help="how long ago the job finished (its last update): 30d, 12h or 90m",
    )  # fmt: skip
    prune.add_argument(
        "--dry-run", action="store_true", help="only count the jobs that would be deleted"
    )
    prune.add_argument("--json", action="store_true", help="print the result as one JSON line")
    prune.set_defaults(run=cmd_prune)
