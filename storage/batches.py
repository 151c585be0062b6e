"""Transaction bodies that write many jobs with one statement per kind of row.

The worker's stage boundaries and completions, and the API's ``createJob`` calls, arrive
many at a time under load (``storage.coalesce`` gathers those of one moment). Each body here
turns such a batch into a fixed number of statements whatever its size, with the rows passed
as one JSON parameter (``json_to_recordset`` / ``json_each`` in ``storage/sql/``): a batch of
40 completions is one UPDATE and two INSERTs, not 120 statements. Every row keeps its own
fence (id, attempt, worker), so a batch changes exactly what the same writes made one by one
would change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from storage.driver import Row, Statement, Work, execute, fetch_all
from storage.queries import QUERIES
from storage.records import AttemptRecord, ClaimedJob, NewJob, Outputs
from storage.timeutil import utcnow


@dataclass(frozen=True, slots=True)
class VisionOutput:
    """Stage boundary: the vision analysis of a running attempt (JSON text)."""

    job: ClaimedJob
    output_json: str
    cache_key: str | None = None  # the result cache's key of a fresh analysis


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of a successful attempt: content, outputs row, attempt row; and how many jobs
    to claim for its worker with it (PostgreSQL's ``complete_and_claim``), leased how long."""

    job: ClaimedJob
    content_json: str
    outputs: Outputs
    attempt: AttemptRecord
    claim: int = 0
    lease: timedelta = timedelta(0)


StageWrite = VisionOutput | Completion
# A stage write's result: for a vision output, None when the lease is lost, else whether a
# cancel was asked; for a completion, whether it completed; with the jobs claimed with it.
StageOutcome = tuple[bool | None, tuple[ClaimedJob, ...]]


def _rows(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, separators=(",", ":"))


def attempt_row(job: ClaimedJob, record: AttemptRecord) -> dict[str, Any]:
    v, c = record.vision, record.content
    return {
        "job": job.id, "attempt": job.attempt, "worker": job.worker_id,
        "stage": record.stage_reached, "outcome": record.outcome, "error": record.error_message,
        "vision_model": v.model, "vision_in": v.input_tokens, "vision_out": v.output_tokens,
        "vision_ms": v.latency_ms, "content_model": c.model, "content_in": c.input_tokens,
        "content_out": c.output_tokens, "content_ms": c.latency_ms, "cost": record.cost_usd,
        "vision_from": v.cached_from, "content_from": c.cached_from,
    }  # fmt: skip


def _output_fields(o: Outputs) -> dict[str, Any]:
    return {
        "colors_primary": o.colors_primary, "colors_secondary": o.colors_secondary,
        "colors_description": o.colors_description, "mood": o.mood, "tone": o.tone,
        "composition_layout": o.composition_layout, "brand_personality": o.brand_personality,
        "perceived_industry": o.perceived_industry, "target_audience": o.target_audience,
        "content_pieces": o.content_pieces,
    }  # fmt: skip


def store_vision_outputs(items: list[VisionOutput]) -> Statement:
    """The stage boundaries of a batch as one statement (see ``cancel_asked``)."""
    return fetch_all(QUERIES["store_vision_outputs"], utcnow(), _rows([
        {"id": i.job.id, "attempt": i.job.attempt, "worker": i.job.worker_id,
         "output": i.output_json, "key": i.cache_key}
        for i in items
    ]))  # fmt: skip


def cancel_asked(items: list[VisionOutput], rows: list[Row]) -> Iterator[bool | None]:
    """Per item: None when its lease is lost, else whether a cancel was requested."""
    held = {(r["id"], r["attempt"]): bool(r["cancelRequested"]) for r in rows}
    return (held.get((i.job.id, i.job.attempt)) for i in items)


def _completion_rows(items: list[Completion]) -> str:
    return _rows([
        {"id": i.job.id, "content": i.content_json, "content_key": i.attempt.content.cache_key,
         **_output_fields(i.outputs), **attempt_row(i.job, i.attempt)}
        for i in items
    ])  # fmt: skip


def complete_jobs(items: list[Completion]) -> Statement:
    """The completions of a batch as one statement (on PostgreSQL with their outputs and
    attempt rows; on SQLite those follow in ``stage_writes``)."""
    return fetch_all(QUERIES["complete_jobs"], utcnow(), _completion_rows(items))


def complete_and_claim(
    items: list[Completion], worker_id: str, lease: timedelta, limit: int, after_user: int
) -> Statement:
    """PostgreSQL: ``complete_jobs`` that also claims up to ``limit`` jobs for ``worker_id``,
    round-robin over users from after ``after_user`` on (claim_jobs's rotating start)."""
    now = utcnow()
    rows = _completion_rows(items)
    return fetch_all(
        QUERIES["complete_and_claim"], now, rows, worker_id, now + lease, limit, after_user
    )


def share_claims(
    items: list[Completion], done: set[tuple[int, int]], claimed: list[ClaimedJob]
) -> list[StageOutcome]:
    """Per completion, in order: whether it completed, and its share of the jobs claimed with
    the batch (as many as it asked for, while they last, oldest first)."""
    results: list[StageOutcome] = []
    start = 0
    for item in items:
        share = tuple(claimed[start : start + item.claim]) if item.claim > 0 else ()
        start += len(share)
        results.append(((item.job.id, item.job.attempt) in done, share))
    return results


def stage_writes(items: list[StageWrite], *, rows_apart: bool) -> Work[list[bool | None]]:
    """Write a batch of stage boundaries and completions in one transaction.

    Per item, in order: for a ``VisionOutput``, None when the lease is lost, else whether a
    cancel was requested; for a ``Completion``, whether the job completed (False: the lease
    is lost, or a cancel was requested and the caller records it). ``rows_apart``: the
    completed jobs' outputs and attempt rows take statements of their own (SQLite; on
    PostgreSQL ``complete_jobs`` writes them).
    """
    now = utcnow()
    visions = [i for i in items if isinstance(i, VisionOutput)]
    completions = [i for i in items if isinstance(i, Completion)]
    held: dict[tuple[int, int], bool] = {}
    completed: dict[tuple[int, int], int] = {}
    if visions:
        rows = yield store_vision_outputs(visions)
        held = {(r["id"], r["attempt"]): bool(r["cancelRequested"]) for r in rows}
    if completions:
        rows = yield complete_jobs(completions)
        completed = {(r["id"], r["attempt"]): r["userId"] for r in rows}
        done = [i for i in completions if (i.job.id, i.job.attempt) in completed]
        if done and rows_apart:
            outputs = [
                {"job": i.job.id, "owner": completed[(i.job.id, i.job.attempt)],
                 **_output_fields(i.outputs)}
                for i in done
            ]  # fmt: skip
            yield execute(QUERIES["insert_outputs"], now, _rows(outputs))
            attempts = [attempt_row(i.job, i.attempt) for i in done]
            yield execute(QUERIES["insert_attempts"], now, _rows(attempts))
    results: list[bool | None] = []
    for item in items:
        key = (item.job.id, item.job.attempt)
        if isinstance(item, VisionOutput):
            results.append(held.get(key))
        else:
            results.append(key in completed)
    return results


def insert_jobs(jobs: list[NewJob]) -> Statement:
    """A batch of pending jobs in one statement (their ids: ``job_ids``)."""
    rows = [
        {"owner": j.user_id, "url": j.image_url, "context": j.image_context,
         "purpose": j.analysis_purpose, "format": j.output_format,
         "creativity": float(j.creativity_level), "instructions": j.additional_instructions,
         "retries": j.max_retries, "bypass": j.bypass_cache}
        for j in jobs
    ]  # fmt: skip
    return fetch_all(QUERIES["insert_jobs"], utcnow(), _rows(rows))


def job_ids(jobs: list[NewJob], returned: list[Row]) -> list[int]:
    """The new jobs' ids in the order given: ids are drawn in row order."""
    ids = sorted(int(r["id"]) for r in returned)
    if len(ids) != len(jobs):
        raise RuntimeError(f"inserted {len(ids)} of {len(jobs)} jobs")
    return ids
