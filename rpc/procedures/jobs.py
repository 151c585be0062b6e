"""The ``visionPipeline`` procedures (SEED_API §2): create a job, read its status, list them,
the worker's status. Their answers' wire forms are ``rpc.procedures.job_payloads``'s."""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.to_thread

from pipeline import metrics
from pipeline.errors import ImageError
from pipeline.images import check_url_offline
from pipeline.stored_images import inline_image
from rpc.config import Settings
from rpc.context import Context
from rpc.procedures import budgets, idempotency, quotas
from rpc.procedures.job_inputs import CreateJobInput, HistoryInput, JobIdInput
from rpc.procedures.job_payloads import encoded_history, encoded_status
from rpc.wire.errors import TRPCError
from rpc.wire.superjson import Encoded
from storage.images import image_sha, is_image_path
from storage.jobstate import JobStatus
from storage.records import JobStatusRecord, NewImage, NewJob

CREATED_MESSAGE = "Job created and queued for processing"
IMAGE_NOT_FOUND = "Image not found"


# A data: URL up to this long is checked and hashed on the event loop: tens of microseconds,
# less than the thread hop it would otherwise take (measured: bench/RESULTS.md §12).
INLINE_ON_LOOP_CHARS = 64 * 1024


async def _inline_image(url: str, settings: Settings) -> NewImage:
    """A createJob's data: URL decoded, checked from its header and hashed (a large one in a
    thread: a 10 MiB image is milliseconds of CPU); what the worker would refuse is
    BAD_REQUEST with the worker's message."""
    check = partial(
        inline_image, url, max_bytes=settings.image_max_bytes, max_pixels=settings.image_max_pixels
    )
    try:
        if len(url) <= INLINE_ON_LOOP_CHARS:
            return check()
        return await anyio.to_thread.run_sync(check)
    except ImageError as exc:
        raise TRPCError("BAD_REQUEST", exc.message) from None


def _check_url_now(url: str, settings: Settings) -> None:
    """An http(s) URL the worker would refuse without asking DNS (scheme, port, a private
    address written out, a malformed host) is BAD_REQUEST now, with the worker's message,
    rather than a job that fails seconds later."""
    try:
        check_url_offline(
            url,
            allow_private=settings.image_fetch_allow_private,
            allowed_ports=settings.image_ports(),
        )
    except ImageError as exc:
        raise TRPCError("BAD_REQUEST", exc.message) from None


async def _create(
    ctx: Context, job: NewJob, image: NewImage | None, key: str | None, fingerprint: str
) -> dict[str, Any] | int:
    """The job in the store: with its inline ``image``, the caller's stored image and the job
    referring to it, in one transaction; ``/api/images/<sha256>`` only if the caller has that
    image; any other URL through the batched insert. With a ``key``: in a transaction of its
    own, and the answer to a key the caller holds already instead of an id."""
    store = ctx.services.store
    sha = image_sha(job.image_url)
    if key is not None:
        keyed = await store.create_keyed_job(job, image or sha, key, fingerprint)
        if keyed is None:
            raise TRPCError("BAD_REQUEST", IMAGE_NOT_FOUND)
        return keyed.id if keyed.created else idempotency.answer(keyed, fingerprint)
    if image is not None:
        return await store.create_job_with_image(job, image)
    if sha is not None:
        job_id = await store.create_job_with_stored_image(job, sha)
        if job_id is None:  # theirs or nobody's: the same answer
            raise TRPCError("BAD_REQUEST", IMAGE_NOT_FOUND)
        return job_id
    return await store.create_job(job)


def owned_job(job: JobStatusRecord | None, user_id: int) -> JobStatusRecord:
    """getJobStatus's rules (also live progress's): NOT_FOUND, then FORBIDDEN if not theirs."""
    if job is None:
        raise TRPCError("NOT_FOUND", "Job not found")
    if job.user_id != user_id:
        raise TRPCError("FORBIDDEN", "You do not have access to this job")
    return job


async def create_job(ctx: Context, data: CreateJobInput) -> dict[str, Any]:
    """``visionPipeline.createJob``: the job (and its inline image) in the store, queued; with
    an idempotencyKey the caller holds, the job it names (or CONFLICT)."""
    settings = ctx.services.settings
    caller = await ctx.caller()
    assert caller is not None
    image = None
    if data.imageUrl[:5].lower() == "data:":  # checked before the quotas, as the input
        image = await _inline_image(data.imageUrl, settings)
    elif not is_image_path(data.imageUrl):
        _check_url_now(data.imageUrl, settings)
    key, fingerprint = data.idempotencyKey, ""
    if key is not None:  # a repeated call is answered before any quota or budget
        fingerprint = idempotency.fingerprint(data, image)
        held = await ctx.services.store.find_keyed_job(caller.user_id, key)
        if held is not None:
            return idempotency.answer(held, fingerprint)
    await budgets.check(ctx.services.store, settings, caller, ctx.services.budgets)  # 402
    # 429/503 when over a quota; one user's creations are admitted one at a time.
    async with quotas.admit(ctx.services.quotas, settings, ctx.services.store, caller.user_id):
        created = await _create(
            ctx,
            NewJob(
                user_id=caller.user_id,
                image_url=data.imageUrl,
                image_context=data.imageContext,
                analysis_purpose=data.analysisPurpose,
                output_format=data.outputFormat,
                creativity_level=data.creativityLevel,
                additional_instructions=data.additionalInstructions,
                max_retries=settings.max_retries,
                bypass_cache=not data.cache,
            ),
            image,
            key,
            fingerprint,
        )
    if isinstance(created, dict):  # a concurrent call with the key made the job
        return created
    metrics.JOBS_CREATED.inc()
    return {"jobId": created, "status": JobStatus.PENDING.value, "message": CREATED_MESSAGE}


async def get_job_status(ctx: Context, data: JobIdInput) -> Any:
    """``visionPipeline.getJobStatus``: the caller's job (see `encoded_status`)."""
    caller = await ctx.caller()
    assert caller is not None
    job = owned_job(await ctx.services.store.get_job_status(data.jobId), caller.user_id)
    return encoded_status(job)


async def get_worker_status(ctx: Context, _: None) -> dict[str, Any]:
    """The design document's getWorkerStatus (admins only), plus the queue's counts."""
    worker = ctx.services.worker
    status: dict[str, Any] = (
        worker.status()
        if worker is not None
        else {"isRunning": False, "concurrency": 0, "jobsInFlight": 0}
    )
    settings = ctx.services.settings
    status.setdefault("pollIntervalMs", settings.poll_interval_ms)
    status.setdefault("maxRetries", settings.max_retries)
    status.setdefault("lastHeartbeat", None)
    status["queue"] = await ctx.services.store.count_by_status()
    return status


async def get_job_history(ctx: Context, data: HistoryInput) -> Encoded:
    """``visionPipeline.getJobHistory``: a page of the caller's jobs, newest first."""
    caller = await ctx.caller()
    assert caller is not None
    jobs = await ctx.services.store.list_user_jobs(caller.user_id, data.limit, data.offset)
    return encoded_history(jobs)


_TOKENS = ("geminiInputTokens", "geminiOutputTokens", "deepseekInputTokens", "deepseekOutputTokens")


async def get_job_usage(ctx: Context, data: JobIdInput) -> dict[str, Any]:
    """``visionPipeline.getJobUsage``: what the caller's job used over all its attempts (the
    sums of its ``visionJobSessions`` rows), for the page's result; getJobStatus's rules."""
    caller = await ctx.caller()
    assert caller is not None
    detail = await ctx.services.store.job_detail(data.jobId)
    if detail is None:
        raise TRPCError("NOT_FOUND", "Job not found")
    if detail.job["userId"] != caller.user_id:
        raise TRPCError("FORBIDDEN", "You do not have access to this job")
    usage: dict[str, Any] = {
        name: sum(int(a[name] or 0) for a in detail.attempts) for name in _TOKENS
    }
    usage["attempts"] = len(detail.attempts)
    # The job each stage's answer was reused from (the result cache), None when it was not.
    usage["visionCachedFrom"] = _cached_from(detail.attempts, "geminiCachedFrom")
    usage["contentCachedFrom"] = _cached_from(detail.attempts, "deepseekCachedFrom")
    usage["costUsd"] = round(float(detail.job["costUsd"] or 0), 6)
    return usage


def _cached_from(attempts: list[dict[str, Any]], column: str) -> int | None:
    """The job the last attempt that reached a stage took its cached answer from."""
    found = [a[column] for a in attempts if a.get(column) is not None]
    return int(found[-1]) if found else None
