"""The process's Prometheus metrics (prometheus-client's default registry: each process
reports its own numbers, and Prometheus sums the processes it scrapes).

Counters and histograms move in memory only: nothing here reads the database or takes a lock
per request or per job. What lives in the database (the queue's depth, the oldest waiting
job) and what a process holds right now (in-flight jobs, live-progress subscribers) is read
when ``/metrics`` is scraped, by `render`."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from storage.records import StageUsage

if TYPE_CHECKING:
    from storage.store import JobStore

# No "<name>_created" timestamp series beside each counter: they double the output and
# Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped in the library)
PREFIX = "vision_"
# Stage and provider calls take seconds; HTTP requests milliseconds.
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, float("inf"))
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, float("inf"))

JOBS_CREATED = Counter(PREFIX + "jobs_created", "Jobs created through this process's API.")
JOBS_COMPLETED = Counter(
    PREFIX + "jobs_completed", "Jobs this process's worker completed.", ["stage"]
)
JOBS_FAILED = Counter(
    PREFIX + "jobs_failed", "Jobs this worker failed for good, by the stage that failed.",
    ["stage"],
)  # fmt: skip
JOBS_RETRIED = Counter(
    PREFIX + "jobs_retried", "Attempts this worker ended with a retry, by stage.", ["stage"]
)
JOBS_CANCELLED = Counter(
    PREFIX + "jobs_cancelled", "Jobs this worker stopped on an operator's cancel.", ["stage"]
)
STAGE_SECONDS = Histogram(
    PREFIX + "stage_duration_seconds", "Time a stage took (image read and provider call).",
    ["stage", "result"], buckets=_SLOW,
)  # fmt: skip
PROVIDER_SECONDS = Histogram(
    PREFIX + "provider_call_duration_seconds", "Latency of successful provider calls.",
    ["provider"], buckets=_SLOW,
)  # fmt: skip
TOKENS = Counter(
    PREFIX + "provider_tokens", "Tokens of ended attempts' provider calls.",
    ["provider", "direction"],
)  # fmt: skip
COST = Counter(PREFIX + "provider_cost_usd", "What ended attempts' calls cost (USD).", ["provider"])
IN_FLIGHT = Gauge(PREFIX + "jobs_in_flight", "Jobs this process's worker is running.")
SUBSCRIBERS = Gauge(PREFIX + "live_subscribers", "Open live-progress streams in this process.")
QUEUE_DEPTH = Gauge(
    PREFIX + "queue_jobs", "Unfinished jobs in the database by status (read at scrape time).",
    ["status"],
)  # fmt: skip
OLDEST_WAITING = Gauge(
    PREFIX + "queue_oldest_waiting_seconds",
    "Age of the oldest pending job (0: none waits; read at scrape time).",
)
HTTP_REQUESTS = Counter(
    PREFIX + "http_requests", "HTTP requests by tRPC procedure (or route) and status.",
    ["procedure", "status"],
)  # fmt: skip
HTTP_SECONDS = Histogram(
    PREFIX + "http_request_duration_seconds", "HTTP request time by tRPC procedure (or route).",
    ["procedure"], buckets=_FAST,
)  # fmt: skip

_OUTCOME_COUNTERS = {
    "complete": JOBS_COMPLETED, "error": JOBS_FAILED, "retry": JOBS_RETRIED,
    "cancelled": JOBS_CANCELLED,
}  # fmt: skip


def attempt_ended(outcome: str, stage: str) -> None:
    """Count an attempt's written end (a release at shutdown is not counted)."""
    counter = _OUTCOME_COUNTERS.get(outcome)
    if counter is not None:
        counter.labels(stage).inc()


def usage(provider: str, used: StageUsage, cost: float) -> None:
    """Tokens and cost of one stage's provider call."""
    if used.input_tokens:
        TOKENS.labels(provider, "input").inc(used.input_tokens)
    if used.output_tokens:
        TOKENS.labels(provider, "output").inc(used.output_tokens)
    if cost:
        COST.labels(provider).inc(cost)


class HttpRecorder:
    """HTTP metrics with the label children cached: a request costs a dict lookup, an
    increment and an observation (a few microseconds), never a label resolution."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], Callable[[], None]] = {}
        self._times: dict[str, Callable[[float], None]] = {}

    def record(self, procedure: str, status: int, seconds: float) -> None:
        inc = self._counts.get((procedure, status))
        if inc is None:
            inc = self._counts[(procedure, status)] = HTTP_REQUESTS.labels(procedure, status).inc
        inc()
        observe = self._times.get(procedure)
        if observe is None:
            observe = self._times[procedure] = HTTP_SECONDS.labels(procedure).observe
        observe(seconds)


async def refresh_queue(store: JobStore) -> None:
    """The queue's gauges from the database: one statement, run at a scrape of /metrics."""
    depth = await store.queue_depth()
    for status, count in depth.jobs.items():
        QUEUE_DEPTH.labels(status.value).set(count)
    oldest = depth.oldest_pending
    age = 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()
    OLDEST_WAITING.set(max(age, 0.0))


def render(in_flight: int, subscribers: int) -> tuple[bytes, str]:
    """The text of ``/metrics`` and its content type: every metric of the process, with what
    the process holds right now."""
    IN_FLIGHT.set(in_flight)
    SUBSCRIBERS.set(subscribers)
    return generate_latest(), CONTENT_TYPE_LATEST


class StageTimer:
    """``with StageTimer(stage):`` observes the stage's duration, labelled ok or error (a class,
    not a generator context manager: it runs twice per job)."""

    __slots__ = ("stage", "started")

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.started = 0.0

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        result = "ok" if kind is None else "error"
        STAGE_SECONDS.labels(self.stage, result).observe(time.perf_counter() - self.started)


def provider_call(provider: str, latency_ms: float) -> None:
    PROVIDER_SECONDS.labels(provider).observe(latency_ms / 1000)
