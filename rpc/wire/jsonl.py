"""httpBatchStreamLink's response (TRPC_WIRE §6): a batch answered as JSON Lines, each result
written the moment its call finishes.

The scheme is real tRPC's (§6.2, S11 ``stream/jsonl.ts``): the head line gives every batch
index a promise placeholder (``{"<i>":[[0],[null,0,<i>]]}``); when call ``i`` settles, an error
is one line ``[i,0,[[{"error":shape}]]]`` and a result three, as tRPC nests it
(``{result: Promise<{data: Promise<value>}>}``)::

    [i,0,[[{"result":0}],["result",0,r]]]
    [r,0,[[{"data":0}],["data",0,d]]]
    [d,0,[[value]]]            ([[]] for undefined)

Chunk ids count up from the batch size in the order they are handed out. Under superjson every
line is serialized on its own (meta paths relative to the line). Status is always 200 and the
headers go out with the head, so a procedure's late headers or cookies are lost (§6.3).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

from starlette.responses import StreamingResponse

from rpc.wire import superjson
from rpc.wire.encoding import dumps, to_plain
from rpc.wire.errors import TRPCError

Outcome = tuple[Any, TRPCError | None]


def wants_jsonl(trpc_accept: str | None, accept: str | None) -> bool:
    """S11 ``http/contentType.ts`` getAcceptHeader: ``trpc-accept`` decides when present, else
    any ``accept`` entry equal to ``application/jsonl`` (§6.1)."""
    if trpc_accept is not None:
        return trpc_accept.strip() == "application/jsonl"
    return any(t.strip() == "application/jsonl" for t in (accept or "").split(","))


def _line(value: Any, sj: bool) -> bytes:
    return dumps(superjson.serialize(value) if sj else to_plain(value)) + b"\n"


async def lines(calls: Sequence[asyncio.Future[Outcome]], paths: Sequence[str],
                sj: bool) -> AsyncIterator[bytes]:  # fmt: skip
    """The body: the head, then each call's lines in completion order."""
    yield _line({str(i): [[0], [None, 0, i]] for i in range(len(calls))}, sj)
    index = {call: i for i, call in enumerate(calls)}
    counter = len(calls)
    pending: set[asyncio.Future[Outcome]] = set(calls)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        # Several may finish together: keep batch order among them.
        for call in sorted(done, key=index.__getitem__):
            i = index[call]
            value, error = call.result()
            if error is not None:
                yield _line([i, 0, [[{"error": error.shape(paths[i])}]]], sj)
                continue
            r, d = counter, counter + 1
            counter += 2
            out = _line([i, 0, [[{"result": 0}], ["result", 0, r]]], sj)
            out += _line([r, 0, [[{"data": 0}], ["data", 0, d]]], sj)
            out += _line([d, 0, [[]] if value is superjson.UNDEFINED else [[value]]], sj)
            yield out


def response(
    outcomes: Sequence[Awaitable[Outcome]], paths: Sequence[str], sj: bool,
    headers: Sequence[tuple[str, str]], running: set[asyncio.Future[Any]],
) -> StreamingResponse:  # fmt: skip
    """Start every call now (as tRPC does, before the head is written) and stream them.
    Calls keep running when the client leaves mid-stream (a mutation half-answered is still
    done): their tasks are kept in ``running`` (the app's) until they finish."""
    calls = [asyncio.ensure_future(o) for o in outcomes]
    for call in calls:
        running.add(call)
        call.add_done_callback(running.discard)
    result = StreamingResponse(
        lines(calls, paths, sj), media_type=None,
        headers={"content-type": "application/json", "vary": "trpc-accept, accept"},
    )  # fmt: skip
    for name, value in headers:
        result.headers.append(name, value)
    return result
