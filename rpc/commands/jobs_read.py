"""``jobs list`` and ``jobs show``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rpc.commands.common import (
    CommandError,
    add_filters,
    add_json,
    job_filter,
    positive_int,
    print_json,
    with_store,
)
from rpc.commands.tables import cell, print_fields, print_listing, print_table
from rpc.config import Settings
from storage.jobstate import JobStatus

if TYPE_CHECKING:
    from storage.store import JobStore

LIST_COLUMNS = (
    "id",
    "openId",
    "status",
    "progress",
    "retryCount",
    "errorStage",
    "costUsd",
    "createdAt",
    "completedAt",
)
ATTEMPT_COLUMNS = (
    "attempt",
    "workerId",
    "stageReached",
    "outcome",
    "startedAt",
    "endedAt",
    "geminiInputTokens",
    "geminiOutputTokens",
    "deepseekInputTokens",
    "deepseekOutputTokens",
    "costUsd",
    "errorMessage",
)
EVENT_COLUMNS = ("id", "status", "progress", "createdAt", "errorMessage")
# The outputs can be pages long: a human view shows their start (--json shows them whole).
OUTPUT_PREVIEW = 160


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    async def body(store: JobStore) -> int:
        jobs = await store.list_jobs(job_filter(args), args.limit)
        if args.json:
            print_json(jobs)
        else:
            print_listing(LIST_COLUMNS, jobs, "jobs", args.limit, "the newest")
        return 0

    return with_store(settings, body)


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    async def body(store: JobStore) -> int:
        detail = await store.job_detail(args.job_id)
        if detail is None:
            raise CommandError(f"job {args.job_id} does not exist")
        if args.json:
            print_json({"job": detail.job, "attempts": detail.attempts, "events": detail.events})
            return 0
        print_fields(_job_fields(detail.job), title=f"job {args.job_id}")
        print_table(
            ATTEMPT_COLUMNS,
            ([a[c] for c in ATTEMPT_COLUMNS] for a in detail.attempts),
            title=f"attempts ({len(detail.attempts)})",
        )
        for line in cached_lines(detail.attempts):
            print(line)
        print_table(
            EVENT_COLUMNS,
            ([e[c] for c in EVENT_COLUMNS] for e in detail.events),
            title=f"events ({len(detail.events)})",
        )
        return 0

    return with_store(settings, body)


def cached_lines(attempts: list[dict[str, Any]]) -> list[str]:
    """A line per stage whose answer an attempt took from the result cache."""
    lines = []
    for attempt in attempts:
        for stage, column in (("vision", "geminiCachedFrom"), ("content", "deepseekCachedFrom")):
            if attempt.get(column) is not None:
                lines.append(f"attempt {attempt['attempt']}: {stage} stage cached from job "
                             f"{attempt[column]} (no provider call, no cost)")  # fmt: skip
    return lines


def _job_fields(job: dict[str, Any]) -> list[tuple[str, Any]]:
    long = {"geminOutput", "deepseekOutput", "imageUrl", "partialContent"}
    return [(k, cell(v, OUTPUT_PREVIEW) if k in long else v) for k, v in job.items()]


def register(jobs_sub: Any) -> None:
    statuses = [s.value for s in JobStatus]
    listing = jobs_sub.add_parser(
        "list", help="the newest jobs, filtered", description="The newest jobs first."
    )
    add_filters(listing, statuses)
    listing.add_argument("--limit", type=positive_int, default=50, help="how many jobs at most")
    add_json(listing)
    listing.set_defaults(run=cmd_list)

    show = jobs_sub.add_parser("show", help="one job with its attempts and events")
    show.add_argument("job_id", type=int, metavar="ID", help="the job's id")
    add_json(show)
    show.set_defaults(run=cmd_show)
