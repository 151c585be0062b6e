"""A worker process's row in the workers table (``visionWorkers``, ``storage.dashboard``):
how the dashboard and ``vision-pipeline workers`` see every worker on every host, where
``getWorkerStatus`` knows only its own process.

The worker's heartbeat (``Worker._heartbeat_loop``, every lease renewal) writes it, never a
job; a clean stop deletes it; a killed process's row is deleted by the others' heartbeats
once it has been silent for a day (``storage.dashboard.STALE_WORKER_AFTER``). A failed write
is logged and made again at the next beat: the row is for people, the queue never reads it.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

from storage.dashboard import WorkerRow
from storage.store import JobStore

log = logging.getLogger("pipeline.worker")


class Presence:
    def __init__(self, store: JobStore, worker_id: str, concurrency: int) -> None:
        self.store = store
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.host = socket.gethostname()[:255]  # the column's width
        self.started_at = datetime.now(UTC)

    def started(self) -> None:
        self.started_at = datetime.now(UTC)

    async def seen(self, running: int) -> None:
        """The heartbeat's write: the row, with ``running`` jobs in flight."""
        row = WorkerRow(self.worker_id, self.host, os.getpid(), self.started_at,
                        datetime.now(UTC), self.concurrency, running)  # fmt: skip
        try:
            await self.store.worker_seen(row)
        except Exception as exc:
            log.warning("could not write worker %s's row in the workers table (%s)",
                        self.worker_id, exc)  # fmt: skip

    async def gone(self) -> None:
        """A clean stop: the row deleted."""
        try:
            await self.store.forget_worker(self.worker_id)
        except Exception as exc:
            log.warning("could not delete worker %s's row from the workers table (%s)",
                        self.worker_id, exc)  # fmt: skip
