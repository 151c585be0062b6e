"""Limits on ``uploadImage`` (settings in ``rpc.config``; 0 turns a limit off).

What this module promises:

- UPLOADS_PER_MINUTE_PER_USER (60): a user's uploads in the last 60 s, every attempt counted
  (a refused file costs Pillow's check too), before the body is read. Over it:
  ``TOO_MANY_REQUESTS`` (429) "Too many uploads: at most 60 per minute. Try again in 12 s.",
  with ``Retry-After``.
- MAX_STORED_IMAGES_MB_PER_USER (500): the bytes of a user's stored images (the images of
  their jobs included) may not pass this with a new image; one they already have always
  passes. Over it: ``TOO_MANY_REQUESTS`` saying how much they hold; nothing is stored.
- ``admitted`` holds a user's uploads one at a time while they are stored, so two uploads of
  the same user cannot both pass a total read before either was written.

Design: the per-minute window is counted in this process's memory (an upload writes no row
when the user already has the image, so the database cannot count them); with several API
processes a user may make that many uploads per minute at each. The stored-bytes check runs in
the database, in the storing transaction (``JobStore.keep_upload``); across processes on
PostgreSQL two uploads at the same instant can both pass, overshooting by one image each.
State hangs off ``rpc.context.Services.uploads``: no module-level mutable state.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from rpc.procedures.quotas import UserLock, holding
from rpc.wire.errors import TRPCError

WINDOW_SECONDS = 60.0
MB = 1 << 20
# Past this many users in the window's table, users with no upload left in it are dropped.
_SWEEP_AT = 1024


@dataclass
class UploadQuotas:
    """The app's upload-limit state: each user's recent uploads (monotonic times) and the
    per-user locks of ``admitted``."""

    recent: dict[int, deque[float]] = field(default_factory=dict)
    users: dict[int, UserLock] = field(default_factory=dict)

    def count(self, user_id: int, per_minute: int, now: float | None = None) -> None:
        """Count one upload of ``user_id``, or raise TOO_MANY_REQUESTS (not counted) when they
        made ``per_minute`` in the last minute already."""
        if not per_minute:
            return
        now = time.monotonic() if now is None else now
        times = self.recent.get(user_id)
        if times is None:
            if len(self.recent) >= _SWEEP_AT:
                self._sweep(now)
            times = self.recent[user_id] = deque()
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        if len(times) >= per_minute:
            wait = min(max(math.ceil(times[0] + WINDOW_SECONDS - now), 1), int(WINDOW_SECONDS))
            raise TRPCError(
                "TOO_MANY_REQUESTS",
                f"Too many uploads: at most {per_minute} per minute. Try again in {wait} s.",
                headers={"retry-after": str(wait)},
            )
        times.append(now)

    def _sweep(self, now: float) -> None:
        idle = [u for u, t in self.recent.items() if not t or t[-1] <= now - WINDOW_SECONDS]
        for user_id in idle:
            del self.recent[user_id]

    @asynccontextmanager
    async def admitted(self, user_id: int) -> AsyncIterator[None]:
        """The body runs while no other upload of ``user_id`` (in this process) is stored."""
        async with holding(self.users, user_id):
            yield


def too_much_stored(limit_mb: float, stored_bytes: int) -> TRPCError:
    """The refusal of an image that would take a user's stored images past ``limit_mb``
    (MB as the other *_MB settings count them: 2**20 bytes)."""
    return TRPCError(
        "TOO_MANY_REQUESTS",
        f"Too many stored images: at most {limit_mb:g} MB per user, and yours take "
        f"{stored_bytes / MB:.1f} MB already.",
        headers={"retry-after": "3600"},
    )
