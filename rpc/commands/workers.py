"""``workers``: the worker processes of the database, on every host (the workers table each
worker's heartbeat writes; ``storage.dashboard``)."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rpc.commands.common import add_json, print_json, with_store
from rpc.commands.tables import print_table
from rpc.config import Settings
from storage.timeutil import UtcTimestamp, utcnow

if TYPE_CHECKING:
    from storage.dashboard import WorkerRow
    from storage.store import JobStore

COLUMNS = ("workerId", "host", "pid", "concurrency", "running", "alive", "startedAt",
           "lastSeenAt")  # fmt: skip


def worker_json(row: WorkerRow, alive: bool) -> dict[str, Any]:
    return {
        "workerId": row.worker_id, "host": row.host, "pid": row.pid,
        "concurrency": row.concurrency, "running": row.running, "alive": alive,
        "startedAt": UtcTimestamp.of(row.started_at).iso,
        "lastSeenAt": UtcTimestamp.of(row.last_seen_at).iso,
    }  # fmt: skip


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    async def body(store: JobStore) -> int:
        rows = await store.list_workers()
        # Alive: a heartbeat within three lease renewals (one every third of a lease), as the
        # dashboard says it.
        since = utcnow() - timedelta(seconds=settings.lease_seconds)
        workers = [worker_json(r, r.last_seen_at >= since) for r in rows]
        if args.json:
            print_json(workers)
            return 0
        if not workers:
            print("no workers: none runs (a stopped worker removes its row)")
            return 0
        print_table(COLUMNS, ([w[c] for c in COLUMNS] for w in workers))
        alive = sum(1 for w in workers if w["alive"])
        running = sum(w["running"] for w in workers if w["alive"])
        print(f"{len(workers)} workers, {alive} alive, {running} jobs running")
        return 0

    return with_store(settings, body)


def register(sub: Any) -> None:
    workers = sub.add_parser(
        "workers",
        help="the worker processes on every host, with their heartbeats",
        description="The worker processes of the database, on every host, as their "
        "heartbeats last wrote them.\nAlive: a heartbeat within one lease (LEASE_SECONDS); "
        "a stopped worker's row is gone,\na killed one's stays until it has been silent "
        "for a day.",
    )
    add_json(workers)
    workers.set_defaults(run=cmd_workers)
