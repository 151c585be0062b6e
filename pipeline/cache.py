"""The result cache, per stage: a job whose stage key matches an answer stored less than
CACHE_TTL_HOURS ago reuses it instead of calling the provider (issue 17).

**The keys** are SHA-256s of a canonical JSON of what decides the answer. Stage 1: the image's
bytes (their SHA-256), the provider and its model, the prompt's version and the job's inputs
that reach the prompt (purpose, context, creativity). Stage 2: the analysis, the provider and
its model, the prompt's version and its inputs (purpose, context, format, creativity,
instructions). **A prompt's version** is the SHA-256 of the prompt text as it is sent
(``pipeline.prompts``: system prompt, response schema, the request's user prompt), so any
change of that text changes the version and the key; nobody has to remember to bump it. The
offline providers are keyed the same way (their model names are theirs).

**Where an answer is found**: ``JobStore.cached_answer``, the newest job whose stage was
answered by its provider under the same key, of the same user unless CACHE_SCOPE=global (a
hit must not tell one user that another sent the same image), within the TTL.

**Single flight, in this process**: jobs with the same key that run at once in one worker
process wait for the first one's lookup or call and take its answer (``StageCache.run``).
Across processes each worker checks the database first, so a second process calls the
provider again only when its job overlaps the first one's call (docs-pending/cache.md: why
no cross-process wait).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

import anyio

from pipeline import metrics
from pipeline.prompts import (
    content_system_prompt,
    content_user_prompt,
    vision_response_schema,
    vision_system_prompt,
    vision_user_prompt,
)
from pipeline.providers.base import ContentRequest, StageResult, VisionRequest
from storage.jobstate import Stage
from storage.records import ClaimedJob
from storage.stagecache import CachedAnswer

T = TypeVar("T")
Lookup = Callable[[Stage, str, datetime, int | None], Awaitable[CachedAnswer | None]]


def model_of(provider: object) -> str:
    """The model a provider asks (a rate-limited one's inner provider's), else its name."""
    for candidate in (provider, getattr(provider, "inner", None)):
        model = getattr(candidate, "model", None)
        if isinstance(model, str) and model:
            return model
    return str(getattr(provider, "name", "provider"))


def digest(parts: dict[str, Any]) -> str:
    """SHA-256 (hex) of ``parts`` as canonical JSON: sorted keys, no spaces, UTF-8."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def vision_prompt_version(request: VisionRequest) -> str:
    """The version of stage 1's prompt: the SHA-256 of its text as sent for ``request``."""
    schema = json.dumps(vision_response_schema(), sort_keys=True)
    return _sha("\n".join((vision_system_prompt(), schema, vision_user_prompt(request))))


def content_prompt_version(request: ContentRequest) -> str:
    """The version of stage 2's prompt: the SHA-256 of its text as sent for ``request``."""
    return _sha("\n".join((content_system_prompt(), content_user_prompt(request))))


def vision_key(provider: object, request: VisionRequest) -> str:
    """Stage 1's key: image bytes, provider and model, prompt version, the prompt's inputs."""
    return digest({
        "stage": Stage.VISION.value,
        "image": hashlib.sha256(request.image.data).hexdigest(),
        "provider": str(getattr(provider, "name", "")), "model": model_of(provider),
        "prompt": vision_prompt_version(request),
        "purpose": request.analysis_purpose, "context": request.image_context,
        "creativity": request.creativity_level,
    })  # fmt: skip


def content_key(provider: object, request: ContentRequest) -> str:
    """Stage 2's key: the analysis, provider and model, prompt version, the prompt's inputs."""
    return digest({
        "stage": Stage.CONTENT.value,
        "analysis": digest(request.analysis.model_dump(mode="json")),
        "provider": str(getattr(provider, "name", "")), "model": model_of(provider),
        "prompt": content_prompt_version(request),
        "purpose": request.analysis_purpose, "context": request.image_context,
        "format": request.output_format, "creativity": request.creativity_level,
        "instructions": request.additional_instructions,
    })  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cached(Generic[T]):
    """A stage's answer taken from the cache: the value, and the job that paid for it."""

    value: T
    job_id: int


@dataclass(eq=False)
class _Flight:
    """One lookup-and-call in progress for a key; its followers wait for ``done``."""

    job_id: int
    done: anyio.Event = field(default_factory=anyio.Event)
    value: Any = None
    found: bool = False


class StageCache:
    """The result cache of one worker process: the lookups (``JobStore.cached_answer``), the
    TTL and scope, and the flights in progress (one per stage, scope and key)."""

    def __init__(self, lookup: Lookup, ttl_hours: float, scope: Literal["user", "global"]):
        self._lookup = lookup
        self._ttl = timedelta(hours=ttl_hours)
        self._global = scope == "global"
        self._flights: dict[tuple[Stage, int | None, str], _Flight] = {}

    @property
    def enabled(self) -> bool:
        """CACHE_TTL_HOURS=0 turns the cache off: no key, no lookup, nothing stored."""
        return self._ttl > timedelta(0)

    async def run(
        self,
        stage: Stage,
        job: ClaimedJob,
        key: str,
        call: Callable[[], Awaitable[StageResult[T]]],
        parse: Callable[[str], T],
    ) -> StageResult[T] | Cached[T]:
        """The stage's answer for ``job``: from a job of the same key running in this process
        (waited for), else from the database, else from ``call`` (the provider). A job that
        asked for fresh answers (``bypass_cache``) calls the provider alone, unshared."""
        if job.bypass_cache:
            return await call()
        owner = None if self._global else job.user_id
        slot = (stage, owner, key)
        while (flight := self._flights.get(slot)) is not None:
            await flight.done.wait()
            if flight.found:
                return self._hit(stage, Cached(flight.value, flight.job_id))
        flight = self._flights[slot] = _Flight(job.id)
        try:
            stored = await self._stored(stage, key, owner, parse)
            if stored is not None:
                flight.value, flight.job_id, flight.found = stored.value, stored.job_id, True
                return self._hit(stage, stored)
            result = await call()
            flight.value, flight.found = result.value, True
            return result
        finally:
            del self._flights[slot]
            flight.done.set()

    async def _stored(
        self, stage: Stage, key: str, owner: int | None, parse: Callable[[str], T]
    ) -> Cached[T] | None:
        since = datetime.now(UTC) - self._ttl
        found = await self._lookup(stage, key, since, owner)
        if found is None:
            return None
        try:
            return Cached(parse(found.answer), found.job_id)
        except Exception:  # an answer this version cannot read: ask the provider instead
            return None

    @staticmethod
    def _hit(stage: Stage, cached: Cached[T]) -> Cached[T]:
        metrics.CACHE_HITS.inc((stage.value,))
        return cached
