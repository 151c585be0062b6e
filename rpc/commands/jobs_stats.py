"""``jobs stats``: the queue now and over a window."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rpc.commands.common import add_json, parse_since, print_json, with_store
from rpc.commands.tables import print_fields, print_table
from rpc.config import Settings

if TYPE_CHECKING:
    from storage.operators import QueueStats
    from storage.store import JobStore


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def as_json(stats: QueueStats) -> dict[str, Any]:
    out = asdict(stats)
    out["now"], out["since"] = stats.now.isoformat(), stats.since.isoformat()
    out["throughput_per_min"] = stats.throughput_per_min
    return out


def print_stats(stats: QueueStats, window: str) -> None:
    print_table(("status", "jobs"), stats.counts.items(), title="jobs by status (all)")
    print_fields(
        [
            ("oldest waiting job", _seconds(stats.oldest_pending_age_s)),
            (f"completed (since {window})", stats.completed),
            ("throughput", f"{stats.throughput_per_min:.4g} jobs/min"),
            ("time to complete p50", _seconds(stats.p50_s)),
            ("time to complete p95", _seconds(stats.p95_s)),
            ("cost today (UTC)", f"${stats.cost_usd['today']:.4f}"),
            ("cost 7 d", f"${stats.cost_usd['7d']:.4f}"),
            ("cost 30 d", f"${stats.cost_usd['30d']:.4f}"),
        ]
    )
    failures = stats.failures_by_stage
    print_table(("stage", "failed"), failures.items(), title=f"failures by stage (since {window})")
    if stats.waiting_by_user:  # the fair claim takes turns between them (issue 17)
        print_table(
            ("user", "openId", "waiting", "running"),
            [(b.user_id, b.open_id or "-", b.waiting, b.running) for b in stats.waiting_by_user],
            title="waiting jobs by user (most first)",
        )


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    now = datetime.now(UTC)  # one instant: the window is exactly --since long
    try:
        since = parse_since(args.since, now)
    except argparse.ArgumentTypeError as bad:
        print(f"--since: {bad}", file=sys.stderr)
        return 2

    async def body(store: JobStore) -> int:
        stats = await store.queue_stats(since, now)
        if args.json:
            print_json(as_json(stats))
        else:
            print_stats(stats, args.since)
        return 0

    return with_store(settings, body)


def register(jobs_sub: Any) -> None:
    stats = jobs_sub.add_parser(
        "stats",
        help="counts by status, oldest waiting job, throughput, p50/p95, failures, cost, "
        "waiting jobs by user",
        description="Counts by status (all jobs) and the oldest waiting job's age; over the "
        "window: completions,\nthroughput, p50/p95 time to complete (created to completed), "
        "failures by stage.\nCost: the jobs created today (UTC), in 7 days, in 30 days.\n"
        "Waiting jobs by user: the 10 users with the most (the claim takes turns between "
        "users).",
    )
    stats.add_argument(
        "--since", default="24h", metavar="WHEN", help="the window: 30m, 1h, 2d, 1w or an ISO time"
    )
    add_json(stats)
    stats.set_defaults(run=cmd_stats)
