"""Per-provider request-rate limits: the worker waits its turn instead of collecting 429s.

What this module promises:

- ``RateLimiter(per_minute)`` lets at most ``per_minute`` calls start in any 60-second window
  (a sliding-window log of start times). That is the strictest reading of a provider's
  "requests per minute" quota, so it holds whether the provider counts per calendar minute
  or over a rolling one. A fractional rate (0.5) means one call per 120 s.
- Waiters are served in arrival order (``anyio.Lock`` is fair). A waiter that is cancelled
  (the stage deadline fired) takes nothing from the budget.
- ``RateLimitedVision`` / ``RateLimitedContent`` wrap a provider: await the limiter, then
  delegate. They keep the provider's ``name`` (cost accounting uses it) and its ``aclose``.

Limits are per process: with several worker processes sharing a provider key, set each
process's limit to the quota divided by the number of processes. The wait counts against
the stage's deadline (STAGE_TIMEOUT_SECONDS), so a limit far below WORKER_CONCURRENCY's
demand turns into stage timeouts, which are retried with backoff.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import anyio

from pipeline.analysis import GeneratedContent, VisionAnalysis
from pipeline.providers.base import (
    ContentProvider,
    ContentRequest,
    StageResult,
    VisionProvider,
    VisionRequest,
)

log = logging.getLogger("pipeline.ratelimit")


class RateLimiter:
    """At most ``per_minute`` acquisitions per ``window`` seconds (60 unless a test shrinks it)."""

    def __init__(
        self,
        per_minute: float,
        *,
        name: str = "provider",
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.name = name
        self.per_minute = per_minute
        self.capacity = max(1, int(per_minute))
        # 0.5 per minute: one call per 120 s; 90 per minute: 90 calls per 60 s.
        self.window = window * self.capacity / per_minute
        self._clock = clock
        self._starts: deque[float] = deque()
        self._lock = anyio.Lock()

    def delay(self) -> float:
        """Seconds until another call may start (0: now)."""
        now = self._clock()
        while self._starts and self._starts[0] <= now - self.window:
            self._starts.popleft()
        if len(self._starts) < self.capacity:
            return 0.0
        return self._starts[0] + self.window - now

    async def acquire(self) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            while (wait := self.delay()) > 0:
                if waited == 0.0:
                    log.info("%s: %g requests per minute reached; waiting %.1f s",
                             self.name, self.per_minute, wait)  # fmt: skip
                await anyio.sleep(wait)
                waited += wait
            self._starts.append(self._clock())
        return waited


class _Wrapper:
    def __init__(self, inner: object, limiter: RateLimiter) -> None:
        self.inner = inner
        self.limiter = limiter
        self.name: str = getattr(inner, "name", "provider")

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


class RateLimitedVision(_Wrapper):
    """A vision provider whose calls go through a ``RateLimiter``."""

    def __init__(self, inner: VisionProvider, limiter: RateLimiter) -> None:
        super().__init__(inner, limiter)
        self._vision = inner

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]:
        await self.limiter.acquire()
        return await self._vision.analyze(request)


class RateLimitedContent(_Wrapper):
    """A content provider whose calls go through a ``RateLimiter``."""

    def __init__(self, inner: ContentProvider, limiter: RateLimiter) -> None:
        super().__init__(inner, limiter)
        self._content = inner

    async def generate(self, request: ContentRequest) -> StageResult[GeneratedContent]:
        await self.limiter.acquire()
        return await self._content.generate(request)


def limit_vision(provider: VisionProvider, per_minute: float) -> VisionProvider:
    """``provider`` behind a limiter of ``per_minute`` calls, or as is when it is 0."""
    if per_minute <= 0:
        return provider
    return RateLimitedVision(provider, RateLimiter(per_minute, name=provider.name))


def limit_content(provider: ContentProvider, per_minute: float) -> ContentProvider:
    """``provider`` behind a limiter of ``per_minute`` calls, or as is when it is 0."""
    if per_minute <= 0:
        return provider
    return RateLimitedContent(provider, RateLimiter(per_minute, name=provider.name))
