"""The worker: claims jobs atomically, runs up to WORKER_CONCURRENCY at once, keeps their
leases alive, and ends every attempt with exactly one fenced write.

It wakes at once when a job is created in this process (``wake``); the poll interval is only
the fallback for jobs created elsewhere. Jobs waiting for a retry are slept on until the
earliest one is due, not polled for.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from pipeline.config import PipelineSettings
from pipeline.errors import StageError
from pipeline.policy import CANCELLED, SHUT_DOWN, lease_expired, verdict
from pipeline.presence import Presence
from pipeline.reporting import Reporter, Tally
from pipeline.retry import retry_delay
from pipeline.stages import Stages, outputs_of, parse_stored_analysis, pieces_json
from storage.driver import DatabaseUnavailable
from storage.jobstate import Outcome, Stage
from storage.records import AttemptRecord, ClaimedJob, Outputs, StageUsage
from storage.store import JobStore

log = logging.getLogger("pipeline.worker")
T = TypeVar("T")


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _Running:
    job: ClaimedJob
    scope: anyio.CancelScope


@dataclass
class WorkerState(Tally):
    running: bool = False
    last_heartbeat: datetime | None = None
    in_flight: dict[int, _Running] = field(default_factory=dict)


class Worker:
    def __init__(
        self,
        store: JobStore,
        stages: Stages,
        settings: PipelineSettings,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.stages = stages
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self.presence = Presence(store, self.worker_id, settings.worker_concurrency)
        self.state = WorkerState()
        self.report = Reporter(self.state, stages.vision.name, stages.content.name, settings)
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._wake = anyio.Event()
        self._stopping = False
        self._idle = anyio.Event()  # set when stopping and the last in-flight job ended
        self.stopped = anyio.Event()
        self._jobs: MemoryObjectSendStream[_Running] | None = None  # the slots' queue, running
        self._claiming = 0  # jobs the claim loop is asking for right now
        self._completing = 0  # completions being written right now
        self._refilling = 0  # jobs those completions are asking for
        store.on_job_created(self.wake)
        store.feed.on_pending(self.wake)  # a job became claimable in another process

    # -- control -----------------------------------------------------------------------------

    def wake(self) -> None:
        """Something changed (a job was created, a slot freed): look for work now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; ``run`` returns once in-flight jobs finished or were released."""
        self._stopping = True
        self._wake.set()

    def status(self) -> dict[str, Any]:
        """The design document's getWorkerStatus, with what a lease-based worker adds."""
        s = self.settings
        return {
            "workerId": self.worker_id,
            "isRunning": self.state.running,
            "concurrency": s.worker_concurrency,
            "jobsInFlight": len(self.state.in_flight),
            "pollIntervalMs": s.poll_interval_ms,
            "maxRetries": s.max_retries,
            "leaseSeconds": s.lease_seconds,
            "lastHeartbeat": self.state.last_heartbeat,
            "completed": self.state.completed,
            "failed": self.state.failed,
            "retried": self.state.retried,
        }

    # -- the loop ----------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.state.running = True
        self.presence.started()
        log.info("worker %s started (concurrency %d)", self.worker_id,
                 self.settings.worker_concurrency)  # fmt: skip
        try:
            # One long-lived task per slot, fed claimed jobs through a stream: spawning a task
            # per job cost a third of the worker's CPU with instant providers.
            send, receive = anyio.create_memory_object_stream[_Running](math.inf)
            async with anyio.create_task_group() as jobs, send, receive:
                # Twice the slots: jobs claimed by a completion start while the jobs it
                # completed are still returning from their last write.
                for _ in range(2 * self.settings.worker_concurrency):
                    jobs.start_soon(self._slot, receive)
                self._jobs = send
                async with anyio.create_task_group() as chores:
                    chores.start_soon(self._heartbeat_loop)
                    task_status.started()
                    await self._claim_loop()
                    await self._drain(jobs)
                    jobs.cancel_scope.cancel()
                    chores.cancel_scope.cancel()
        finally:
            self._jobs = None
            self.state.running = False
            with anyio.CancelScope(shield=True):
                await self.presence.gone()
                for provider in (self.stages.vision, self.stages.content):
                    close = getattr(provider, "aclose", None)
                    if close is not None:
                        await close()
            self.stopped.set()
            log.info("worker %s stopped", self.worker_id)

    async def _slot(self, jobs: MemoryObjectReceiveStream[_Running]) -> None:
        async for running in jobs:
            await self._run_job(running)

    async def _claim_loop(self) -> None:
        s = self.settings
        failures = 0
        while not self._stopping:
            if self.state.in_flight:
                # Jobs whose writes committed together end in the same tick: let them all
                # free their slots, so one claim refills them instead of one claim each.
                await anyio.lowlevel.checkpoint()
            self._wake = anyio.Event()  # before claiming: a wake during the claim is not lost
            free = s.worker_concurrency - len(self.state.in_flight)
            timeout = s.poll_interval_ms / 1000
            if free > 0:
                self._claiming = free
                try:
                    claimed = await self.store.claim_jobs(self.worker_id, free, self._lease)
                    if len(claimed) < free:
                        timeout = await self._until_next_due(timeout)
                    failures = 0
                except Exception as exc:  # the database is away: back off, keep the loop
                    failures += 1
                    timeout = min(0.1 * 2**failures, 5.0)
                    log.warning("claim failed (%s); retrying in %.1f s", _describe(exc), timeout)
                    claimed = []
                finally:
                    self._claiming = 0
                self._start_all(claimed)
                if len(claimed) == free:
                    continue
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    def _start_all(self, claimed: Sequence[ClaimedJob]) -> None:
        for job in claimed:
            if self._jobs is None:  # not reachable: claims stop before the slots do
                log.warning("job %d claimed after the worker stopped; its lease runs out", job.id)
                continue
            running = _Running(job, anyio.CancelScope())
            self.state.in_flight[job.id] = running
            self._jobs.send_nowait(running)

    def _refill_wanted(self) -> int:
        """How many jobs a completion being written should claim (PostgreSQL claims them in
        the completing statement): the slots that neither a running job, nor the claim loop,
        nor another completion of the moment is filling (its own slot among them)."""
        if self._stopping or self._jobs is None:
            return 0
        busy = len(self.state.in_flight) - self._completing + self._claiming + self._refilling
        return max(0, self.settings.worker_concurrency - busy)

    async def _complete(
        self, job: ClaimedJob, pieces: str, outputs: Outputs, record: AttemptRecord
    ) -> bool:
        """The completion, with the next jobs claimed in the same statement where the store
        can (``JobStore.complete_and_claim``); those start as it returns."""
        self._completing += 1
        want = self._refill_wanted()
        self._refilling += want
        try:
            # Jobs claimed with it are ours once the statement ran: wait for them even if this
            # attempt is cancelled meanwhile (lease lost, shutdown), or they would sit out
            # their lease unrun and come back counted as failed.
            with anyio.CancelScope(shield=want > 0):
                done, claimed = await self.store.complete_and_claim(
                    job, pieces, outputs, record, claim=want, lease=self._lease
                )
        finally:
            self._completing -= 1
            self._refilling -= want
        self._start_all(claimed)
        return done

    async def _until_next_due(self, fallback: float) -> float:
        due = await self.store.next_run_after()
        if due is None:
            return fallback
        wait = (due - datetime.now(UTC)).total_seconds()
        return min(max(wait, 0.0), fallback)

    async def _drain(self, jobs: anyio.abc.TaskGroup) -> None:
        """Graceful stop: let in-flight jobs finish within the grace period, then release them."""
        if not self.state.in_flight:
            return
        log.info("waiting up to %.0f s for %d in-flight jobs",
                 self.settings.shutdown_grace_seconds, len(self.state.in_flight))  # fmt: skip
        with anyio.move_on_after(self.settings.shutdown_grace_seconds):
            await self._idle.wait()
        leftover = list(self.state.in_flight.values())
        for running in leftover:
            running.scope.cancel()
        with anyio.CancelScope(shield=True):
            for running in leftover:
                stage = _first_stage(running.job)
                await self._end(running.job, AttemptRecord(Outcome.RELEASED, stage, SHUT_DOWN))
        jobs.cancel_scope.cancel()

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        await self.presence.seen(len(self.state.in_flight))  # known from its start
        while True:
            await anyio.sleep(interval)
            await self.presence.seen(len(self.state.in_flight))
            try:
                # Judge only the attempts running before the renewal was sent: one claimed
                # meanwhile is not in its answer and must not be taken for lost.
                running_now = list(self.state.in_flight.values())
                pairs = [(r.job.id, r.job.attempt) for r in running_now]
                held = await self.store.renew_leases(self.worker_id, pairs, self._lease)
                self.state.last_heartbeat = datetime.now(UTC)
                held_ids = {(h.id, h.attempt) for h in held}
                for running in running_now:
                    key = (running.job.id, running.job.attempt)
                    if key not in held_ids and self.state.in_flight.get(key[0]) is running:
                        # Another worker took it (our lease expired while we were cut off):
                        # stop working on it; every write we would make is fenced anyway.
                        running.scope.cancel()
                        log.warning("job %d: lease lost, abandoning the attempt", key[0])
                reaped = await self.store.reap_expired(lease_expired)
                for job in reaped:
                    outcome = "failed for good" if job.final else "back in the queue"
                    log.warning("job %d: lease of %s expired; %s", job.id, job.worker_id, outcome)
                if reaped:
                    self.wake()
            except Exception as exc:
                log.warning("heartbeat failed (%s)", _describe(exc))

    # -- one job -----------------------------------------------------------------------------

    async def _run_job(self, running: _Running) -> None:
        try:
            with running.scope:
                await self._process(running.job)
        finally:
            # Only our own entry: the same job may already run again here as a new attempt.
            if self.state.in_flight.get(running.job.id) is running:
                del self.state.in_flight[running.job.id]
            if self._stopping and not self.state.in_flight:
                self._idle.set()
            self.wake()

    async def _process(self, job: ClaimedJob) -> None:
        vision = StageUsage()
        content_usage = StageUsage()
        stage = _first_stage(job)
        try:
            if job.gemin_output is None:
                analysis, vision = await self.stages.analyze(job)
                output = analysis.model_dump_json()
                cancel = await self._durably(
                    job, lambda: self.store.store_vision_output(job, output, vision.cache_key)
                )
                if cancel is None:
                    return  # the lease is gone: someone else runs this job now
                if cancel:
                    await self._end(job, AttemptRecord(
                        Outcome.CANCELLED, stage, CANCELLED, vision,
                        cost_usd=self.report.cost(vision, content_usage)))  # fmt: skip
                    return
            else:
                analysis = parse_stored_analysis(job.gemin_output)
            stage = Stage.CONTENT
            content, content_usage = await self.stages.write(job, analysis)
            pieces = pieces_json(content)
            cost = self.report.cost(vision, content_usage)
            record = AttemptRecord(Outcome.COMPLETE, stage, None, vision, content_usage, cost)
            outputs = outputs_of(analysis, pieces)
            if await self._durably(job, lambda: self._complete(job, pieces, outputs, record)):
                self.report.written(job, record)
            else:
                # Not completed while we hold the lease means a cancel was requested; if the
                # lease is gone instead, this fenced write changes nothing.
                cancelled = AttemptRecord(Outcome.CANCELLED, stage, CANCELLED, vision,
                                          content_usage, cost)  # fmt: skip
                await self._end(job, cancelled)
        except StageError as exc:
            await self._failed(job, stage, exc, vision, content_usage)
        except Exception as exc:  # a bug or an unexpected library error: retry, loudly
            log.exception("job %d: unexpected error in %s", job.id, stage)
            error = StageError(f"internal error: {_describe(exc)}")
            error.retryable = True
            await self._failed(job, stage, error, vision, content_usage)

    async def _failed(
        self, job: ClaimedJob, stage: Stage, exc: StageError, vision: StageUsage,
        content: StageUsage,
    ) -> None:  # fmt: skip
        failures = job.retry_count + 1
        decided = verdict(stage, exc.message, failures, job.max_retries, retryable=exc.retryable)
        cost = self.report.cost(vision, content)
        if decided.retry:
            delay = retry_delay(failures, self.settings.retry_delay_ms,
                                getattr(exc, "retry_after", None))  # fmt: skip
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            log.info("job %d: %s (next attempt in %.2f s)", job.id, decided.message, delay)
            record = AttemptRecord(Outcome.RETRY, stage, decided.message, vision, content, cost)
            await self._end(job, record, retry_at=retry_at)
            return
        # The job's one "finished" line is pipeline.reporting's, message included.
        record = AttemptRecord(Outcome.ERROR, stage, decided.message, vision, content, cost)
        await self._end(job, record)

    async def _end(
        self, job: ClaimedJob, record: AttemptRecord, retry_at: datetime | None = None
    ) -> bool:
        """The attempt's last write (False: the lease was lost, or the database stayed away)."""
        try:
            written = await self._durably(
                job, lambda: self.store.end_attempt(job, record, retry_at=retry_at)
            )
        except DatabaseUnavailable:
            # Still unwritten: the lease runs out and the reaper returns the job to the queue.
            return False
        if written:
            self.report.written(job, record)
        return written

    async def _durably(self, job: ClaimedJob, write: Callable[[], Awaitable[T]]) -> T:
        """A fenced write of finished work, retried while the database is unavailable, for
        about one lease: the work is kept if the database comes back in time; if not, the
        lease has run out and the job runs again elsewhere (the fence refuses this write)."""
        delay = 0.05
        deadline = anyio.current_time() + self.settings.lease_seconds
        while True:
            try:
                return await write()
            except DatabaseUnavailable as exc:
                if anyio.current_time() + delay > deadline:
                    raise
                log.warning("job %d: database unavailable (%s); retrying the write in %.2f s",
                            job.id, _describe(exc), delay)  # fmt: skip
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _first_stage(job: ClaimedJob) -> Stage:
    """The stage an attempt starts at: content when the vision output is stored already."""
    return Stage.VISION if job.gemin_output is None else Stage.CONTENT


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
