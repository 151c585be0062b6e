"""Content streamed as it is written (issue 17): the content stage's answer so far.

A streaming provider tells the text so far to a ``TextSink`` (``ContentRequest.on_text``).
``PartialWriter`` is that sink for a running attempt: it writes the text to the job's row
(``JobStore.store_partial_content``, fenced), so it travels as an ordinary job event across
processes and hosts, resumable by event id. The first piece goes at once, later ones at most
every ``interval`` seconds, the newest text each time (pieces in between are folded into it).
No final write: the completion that follows replaces the text with the validated content and
clears it.

``partial_pieces`` reads the content pieces out of such a text, which is JSON cut anywhere
(jiter's partial mode, as PROVIDERS.md says).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import jiter
from anyio.abc import TaskGroup

log = logging.getLogger("pipeline.streaming")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_FENCE = re.compile(r"\A\s*```(?:json)?\s*|\s*```\s*\Z")


class PartialWriter:
    """The sink of one attempt's streamed text, as an async context manager that yields
    ``update``. ``write`` stores a text (it may fail: a partial text is a courtesy to the
    watcher, never a reason to fail the job, so a failed write is logged and the next one
    tried); ``clock``/``sleep`` are anyio's unless a test passes its own."""

    def __init__(
        self,
        write: Callable[[str], Awaitable[object]],
        interval: float,
        *,
        clock: Clock = anyio.current_time,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self._write = write
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._latest: str | None = None
        self._written: str | None = None
        self._last_write: float | None = None
        self._wake = anyio.Event()
        self._tasks: TaskGroup | None = None
        self.writes = 0  # texts written (observable by tests and the benchmark)

    def update(self, text: str) -> None:
        """The answer so far (the whole text); returns at once."""
        self._latest = text
        self._wake.set()

    async def __aenter__(self) -> Callable[[str], None]:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._run)
        return self.update

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()  # no final write: the attempt's end clears the text
        # Closed as if the body had ended well: the writer's task never raises (it logs its
        # failures) and is cancelled here, so the body's own exception, if any, propagates as
        # it is, not wrapped in an ExceptionGroup (the worker judges a StageError by its type).
        await self._tasks.__aexit__(None, None, None)
        return None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._last_write is not None:
                wait = self._last_write + self.interval - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            text = self._latest
            if text is None or text == self._written:
                continue
            self._last_write = self._clock()
            try:
                await self._write(text)
            except Exception as exc:
                log.warning("the answer so far was not written (%s)", exc)
                continue
            self._written = text
            self.writes += 1


def partial_pieces(text: str) -> list[dict[str, Any]]:
    """The content pieces a partial JSON answer holds so far, the last one possibly cut short
    (``{"content_pieces": [{"title": "Roo`` gives ``[{"title": "Roo"}]``); [] when none can
    be read yet."""
    body = _FENCE.sub("", text)
    if not body.strip():
        return []
    try:
        data = jiter.from_json(body.encode(), partial_mode="trailing-strings")
    except ValueError:
        return []
    pieces = data.get("content_pieces") if isinstance(data, dict) else None
    if not isinstance(pieces, list):
        return []
    return [p for p in pieces if isinstance(p, dict)]
