"""The content stage's answer so far (issue 17): a running attempt's streamed text, written to
its job's ``partialContent`` and so, by the triggers, into an ordinary job event.

Writes of the same moment (many jobs streaming at once) share one statement
(``storage.coalesce``); each row keeps its fence (id, attempt, worker, and the content stage),
so a worker that lost its lease, or a write arriving after the attempt ended, changes
nothing. Every end of an attempt (completion, retry, failure, release) clears the column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from storage.changes import ChangeFeed
from storage.coalesce import Coalescer
from storage.driver import Driver, Row, fetch_all
from storage.queries import QUERIES
from storage.records import ClaimedJob
from storage.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class PartialContent:
    job: ClaimedJob
    text: str


class PartialStore:
    driver: Driver
    feed: ChangeFeed
    _partial_writes: Coalescer[PartialContent, bool] | None = None

    async def store_partial_content(self, job: ClaimedJob, text: str) -> bool:
        """Fenced: the attempt's answer so far on its job's row. False: the attempt no longer
        holds the job at the content stage (nothing written)."""
        if self._partial_writes is None:
            self._partial_writes = Coalescer(self._partial_batch)
        return await self._partial_writes.submit(PartialContent(job, text))

    async def _partial_batch(self, items: list[PartialContent]) -> list[bool]:
        rows = json.dumps(
            [{"id": i.job.id, "attempt": i.job.attempt, "worker": i.job.worker_id,
              "content": i.text} for i in items],
            separators=(",", ":"), ensure_ascii=False,
        )  # fmt: skip
        written: list[Row] = await self.driver.write(
            fetch_all(QUERIES["store_partial_contents"], utcnow(), rows)
        )
        self.feed.poke()
        held = {(r["id"], r["attempt"]) for r in written}
        return [(i.job.id, i.job.attempt) in held for i in items]
