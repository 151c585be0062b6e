"""Retry policy: exponential backoff with jitter, honouring the provider's Retry-After."""

from __future__ import annotations

import random

MAX_DELAY_SECONDS = 600.0


def retry_delay(
    failures: int, base_ms: int, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before attempt ``failures + 1``.

    ``base * 2^(failures-1)``, jittered down by up to half so that jobs failing together (a
    provider outage) do not retry together; never earlier than the provider asked.
    """
    exponent = max(failures - 1, 0)
    delay = min(base_ms / 1000.0 * 2.0**exponent, MAX_DELAY_SECONDS)
    jitter = rng.random() if rng is not None else random.random()
    delay *= 1.0 - 0.5 * jitter
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_DELAY_SECONDS))
    return delay
