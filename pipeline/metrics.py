"""The process's Prometheus metrics (prometheus-client's default registry: each process
reports its own numbers, and Prometheus sums the processes it scrapes).

Counters and histograms move in memory only: nothing here reads the database or takes a lock
per request or per job. What lives in the database (the queue's depth, the oldest waiting
job) and what a process holds right now (in-flight jobs, live-progress subscribers) is read
when ``/metrics`` is scraped, by `render`."""

from __future__ import annotations

import itertools
import time
from bisect import bisect_left
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

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
_FAST_LE = tuple("+Inf" if b == float("inf") else repr(float(b)) for b in _FAST)  # "le" labels

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


class HttpRecorder(Collector):
    """HTTP requests by procedure and status, and their duration: plain integers and floats
    bumped on the event loop (no label lookup, no lock: under a microsecond a request), turned
    into Prometheus metrics when /metrics is scraped. One per process (`HTTP`)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        # Per procedure: how many requests fell in each of _FAST's buckets, then their sum.
        self._times: dict[str, list[float]] = {}

    def record(self, procedure: str, status: int, seconds: float) -> None:
        key = (procedure, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        times = self._times.get(procedure)
        if times is None:
            times = self._times[procedure] = [0.0] * (len(_FAST) + 1)
        times[bisect_left(_FAST, seconds)] += 1
        times[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            PREFIX + "http_requests", "HTTP requests by tRPC procedure (or route) and status.",
            labels=["procedure", "status"],
        )  # fmt: skip
        for (procedure, status), count in sorted(self._counts.items()):
            requests.add_metric([procedure, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            PREFIX + "http_request_duration_seconds",
            "HTTP request time by tRPC procedure (or route).", labels=["procedure"],
        )  # fmt: skip
        for procedure, times in sorted(self._times.items()):
            cumulative = list(itertools.accumulate(times[:-1]))
            buckets = list(zip(_FAST_LE, cumulative, strict=True))
            durations.add_metric([procedure], buckets, sum_value=times[-1])
        yield durations


HTTP = HttpRecorder()
REGISTRY.register(HTTP)


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
