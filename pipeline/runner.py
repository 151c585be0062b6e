"""Run a worker-only process: the event loop, the worker beside its change feed, signals.

``vision-pipeline worker`` and ``bench.instant_worker`` share this, so the benchmark measures
the process the product ships. (``vision-pipeline serve`` runs its worker inside the API's
lifespan instead, on uvicorn's loop.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import importlib
import logging
import platform
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple, Unpack

import anyio

from pipeline.retention import Housekeeping
from pipeline.worker import Worker
from storage.store import JobStore

log = logging.getLogger("pipeline.runner")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# How often a worker process hands freed heap memory back to the OS (see ``malloc_trim``).
TRIM_INTERVAL_SECONDS = 60.0


def uvloop_available() -> bool:
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return False
    return True


def run(func: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
    """``anyio.run`` on uvloop when it imports, else on the plain asyncio loop.

    uvloop (installed with ``uvicorn[standard]``, which ``serve`` already runs on) cut the
    worker's CPU per job by about a third in bench/RESULTS.md §6 Miss A: the asyncio loop's
    socket writes and thread wake-ups were a large share of the worker's profile. It is an
    optional speed-up, never a requirement, hence the fallback."""
    options = {"use_uvloop": True} if uvloop_available() else {}
    return anyio.run(func, *args, backend="asyncio", backend_options=options)


@functools.cache
def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` as a callable, or None where there is none (macOS, musl,
    Windows): then trimming is simply not done."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return functools.partial(trim, 0)


async def trim_memory_periodically(interval: float = TRIM_INTERVAL_SECONDS) -> None:
    """Every ``interval`` seconds, return the C heap's free memory to the OS; returns at once
    where there is no ``malloc_trim``.

    glibc keeps memory freed after a burst (the change feed reading 1,000-event pages when
    thousands of jobs land at once) in its arenas, so a long-running worker's RSS ratchets up
    (+18-22% over 100,000 jobs on PostgreSQL, bench/RESULTS.md §6 Miss C) though nothing is
    live; one trim brought it below its early level. The call takes microseconds when there is
    nothing to give back and ~12 ms right after freeing 200 MB of small objects (measured
    here): once a minute that is cheaper than a hop to a thread, so it runs on the loop."""
    trim = malloc_trim()
    if trim is None:
        return
    while True:
        await anyio.sleep(interval)
        trim()


def freeze_startup_objects() -> None:
    """Move every object alive after start-up (modules, classes, the SQL text, the settings)
    out of the garbage collector's sight: ``gc.freeze()``.

    The collector's older generations are scanned over and over while jobs run, and what the
    imports leave behind (SQLAlchemy, Alembic, prometheus-client, pydantic) is most of what
    they hold; frozen, a scan sees only what jobs allocate. Kept as cheap, not as proven:
    its one measurement is within this machine's spread (bench/RESULTS.md §14)."""
    gc.collect()
    gc.freeze()


async def run_worker(
    store: JobStore, worker: Worker, *, trim_interval: float = TRIM_INTERVAL_SECONDS
) -> None:
    """Run ``worker`` with ``store``'s change feed and housekeeping (``pipeline.retention``)
    beside it until the worker stops (on SIGTERM or SIGINT it stops claiming and drains), then
    close ``store``'s driver."""
    try:
        # "uvloop" or "asyncio": which loop a deployment actually got (see ``run``).
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        log.info("worker process on the %s event loop", loop)
        freeze_startup_objects()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_stop_on_signals, worker)
            tasks.start_soon(trim_memory_periodically, trim_interval)
            tasks.start_soon(Housekeeping(store, worker.settings).run)  # retention
            await tasks.start(functools.partial(store.feed.run, events=False))  # no SSE here
            await worker.run()
            tasks.cancel_scope.cancel()
    finally:
        await store.driver.close()


async def _stop_on_signals(worker: Worker) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping", signal.Signals(signum).name)
            worker.stop()
            # Only the first signal drains. Leaving the receiver restores the default
            # handlers, so a second SIGTERM/SIGINT ends a drain that takes too long.
            return
