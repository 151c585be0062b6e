"""Calls made in the same event-loop tick share one batch call (and so one transaction).

Why: a queue's cost is per transaction, not per row. Sixteen jobs finishing together would
otherwise be sixteen ``BEGIN … COMMIT`` round trips; fifty ``createJob`` calls of one tRPC
batch, fifty. Here the first caller of a tick becomes the batch's leader: it yields once, so
every task that is already runnable can add its item, then it runs the whole batch with one
call and hands each caller its own result. Nobody waits for a timer: an idle caller's batch
has one item and leaves at once.

The leader finishes the batch even if it is cancelled meanwhile: the other callers' items
are in it, and every write the queue batches is fenced, so finishing it is always safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from storage.driver import DatabaseUnavailable

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
_Batch = list[tuple[ItemT, "asyncio.Future[ResultT] | None"]]


class Coalescer(Generic[ItemT, ResultT]):
    def __init__(
        self,
        run_batch: Callable[[list[ItemT]], Awaitable[Sequence[ResultT]]],
        *,
        max_batch: int = 64,
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._open: _Batch[ItemT, ResultT] | None = None
        self.batches = 0  # observable by tests: calls of run_batch

    async def submit(self, item: ItemT) -> ResultT:
        batch = self._open
        if batch is not None and len(batch) < self._max_batch:
            future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
            batch.append((item, future))
            return await future
        batch = [(item, None)]
        self._open = batch
        with anyio.CancelScope(shield=True):
            try:
                await anyio.lowlevel.checkpoint()  # the runnable tasks add their items now
            finally:
                if self._open is batch:
                    self._open = None
            result = await self._settle(batch)
        return result

    async def _settle(self, batch: _Batch[ItemT, ResultT]) -> ResultT:
        items = [item for item, _ in batch]
        try:
            results = list(await self._call(items))
        except Exception as exc:
            if len(items) == 1 or isinstance(exc, DatabaseUnavailable):
                for _, future in batch[1:]:
                    _fail(future, exc)
                raise
            # One bad item must fail only its own caller: run each alone.
            return await self._one_by_one(batch)
        for (_, future), result in zip(batch[1:], results[1:], strict=True):
            if future is not None and not future.done():
                future.set_result(result)
        return results[0]

    async def _one_by_one(self, batch: _Batch[ItemT, ResultT]) -> ResultT:
        first: ResultT | None = None
        error: Exception | None = None
        for index, (item, future) in enumerate(batch):
            try:
                (result,) = await self._call([item])
            except Exception as exc:
                if index == 0:
                    error = exc
                else:
                    _fail(future, exc)
                continue
            if index == 0:
                first = result
            elif future is not None and not future.done():
                future.set_result(result)
        if error is not None:
            raise error
        return first  # type: ignore[return-value]  # set: index 0 did not fail

    async def _call(self, items: list[ItemT]) -> Sequence[ResultT]:
        self.batches += 1
        results = await self._run_batch(items)
        if len(results) != len(items):
            raise RuntimeError(f"a batch of {len(items)} gave {len(results)} results")
        return results


def _fail(future: asyncio.Future[ResultT] | None, exc: BaseException) -> None:
    if future is not None and not future.done():
        future.set_exception(exc)
