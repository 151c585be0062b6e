"""Typed rows the store hands to the layers above (they never see driver rows).

Fields are the columns of ``storage.tables`` in snake_case (``userId`` is ``user_id``), in the
order the statement that reads them returns them; tests/test_records.py checks both against
the tables and the statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from storage.jobstate import JobStatus, Outcome, Stage
from storage.timeutil import UtcTimestamp


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    open_id: str
    name: str | None
    email: str | None
    login_method: str | None
    role: str
    created_at: datetime
    updated_at: datetime
    last_signed_in: datetime
    daily_budget_usd: float | None = None  # None: USER_DAILY_BUDGET_USD; 0: none


@dataclass(frozen=True, slots=True)
class NewJob:
    user_id: int
    image_url: str
    image_context: str | None
    analysis_purpose: str
    output_format: str
    creativity_level: float
    additional_instructions: str | None
    max_retries: int
    bypass_cache: bool = False  # createJob's ``cache: false``: fresh answers, no lookup


@dataclass(frozen=True, slots=True)
class JobStatusRecord:
    id: int
    user_id: int
    status: str
    progress: int
    gemin_output: str | None
    deepseek_output: str | None
    error_message: str | None
    error_stage: str | None
    retry_count: int
    created_at: datetime
    completed_at: datetime | None
    cost_usd: float = 0.0


class JobSummary(NamedTuple):
    """One row of a history page. A NamedTuple, not a frozen dataclass like the others: it
    is as immutable and a third of the cost to build (a page builds up to 100), and its
    times stay text (`UtcTimestamp`) since they are only passed on."""

    id: int
    status: str
    progress: int
    image_url: str
    analysis_purpose: str
    created_at: UtcTimestamp
    completed_at: UtcTimestamp | None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds: ``attempt`` and ``worker_id`` fence every write it makes."""

    id: int
    user_id: int
    image_url: str
    image_context: str | None
    analysis_purpose: str
    output_format: str
    creativity_level: float
    additional_instructions: str | None
    stage: JobStatus  # the running status the claim set: ANALYZING, or GENERATING (resuming)
    gemin_output: str | None
    retry_count: int
    max_retries: int
    attempt: int
    worker_id: str
    locked_at: datetime
    bypass_cache: bool = False


@dataclass(frozen=True, slots=True)
class StageUsage:
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0
    # The result cache (pipeline.cache): the key a fresh answer is stored under (None: the
    # cache is off, or the answer came from it), or the job a cached answer came from.
    cache_key: str | None = None
    cached_from: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """How one attempt ended, for its ``visionJobSessions`` row."""

    outcome: Outcome
    stage_reached: Stage
    error_message: str | None = None
    vision: StageUsage = StageUsage()
    content: StageUsage = StageUsage()
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class Outputs:
    """The structured columns of ``visionJobOutputs`` (lists and objects as JSON text)."""

    colors_primary: str | None
    colors_secondary: str | None
    colors_description: str | None
    mood: str | None
    tone: str | None
    composition_layout: str | None
    brand_personality: str | None
    perceived_industry: str | None
    target_audience: str | None
    content_pieces: str


@dataclass(frozen=True, slots=True)
class HeldLease:
    id: int
    attempt: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class ReapedJob:
    id: int
    attempt: int
    worker_id: str | None
    final: bool


@dataclass(frozen=True, slots=True)
class NewImage:
    """An image for the store (``visionImages``), checked and hashed by its sender."""

    sha256: str  # hex, lowercase: the store's key with the user's id
    mime_type: str
    width: int | None
    height: int | None
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredImage:
    """An image of the store; ``data`` is None when it was read without its bytes."""

    user_id: int
    sha256: str
    mime_type: str
    byte_size: int
    width: int | None
    height: int | None
    data: bytes | None


@dataclass(frozen=True, slots=True)
class ConvertedJob:
    """A job whose inline data: URL the conversion replaced: by its stored image's path
    (``image_stored``, ``new_image`` when the user had no such image yet) or, when its base64
    did not decode, by ``storage.images.INVALID_IMAGE_URL``."""

    job_id: int
    image_stored: bool
    new_image: bool
