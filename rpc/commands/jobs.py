"""``jobs``: see and operate the queue. Each subcommand group is a module of its own with a
``register(jobs_sub)``, listed in ``SUBCOMMANDS``."""

from __future__ import annotations

from typing import Any

from rpc.commands import jobs_change, jobs_export, jobs_read, jobs_stats, prune

# `jobs prune` (rpc/commands/prune.py) joins this tuple.
SUBCOMMANDS: tuple[Any, ...] = (jobs_read, jobs_stats, jobs_change, jobs_export, prune)


def register(sub: Any) -> None:
    jobs = sub.add_parser(
        "jobs",
        help="see and operate the queue's jobs",
        description="See and operate the queue's jobs.",
    )
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(jobs_sub)
