"""``jobs``: operate on jobs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from rpc.commands import prune
from rpc.config import Settings


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from storage.engine import open_store

    async def main() -> int:
        store = await open_store(settings.database_url)
        try:
            if args.action == "retry":
                if await store.retry_failed_job(args.job_id):
                    print(f"job {args.job_id} is pending again, retries reset")
                    return 0
                print(f"job {args.job_id} is not in error", file=sys.stderr)
                return 1
            outcome = await store.cancel_job(args.job_id)
            if outcome is None:
                print(f"job {args.job_id} is not waiting or running", file=sys.stderr)
                return 1
            print(f"job {args.job_id}: {outcome}")
            return 0
        finally:
            await store.driver.close()

    return anyio.run(main)


def register(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="operate on jobs")
    jobs_sub = jobs.add_subparsers(dest="action", required=True)
    for action, text in (("retry", "an error job back to pending, retries reset"),
                         ("cancel", "cancel a waiting job, or stop a running one")):  # fmt: skip
        parser = jobs_sub.add_parser(action, help=text)
        parser.add_argument("job_id", type=int, help="the job's id")
        parser.set_defaults(run=cmd_jobs)
    prune.register(jobs_sub)
