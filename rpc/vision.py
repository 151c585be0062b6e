"""The ``visionPipeline`` procedures (SEED_API §2): create a job, read its status, list them."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.errors import ImageError
from pipeline.stored_images import inline_image
from rpc import quotas
from rpc.config import Settings
from rpc.context import Context
from rpc.errors import TRPCError
from rpc.router import Router
from rpc.superjson import DATE, Encoded, RawJSON, iso, timestamp_iso
from storage.images import image_sha, is_image_path
from storage.records import JobStatusRecord, JobSummary, NewImage, NewJob

CREATED_MESSAGE = "Job created and queued for processing"
IMAGE_NOT_FOUND = "Image not found"


class CreateJobInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    imageUrl: str = Field(min_length=1)
    imageContext: str | None = Field(default=None, max_length=10_000)
    analysisPurpose: str = Field(min_length=1, max_length=10_000)
    outputFormat: Literal["bullet_points", "detailed_analysis", "social_media_post"]
    creativityLevel: float = Field(default=1.0, ge=0, le=2)
    additionalInstructions: str | None = Field(default=None, max_length=10_000)

    @field_validator("imageUrl")
    @classmethod
    def _image_url(cls, value: str) -> str:
        value = value.strip()
        if is_image_path(value):  # one of the caller's stored images: no URL rule applies
            if image_sha(value) is None:
                raise ValueError("Invalid image path: expected /api/images/<sha256, 64 hex>")
            return value
        if value[:5].lower() == "data:":
            header, comma, _ = value.partition(",")
            if not comma or not header[5:].lower().startswith("image/"):
                raise ValueError("Invalid data URL: expected data:image/<type>;base64,<data>")
            if not header.lower().endswith(";base64"):
                raise ValueError("Invalid data URL: the image must be base64-encoded")
            return value
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("Invalid URL: expected an http(s) URL or a data:image/… URL")
        if len(value) > 8192:
            raise ValueError("Invalid URL: longer than 8192 characters")
        return value


# Ids and offsets beyond a 64-bit integer cannot exist; refusing them here keeps them from
# reaching the driver (SQLite raises OverflowError on them).
_INT64 = 2**63 - 1


class JobIdInput(BaseModel):
    jobId: int = Field(ge=-_INT64, le=_INT64)


class HistoryInput(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=_INT64)


async def _inline_image(url: str, settings: Settings) -> NewImage:
    """A createJob's data: URL decoded, checked from its header and hashed (in a thread: a
    10 MiB image is milliseconds of CPU); what the worker would refuse is BAD_REQUEST with
    the worker's message."""
    try:
        return await anyio.to_thread.run_sync(partial(
            inline_image, url, max_bytes=settings.image_max_bytes,
            max_pixels=settings.image_max_pixels,
        ))  # fmt: skip
    except ImageError as exc:
        raise TRPCError("BAD_REQUEST", exc.message) from None


async def _create(ctx: Context, job: NewJob, image: NewImage | None) -> int:
    """The job in the store: with its inline ``image``, the caller's stored image and the job
    referring to it, in one transaction; ``/api/images/<sha256>`` only if the caller has that
    image; any other URL through the batched insert."""
    store = ctx.services.store
    if image is not None:
        return await store.create_job_with_image(job, image)
    sha = image_sha(job.image_url)
    if sha is not None:
        job_id = await store.create_job_with_stored_image(job, sha)
        if job_id is None:  # theirs or nobody's: the same answer
            raise TRPCError("BAD_REQUEST", IMAGE_NOT_FOUND)
        return job_id
    return await store.create_job(job)


def _parsed(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


class _Annotated(Exception):
    """A stored output holds a number that decoding and encoding again would not write back
    as it is: NaN, Infinity (1e999 too) and -0.0, which superjson annotates, and the integer
    -0, which Python reads as 0."""


def _refuse_constant(name: str) -> Any:
    raise _Annotated(name)


def _plain_float(text: str) -> float:
    value = float(text)
    if not _finite_unsigned(value):
        raise _Annotated(text)
    return value


def _plain_int(text: str) -> int:
    if text == "-0":
        raise _Annotated(text)
    return int(text)


_STRICT = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_plain_float, parse_int=_plain_int
)


def _output(text: str | None) -> Any:
    """A stored output (geminOutput, deepseekOutput) for the wire. The server wrote it as JSON
    text, so it goes out as that text (`RawJSON`): decoding, walking and encoding it again was
    about a third of getJobStatus's CPU. The client reads the same values; only the text's own
    whitespace and escapes may differ from a fresh encoding. It is still decoded once (C speed,
    the result dropped) to be sure it is strict JSON: text that is not JSON (a row written by
    hand or an older version) goes out as null, as before, and one holding a number that
    would not be written back as it is (`_Annotated`) as the decoded value, as before."""
    if text is None:
        return None
    try:
        _STRICT.decode(text)
    except _Annotated:
        return _parsed(text)
    except ValueError:
        return None
    return RawJSON(text)


def owned_job(job: JobStatusRecord | None, user_id: int) -> JobStatusRecord:
    """getJobStatus's rules (also live progress's): NOT_FOUND, then FORBIDDEN if not theirs."""
    if job is None:
        raise TRPCError("NOT_FOUND", "Job not found")
    if job.user_id != user_id:
        raise TRPCError("FORBIDDEN", "You do not have access to this job")
    return job


def status_payload(job: JobStatusRecord) -> dict[str, Any]:
    """What getJobStatus answers (SEED_API §2); live progress events carry the same shape."""
    return {
        "jobId": job.id,
        "status": job.status,
        "progress": job.progress,
        "geminOutput": _output(job.gemin_output),
        "deepseekOutput": _output(job.deepseek_output),
        "errorMessage": job.error_message,
        "createdAt": job.created_at,
        "completedAt": job.completed_at,
        # Extra fields (the frontend ignores what it does not know):
        "errorStage": job.error_stage,
        "retryCount": job.retry_count,
        "costUsd": round(job.cost_usd, 6),
    }


def _finite_unsigned(value: float) -> bool:
    """Not a float superjson annotates (NaN, Infinity, -0.0)."""
    return value - value == 0.0 and (value != 0.0 or math.copysign(1.0, value) > 0)


def encoded_status(job: JobStatusRecord) -> Any:
    """getJobStatus's answer with its superjson meta built directly (`Encoded`): its only
    Dates are createdAt and completedAt, so the output need not be walked. The payload itself
    (walked) in the rare case it holds something else superjson annotates: an output decoded
    for its NaN, a NaN or negative-zero cost."""
    payload = status_payload(job)
    if not (
        type(payload["geminOutput"]) in _RAW_OR_NONE
        and type(payload["deepseekOutput"]) in _RAW_OR_NONE
        and _finite_unsigned(payload["costUsd"])
    ):
        return payload
    payload["createdAt"] = iso(job.created_at)
    completed = job.completed_at
    if completed is None:
        return Encoded(payload, {"createdAt": DATE})
    payload["completedAt"] = iso(completed)
    return Encoded(payload, {"createdAt": DATE, "completedAt": DATE})


_RAW_OR_NONE = (RawJSON, type(None))
_PAGE_KEYS = [(f"{i}.createdAt", f"{i}.completedAt") for i in range(100)]  # HistoryInput.limit


def _full_tree(n: int) -> dict[str, Any]:
    return {key: DATE for i in range(n) for key in _PAGE_KEYS[i]}


# The meta of a page whose jobs are all finished, the common page, by its length: shared, as
# DATE is (a meta tree is only ever read and encoded).
_FULL_TREES = [_full_tree(n) for n in range(len(_PAGE_KEYS) + 1)]
# And as the JSON text `rpc.encoding.dumps` writes for them (Encoded.tree_json): encoding a
# 20-row page's 40 entries was two thirds of encoding the whole answer.
_FULL_TREES_JSON = [RawJSON(json.dumps(t, separators=(",", ":"))) for t in _FULL_TREES]
# The encoder's own writer of a str (C, the one `rpc.encoding.dumps` uses: ensure_ascii off).
_json_str = json.encoder.encode_basestring


def encoded_history(jobs: list[JobSummary]) -> Encoded:
    """getJobHistory's answer with its superjson meta built directly (`Encoded`): the Dates
    are each row's createdAt and completedAt, every other field a string or an integer. The
    walk of a 20-row page and its 40 Dates was half of the request's CPU.

    The rows go out as JSON text written here (`RawJSON`), the bytes the encoder writes for
    the same dicts: building 20 dicts for the stdlib encoder to take apart again was a fifth
    of the request. A page with a value of another type than its field's takes the dicts."""
    finished = True
    parts: list[str] = []
    try:
        for job_id, status, progress, image_url, purpose, created, completed in jobs:
            if type(job_id) is not int or type(progress) is not int:
                raise TypeError  # the f-string would write a bool or a float otherwise
            if completed is None:
                finished = False
                done = "null"
            else:
                done = '"' + completed.iso[:23] + 'Z"'  # superjson.timestamp_iso, inlined
            # An f-string: two thirds of the cost of %-formatting the same row.
            parts.append(
                f'{{"jobId":{job_id},"status":{_json_str(status)},"progress":{progress},'
                f'"imageUrl":{_json_str(image_url)},"analysisPurpose":{_json_str(purpose)},'
                f'"createdAt":"{created.iso[:23]}Z","completedAt":{done}}}'
            )
    except TypeError:  # not a str where one belongs (encode_basestring takes nothing else)
        return Encoded(_history_rows(jobs), _history_tree(jobs))
    rows = RawJSON("[" + ",".join(parts) + "]")
    if finished and 0 < len(jobs) < len(_FULL_TREES):
        return Encoded(rows, _FULL_TREES[len(jobs)], _FULL_TREES_JSON[len(jobs)])
    return Encoded(rows, _history_tree(jobs))


def _history_rows(jobs: list[JobSummary]) -> list[dict[str, Any]]:
    return [
        {
            "jobId": j.id,
            "status": j.status,
            "progress": j.progress,
            "imageUrl": j.image_url,
            "analysisPurpose": j.analysis_purpose,
            "createdAt": timestamp_iso(j.created_at),
            "completedAt": None if j.completed_at is None else timestamp_iso(j.completed_at),
        }
        for j in jobs
    ]


def _history_tree(jobs: list[JobSummary]) -> dict[str, Any] | None:
    tree: dict[str, Any] = {}
    for i, j in enumerate(jobs):
        created_key, completed_key = (
            _PAGE_KEYS[i] if i < len(_PAGE_KEYS) else (f"{i}.createdAt", f"{i}.completedAt")
        )
        tree[created_key] = DATE
        if j.completed_at is not None:
            tree[completed_key] = DATE
    return tree or None


def register(router: Router) -> None:
    @router.procedure("visionPipeline.createJob", "mutation", input=CreateJobInput, guard="user")
    async def create_job(ctx: Context, data: CreateJobInput) -> dict[str, Any]:
        settings = ctx.services.settings
        caller = await ctx.caller()
        assert caller is not None
        image = None
        if data.imageUrl[:5].lower() == "data:":  # checked before the quotas, as the input
            image = await _inline_image(data.imageUrl, settings)
        # 429/503 when over a quota; one user's creations are admitted one at a time.
        async with quotas.admit(settings, ctx.services.store, caller.user_id):
            job_id = await _create(
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
                ),
                image,
            )
        return {"jobId": job_id, "status": "pending", "message": CREATED_MESSAGE}

    @router.procedure("visionPipeline.getJobStatus", "query", input=JobIdInput, guard="user")
    async def get_job_status(ctx: Context, data: JobIdInput) -> Any:
        caller = await ctx.caller()
        assert caller is not None
        job = owned_job(await ctx.services.store.get_job_status(data.jobId), caller.user_id)
        return encoded_status(job)

    @router.procedure("visionPipeline.getWorkerStatus", "query", guard="admin")
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

    @router.procedure(
        "visionPipeline.getJobHistory", "query", input=HistoryInput, input_optional=True,
        guard="user",
    )  # fmt: skip
    async def get_job_history(ctx: Context, data: HistoryInput) -> Encoded:
        caller = await ctx.caller()
        assert caller is not None
        jobs = await ctx.services.store.list_user_jobs(caller.user_id, data.limit, data.offset)
        return encoded_history(jobs)
