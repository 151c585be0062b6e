"""``JobStore``'s reads for the result cache (a base class of it; ``pipeline.cache`` decides
when to ask): a stage's newest stored answer under a key, within the TTL and the scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.driver import Driver, fetch_one
from storage.jobstate import Stage
from storage.queries import QUERIES

_LOOKUP = {
    Stage.VISION: QUERIES["cache_vision_answer"],
    Stage.CONTENT: QUERIES["cache_content_answer"],
}


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A stage's stored answer: the job that paid for it, and the answer as stored (the
    analysis JSON of ``geminOutput``, or the pieces JSON of ``deepseekOutput``)."""

    job_id: int
    answer: str


class StageCacheStore:
    driver: Driver

    async def cached_answer(
        self, stage: Stage, key: str, since: datetime, user_id: int | None
    ) -> CachedAnswer | None:
        """The newest answer of ``stage`` stored under ``key`` at ``since`` or later, of
        ``user_id``'s jobs (None: anyone's); None when there is none."""
        row = await self.driver.read(fetch_one(_LOOKUP[stage], key, since, user_id))
        if row is None or row["answer"] is None:
            return None
        return CachedAnswer(int(row["id"]), str(row["answer"]))
