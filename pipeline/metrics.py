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
    Gauge,
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

Key = tuple[str, ...]  # a sample's label values, in the metric's label order


class LoopCounter:
    """A counter moved on the event loop only: a dict add (prometheus-client's ``Counter``
    takes a lock per ``inc`` and a lock and a lookup per ``labels``: with the finished-job
    line, ~15% of a PostgreSQL worker's py-spy samples, bench/RESULTS.md §14), turned into
    a metric family at a scrape."""

    def __init__(self, name: str, doc: str, labels: Key = ()) -> None:
        self.name, self.doc, self.labels = PREFIX + name, doc, labels
        self.values: dict[Key, float] = {} if labels else {(): 0.0}

    def inc(self, key: Key = (), amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=list(self.labels))
        for key, value in sorted(self.values.items()):
            family.add_metric(list(key), value)
        return family


class LoopHistogram:
    """A histogram moved on the event loop only: per label values, a count per bucket and
    the sum (no lock, one ``bisect``), made cumulative at a scrape."""

    def __init__(self, name: str, doc: str, labels: Key, buckets: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.buckets = PREFIX + name, doc, labels, buckets
        self.le = tuple("+Inf" if b == float("inf") else repr(float(b)) for b in buckets)
        self.values: dict[Key, list[float]] = {}  # bucket counts, then the sum

    def observe(self, key: Key, value: float) -> None:
        counts = self.values.get(key)
        if counts is None:
            counts = self.values[key] = [0.0] * (len(self.buckets) + 1)
        counts[bisect_left(self.buckets, value)] += 1
        counts[-1] += value

    def observe_all(self, key: Key, values: list[float]) -> None:
        """`observe` of each value, the key looked up once."""
        counts = self.values.get(key)
        if counts is None:
            counts = self.values[key] = [0.0] * (len(self.buckets) + 1)
        buckets = self.buckets
        for value in values:
            counts[bisect_left(buckets, value)] += 1
        counts[-1] += sum(values)

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        for key, counts in sorted(self.values.items()):
            cumulative = list(itertools.accumulate(counts[:-1]))
            family.add_metric(list(key), list(zip(self.le, cumulative, strict=True)),
                              sum_value=counts[-1])  # fmt: skip
        return family


JOBS_CREATED = LoopCounter("jobs_created", "Jobs created through this process's API.")
JOBS_COMPLETED = LoopCounter("jobs_completed", "Jobs this process's worker completed.", ("stage",))
JOBS_FAILED = LoopCounter(
    "jobs_failed", "Jobs this worker failed for good, by the stage that failed.", ("stage",)
)
JOBS_RETRIED = LoopCounter(
    "jobs_retried", "Attempts this worker ended with a retry, by stage.", ("stage",)
)
JOBS_CANCELLED = LoopCounter(
    "jobs_cancelled", "Jobs this worker stopped on an operator's cancel.", ("stage",)
)
STAGE_SECONDS = LoopHistogram(
    "stage_duration_seconds", "Time a stage took (image read and provider call).",
    ("stage", "result"), _SLOW,
)  # fmt: skip
PROVIDER_SECONDS = LoopHistogram(
    "provider_call_duration_seconds", "Latency of successful provider calls.",
    ("provider",), _SLOW,
)  # fmt: skip
TOKENS = LoopCounter(
    "provider_tokens", "Tokens of ended attempts' provider calls.", ("provider", "direction")
)
COST = LoopCounter("provider_cost_usd", "What ended attempts' calls cost (USD).", ("provider",))
CACHE_HITS = LoopCounter(
    "cache_hits", "Stage answers reused from the result cache, no provider call.", ("stage",)
)
HTTP_REQUESTS = LoopCounter(
    "http_requests", "HTTP requests by tRPC procedure (or route) and status.",
    ("procedure", "status"),
)  # fmt: skip
HTTP_SECONDS = LoopHistogram(
    "http_request_duration_seconds", "HTTP request time by tRPC procedure (or route).",
    ("procedure",), _FAST,
)  # fmt: skip
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


class LoopMetrics(Collector):
    """The loop-moved metrics, handed to prometheus-client's registry as one collector."""

    def __init__(self, *metrics: LoopCounter | LoopHistogram) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.collect()


REGISTRY.register(LoopMetrics(
    JOBS_CREATED, JOBS_COMPLETED, JOBS_FAILED, JOBS_RETRIED, JOBS_CANCELLED, STAGE_SECONDS,
    PROVIDER_SECONDS, TOKENS, COST, HTTP_REQUESTS, HTTP_SECONDS, CACHE_HITS,
))  # fmt: skip


def attempt_ended(outcome: str, stage: str) -> None:
    """Count an attempt's written end (a release at shutdown is not counted)."""
    counter = _OUTCOME_COUNTERS.get(outcome)
    if counter is not None:
        counter.inc((stage,))


def usage(provider: str, used: StageUsage, cost: float) -> None:
    """Tokens and cost of one stage's provider call."""
    if used.input_tokens:
        TOKENS.inc((provider, "input"), used.input_tokens)
    if used.output_tokens:
        TOKENS.inc((provider, "output"), used.output_tokens)
    if cost:
        COST.inc((provider,), cost)


def http_requests(procedure: str, status: int, durations: list[float]) -> None:
    """HTTP requests of one procedure (or route) and status (``rpc.observe``, a batch at a
    time): counted, and each duration observed."""
    HTTP_REQUESTS.inc((procedure, str(status)), len(durations))
    HTTP_SECONDS.observe_all((procedure,), durations)


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
        STAGE_SECONDS.observe((self.stage, result), time.perf_counter() - self.started)


def provider_call(provider: str, latency_ms: float) -> None:
    PROVIDER_SECONDS.observe((provider,), latency_ms / 1000)
