"""What can go wrong in a stage, classified by what the worker must do about it.

Modelled on httpx's shallow hierarchy: callers catch by meaning (retry later, fail now),
never by which SDK or library raised the error.
"""

from __future__ import annotations


class StageError(Exception):
    """A stage could not produce its result. The message is shown to the job's owner."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RetryableError(StageError):
    """A fault that may pass: rate limits, 5xx, timeouts, dropped connections, empty answers.

    ``retry_after`` (seconds) is the provider's own hint (``Retry-After``), when it gave one.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(StageError):
    """A fault that no retry can fix: a refused key, a blocked image, a bad request."""


class ImageError(FatalError):
    """The image could not be used: not fetchable for good, too large, or not an image."""
