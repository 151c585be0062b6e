"""Live progress: ``visionPipeline.onJobProgress`` and ``visionPipeline.onMyJobs`` (tRPC
subscriptions over SSE, TRPC_WIRE §7) and the plain ``GET /api/jobs/{id}/events`` stream.

Every event is tracked (§7.3 ``id:``) with the id of its ``visionJobEvents`` row, the change
counter the triggers write; its data has getJobStatus's shape, with the event's own status,
progress and errorMessage (the other fields as read when the event was delivered; outputs and
``completedAt`` only once the event's state has them). While the content stage streams its
answer, its events also carry ``partialContent`` (the text so far) and ``partialPieces`` (the
content pieces parsed from it so far); no other event has these fields. Resuming after an id (the
``Last-Event-ID`` header or ``input.lastEventId``) replays the later events from the table and
then goes live, so a reconnecting client misses and repeats nothing.

- ``onJobProgress {jobId, lastEventId?}``: getJobStatus's auth and ownership rules (errors as
  ``serialized-error``); without ``lastEventId`` the current state first (tracked with the
  job's latest event id); then every change; ``return`` after a final state (complete, error).
- ``onMyJobs {lastEventId?}``: every change of any of the caller's jobs, from now on (or after
  ``lastEventId``); it never ends by itself. Its ids are the global change counter, so on
  PostgreSQL, where two jobs' events may commit out of id order, it can skip a change that
  commits after a later one of another job was sent (``rpc.procedures.live``); onJobProgress cannot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.streaming import partial_pieces
from rpc.context import Context, Services
from rpc.procedures.job_payloads import status_payload
from rpc.procedures.jobs import owned_job
from rpc.procedures.live import Hub, read_all_after
from rpc.wire import sse
from rpc.wire.errors import UNAUTHED_ERR_MSG, TRPCError
from storage.changes import EventsOf, JobEvent
from storage.jobstate import FINAL, JobStatus
from storage.records import JobStatusRecord

_INT64 = 2**63 - 1
EventId = str | int | None


class JobProgressInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    jobId: int = Field(ge=-_INT64, le=_INT64)
    lastEventId: EventId = None


class MyJobsInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lastEventId: EventId = None


def parse_event_id(value: EventId) -> int | None:
    """A resume position: a tracked id we sent (a non-negative integer, as text or number)."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    # Ids are BIGINT: a larger one (19 digits may be) would fail in the database's hands.
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > _INT64:
        raise TRPCError("BAD_REQUEST", "lastEventId must be an event id sent by this server")
    return int(text)


def event_payload(job: JobStatusRecord, event: JobEvent) -> dict[str, Any]:
    """getJobStatus's shape for one event: the event's status, progress and message."""
    payload = status_payload(job)
    payload.update(status=event.status, progress=event.progress, errorMessage=event.error_message)
    if event.status != JobStatus.COMPLETE:
        payload["deepseekOutput"] = None
    if event.status not in FINAL:
        payload["completedAt"] = None
    if event.partial_content is not None:
        # The content stage's answer so far (issue 17); absent otherwise, so the payloads
        # of every other event stay as they were.
        payload["partialContent"] = event.partial_content
        payload["partialPieces"] = partial_pieces(event.partial_content)
    return payload


# Statuses a job can have before its analysis exists (and, after a retry or a failure of the
# content stage, after it too); from `deepseek_generating` on, the analysis is there.
_MAYBE_BEFORE_ANALYSIS = frozenset((JobStatus.PENDING, JobStatus.ANALYZING, JobStatus.ERROR))


async def _render(hub: Hub, event: JobEvent) -> sse.Tracked:
    job = await hub.job_status(event.job_id, event.id)
    if job is None:
        raise TRPCError("NOT_FOUND", "Job not found")
    payload = event_payload(job, event)
    # The row is read after the event, perhaps much later (a replay): an event shows the
    # analysis only from the event that produced it on.
    if (
        payload["geminOutput"] is not None
        and event.status in _MAYBE_BEFORE_ANALYSIS
        and not await hub.feed.analysed_before(event.job_id, event.id)
    ):
        payload["geminOutput"] = None
    return sse.Tracked(str(event.id), payload)


async def _seen_final(hub: Hub, job_id: int, after: int) -> bool:
    """A resume after ``after`` of a job now final, with no later event: whether the client
    has seen the final state. It has, unless the job's events are gone (retention prunes a
    finished job's events all at once, ``pipeline.retention``): then the row is all there is,
    sent tracked "0", and a resume from "0" with no events has seen it."""
    if after == 0:
        return True
    return bool(await hub.feed.read_after(EventsOf.JOB, job_id, 0, 1))


async def job_progress(hub: Hub, job_id: int, user_id: int, after: int | None
                       ) -> AsyncIterator[sse.Emitted]:  # fmt: skip
    """onJobProgress's events (see the module's docstring)."""
    with hub.listen(job_id=job_id) as listener:  # before any read: nothing falls in between
        yield sse.READY
        job = owned_job(await hub.store.get_job_status(job_id), user_id)
        if after is None:
            history = await read_all_after(hub.feed, EventsOf.JOB, job_id, 0)
            if history:
                latest = history[-1]
                yield await _render(hub, latest)  # the row as read after its latest event
                if latest.status in FINAL:
                    return
                after = latest.id
            else:  # a job older than the events table: its row is all there is
                yield sse.Tracked("0", status_payload(job))
                if job.status in FINAL:
                    return
                after = 0
        else:
            replay = await read_all_after(hub.feed, EventsOf.JOB, job_id, after)
            if not replay and job.status in FINAL:
                if not await _seen_final(hub, job_id, after):
                    yield sse.Tracked("0", status_payload(job))  # its events were pruned
                return
            for event in replay:
                yield await _render(hub, event)
                after = event.id
            if replay and replay[-1].status in FINAL:
                return
        async for batch in hub.events(listener, EventsOf.JOB, job_id, after):
            for event in batch:
                yield await _render(hub, event)
            if batch[-1].status in FINAL:
                return


async def my_jobs(hub: Hub, user_id: int, after: int | None) -> AsyncIterator[sse.Emitted]:
    """onMyJobs's events: the caller's job changes after ``after``, or from now on."""
    with hub.listen(user_id=user_id) as listener:
        # Read with the registration, before any await: later events all reach the listener.
        start = hub.feed.last_id if after is None else after
        yield sse.READY
        async for batch in hub.events(
            listener, EventsOf.USER, user_id, start, replay=after is not None
        ):
            for event in batch:
                yield await _render(hub, event)


async def on_job_progress(ctx: Context, data: JobProgressInput) -> AsyncIterator[sse.Emitted]:
    """``visionPipeline.onJobProgress`` (see the module's docstring)."""
    caller = await ctx.caller()
    assert caller is not None
    after = parse_event_id(data.lastEventId)
    return job_progress(ctx.services.live.hub(), data.jobId, caller.user_id, after)


async def on_my_jobs(ctx: Context, data: MyJobsInput) -> AsyncIterator[sse.Emitted]:
    """``visionPipeline.onMyJobs`` (see the module's docstring)."""
    caller = await ctx.caller()
    assert caller is not None
    hub = ctx.services.live.hub()
    return my_jobs(hub, caller.user_id, parse_event_id(data.lastEventId))


def _error(exc: TRPCError) -> JSONResponse:
    return JSONResponse({"error": {"message": exc.message, "code": exc.code}},
                        status_code=exc.http_status)  # fmt: skip


async def job_events(request: Request) -> Response:
    """``GET /api/jobs/{id}/events``: onJobProgress as plain SSE for curl and EventSource.

    Cookie or bearer session (local mode: the local user). Errors before the stream are plain
    JSON (400, 401, 403, 404); ``Last-Event-ID`` (or ``?lastEventId=``) resumes; a resume with
    nothing left to send (the job ended) is 204, which tells an EventSource to stop."""
    services: Services = request.app.state.services
    try:
        job_id = int(request.path_params["job_id"])
        if abs(job_id) > _INT64:
            raise TRPCError("NOT_FOUND", "Job not found")
        after = parse_event_id(
            request.headers.get("last-event-id") or request.query_params.get("lastEventId")
        )
        caller = await Context(services, request).caller()
        if caller is None:
            raise TRPCError("UNAUTHORIZED", UNAUTHED_ERR_MSG)
        hub = services.live.hub()
        job = owned_job(await services.store.get_job_status(job_id), caller.user_id)
    except ValueError:
        return _error(TRPCError("BAD_REQUEST", "The job id must be an integer"))
    except TRPCError as exc:
        return _error(exc)
    if request.method == "HEAD":
        return Response(headers=sse.SSE_HEADERS)
    if after is not None and job.status in FINAL:
        replay = await read_all_after(hub.feed, EventsOf.JOB, job_id, after)
        if not replay and await _seen_final(hub, job_id, after):
            return Response(status_code=204)
    settings = services.settings
    body = sse.run(job_progress(hub, job_id, caller.user_id, after), sse.PlainFraming(settings),
                   settings)  # fmt: skip
    return sse.response(body)
