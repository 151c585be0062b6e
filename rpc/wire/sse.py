"""Server-sent events: tRPC's framing (TRPC_WIRE §7.2–§7.4), a plain framing for curl, and the
runner that turns a subscription's async iterator into a response body.

The runner promises, for either framing:
- the opening event first (tRPC: ``connected``, §7.3), then one event per value, in order;
- a keep-alive ``ping`` after ``ping_ms`` without an event (§7.3 table), never while values
  flow, so idle streams cost one timer each;
- after the iterator finishes: tRPC's ``return`` (the client completes, §7.4);
- an error raised by the iterator (or before it, passed in): one error event, then the end;
- ``Closed`` from the iterator, ``max_duration_ms`` elapsed, or the server stopping: the
  stream ends *without* ``return``, so an EventSource reconnects with ``Last-Event-ID`` and
  the subscription resumes after its last tracked id (§7.4);
- a client that goes away cancels the iterator (its ``finally`` blocks run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import anyio
from starlette.responses import StreamingResponse

from rpc.config import Settings
from rpc.wire import superjson
from rpc.wire.encoding import dumps, to_plain
from rpc.wire.errors import TRPCError, internal_error

log = logging.getLogger("rpc.sse")


@dataclass(frozen=True, slots=True)
class Tracked:
    """tRPC's ``tracked(id, data)``: the event carries ``id:`` and the client remembers it."""

    id: str
    data: Any


class _Ready:
    """The type of ``READY``."""

    def __repr__(self) -> str:
        return "READY"


READY: Final = _Ready()  # a subscription's first value once it listens (see ``run``)
Emitted = Tracked | _Ready  # what this project's subscriptions yield


class Closed(Exception):
    """Raised by a subscription's iterator (the server stops): end the stream without
    ``return`` (§7.4), so the client reconnects, and resumes, elsewhere."""


# §7.2 (S11 stream/sse.ts sseHeaders)
SSE_HEADERS = {
    "cache-control": "no-cache, no-transform",
    "connection": "keep-alive",
    "content-type": "text/event-stream",
    "vary": "trpc-accept, accept",
    "x-accel-buffering": "no",
}


def frame(*, event: str | None = None, data: str | None = None, id: str | None = None,
          retry: int | None = None) -> bytes:  # fmt: skip
    """One event in tRPC's exact bytes (§7.3): ``event:``, ``data:``, ``id:`` lines as present,
    then ``\\n\\n`` (so two blank lines follow each event)."""
    out = ""
    if event is not None:
        out += f"event: {event}\n"
    if data is not None:
        out += f"data: {data}\n"
    if id is not None:
        out += f"id: {id}\n"
    if retry:
        out += f"retry: {retry}\n"
    return (out + "\n\n").encode("utf-8")


class TRPCFraming:
    """httpSubscriptionLink's event stream (§7.3); values in superjson when ``sj``."""

    def __init__(self, *, sj: bool, path: str, last_event_id: str | None,
                 settings: Settings) -> None:  # fmt: skip
        self.sj = sj
        self.path = path
        self.settings = settings
        # S11 sse.ts: an id with these characters cannot be sent back in an `id:` field.
        bad = last_event_id is None or any(c in last_event_id for c in "\0\r\n")
        self.last_id = None if bad else last_event_id

    def _json(self, value: Any) -> str:
        payload = superjson.serialize(value) if self.sj else to_plain(value)
        return dumps(payload).decode("utf-8")

    def opening(self) -> bytes:
        inactivity = self.settings.sse_reconnect_after_inactivity_ms
        client = {"reconnectAfterInactivityMs": inactivity} if inactivity else {}
        # `connected` data is plain JSON of the client options, never transformed (§7.3).
        data = dumps(client).decode("utf-8")
        return frame(event="connected", data=data, retry=self.settings.sse_retry_ms)

    def message(self, value: Any) -> bytes:
        if isinstance(value, Tracked):
            self.last_id = value.id
            return frame(data=self._json(value.data), id=value.id)
        if self.last_id is None:
            return frame(data=self._json(value))
        # An untracked value after a tracked one: clear the id, then restore it with an event
        # clients ignore, so a reconnect still resumes from it (S11 sse.ts `restore-id`).
        return frame(data=self._json(value), id="") + frame(
            event="restore-id", data="", id=self.last_id
        )

    def ping(self) -> bytes:
        return frame(event="ping", data="")

    def done(self) -> bytes:
        return frame(event="return", data="")

    def error(self, exc: TRPCError) -> bytes:
        return frame(event="serialized-error", data=self._json(exc.shape(self.path)))


class PlainFraming:
    """For curl and plain EventSource clients: ``event: progress`` with plain JSON and ``id:``;
    ``: ping`` comments; ``event: end`` after the final state; ``event: error``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def opening(self) -> bytes:
        retry = self.settings.sse_retry_ms
        return (f"retry: {retry}\n\n" if retry else ": connected\n\n").encode()

    def message(self, value: Any) -> bytes:
        data = value.data if isinstance(value, Tracked) else value
        id_line = f"id: {value.id}\n" if isinstance(value, Tracked) else ""
        text = dumps(to_plain(data)).decode("utf-8")
        return f"event: progress\n{id_line}data: {text}\n\n".encode()

    def ping(self) -> bytes:
        return b": ping\n\n"

    def done(self) -> bytes:
        return b"event: end\ndata: {}\n\n"

    def error(self, exc: TRPCError) -> bytes:
        text = dumps({"message": exc.message, "code": exc.code}).decode("utf-8")
        return f"event: error\ndata: {text}\n\n".encode()


Framing = TRPCFraming | PlainFraming
_Item = tuple[Literal["value", "return", "end", "error"], Any]


async def run(source: AsyncIterator[Any] | TRPCError, framing: Framing,
              settings: Settings) -> AsyncIterator[bytes]:  # fmt: skip
    """The response body of one subscription (see the module's docstring). ``source`` is the
    subscription's iterator, or the error that stopped it before it began (§7.3: still a 200
    stream, ``connected`` then ``serialized-error``). A source whose first value is ``READY``
    gets its opening event only then, so ``connected`` means "subscribed": nothing that
    happens after the client sees it can be missed."""
    if isinstance(source, TRPCError):
        yield framing.opening()
        yield framing.error(source)
        return
    # The iterator runs in a task of its own, one value ahead at most, so that waiting for
    # the next value can be interrupted for a ping without disturbing the iterator.
    queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=1)
    producer = asyncio.ensure_future(_produce(source, queue))
    ping = settings.sse_ping_ms / 1000 or None
    limit = settings.sse_max_duration_ms / 1000 or None
    deadline = None if limit is None else anyio.current_time() + limit
    try:
        first: _Item | None = await queue.get()
        yield framing.opening()
        if first == ("value", READY):
            first = None
        while True:
            item, first = first, None
            if item is None:
                timeout = ping
                if deadline is not None:
                    left = max(deadline - anyio.current_time(), 0.0)
                    timeout = left if timeout is None else min(timeout, left)
                with anyio.move_on_after(timeout):
                    item = await queue.get()
            if item is None:
                if deadline is not None and anyio.current_time() >= deadline:
                    return  # §7.4: ended without `return`; the client resumes
                yield framing.ping()
                continue
            kind, value = item
            if kind == "value":
                yield framing.message(value)
            elif kind == "return":
                yield framing.done()
                return
            elif kind == "error":
                yield framing.error(value)
                return
            else:
                return
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer


async def _produce(source: AsyncIterator[Any], queue: asyncio.Queue[_Item]) -> None:
    try:
        async for value in source:
            await queue.put(("value", value))
        item: _Item = ("return", None)
    except Closed:
        item = ("end", None)
    except TRPCError as exc:
        item = ("error", exc)
    except Exception as exc:
        log.exception("a subscription failed")
        item = ("error", internal_error(exc))
    finally:
        aclose: Callable[[], Any] | None = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
    await queue.put(item)


def response(
    body: AsyncIterator[bytes], headers: Sequence[tuple[str, str]] = ()
) -> StreamingResponse:
    """A 200 ``text/event-stream`` response with tRPC's headers (§7.2) and any extra ones."""
    result = StreamingResponse(body, headers=SSE_HEADERS)
    for name, value in headers:
        result.headers.append(name, value)
    return result
