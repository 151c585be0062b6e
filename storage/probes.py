"""``JobStore``'s reads for the operators' probes (a base class of it): the queue's depth at
a scrape of ``/metrics``, a round trip for ``/readyz``. Neither runs per request or per job."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from storage.driver import Driver, fetch_all, fetch_one
from storage.jobstate import FINAL, JobStatus
from storage.queries import QUERIES
from storage.timeutil import as_datetime


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Unfinished jobs by status (every unfinished status present, 0 when none), and when the
    oldest pending one was created (None: nothing waits)."""

    jobs: dict[JobStatus, int] = field(default_factory=dict)
    oldest_pending: datetime | None = None


class ProbeStore:
    driver: Driver

    async def queue_depth(self) -> QueueDepth:
        rows = await self.driver.read(fetch_all(QUERIES["queue_depth"]))
        jobs = {status: 0 for status in JobStatus if status not in FINAL}
        oldest = None
        for row in rows:
            status = JobStatus(row["status"])
            jobs[status] = int(row["jobs"])
            if status is JobStatus.PENDING:
                oldest = as_datetime(row["oldest"])
        return QueueDepth(jobs, oldest)

    async def ping(self) -> None:
        """One round trip; raises whatever the driver raises when the database is away."""
        await self.driver.read(fetch_one(QUERIES["ping"]))
