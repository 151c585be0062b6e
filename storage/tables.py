"""The tables, defined once with SQLModel (names and camelCase columns as in the design document).

SQLModel serves the cold paths (``db push``, admin commands, tests); the hot paths talk to the
driver with the plain SQL in ``storage.queries``. ``schema.sql`` is the same DDL written out,
and a test proves the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.jobstate import JobStatus

# Timestamps are stored in UTC: TIMESTAMPTZ on PostgreSQL; on SQLite, ISO-8601 text that
# sorts in time order, which is what the claim and lease comparisons rely on.
_TS = sa.DateTime(timezone=True)


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=_TS, nullable=nullable)


# The two kinds of imageUrl the image store cares about, as SQL conditions that the queries
# repeat word for word (a partial index serves a query only when it names its condition).
STORED_IMAGE_JOB = """substr("imageUrl", 1, 12) = '/api/images/'"""
INLINE_IMAGE_JOB = """lower(substr("imageUrl", 1, 5)) = 'data:'"""
FINISHED_JOB = "status IN ('complete', 'error')"
# Jobs created with an idempotencyKey still held (createJob, issue 17): the housekeeping
# clears keys older than 24 hours, so both indexes hold a day's keyed jobs at most.
KEYED_JOB = '"idempotencyKey" IS NOT NULL'
# The fair claim's waiting jobs on PostgreSQL (postgres.sql's claim statements say it word for
# word). Not `status = 'pending'`: idx_status can serve that, and once the statistics hold no
# waiting job (ANALYZE of a drained queue, the usual state) the planner prefers it, a scan of
# every waiting job per probe of the claim's walk over the users (bench/RESULTS.md §21). No
# other index can serve this wording, so the claim keeps to idx_fair whatever the statistics.
FAIR_WAITING_JOB = "(status = 'pending') IS TRUE"
# The result cache's keys, set by the stage that paid for an answer (issue 17): their indexes
# hold those jobs only, so the updates that leave a key NULL (a claim, a failure, a job run
# with the cache off) write no entry into them.
VISION_KEYED_JOB = '"visionCacheKey" IS NOT NULL'
CONTENT_KEYED_JOB = '"contentCacheKey" IS NOT NULL'


def _partial(name: str, *columns: str, where: str, unique: bool = False) -> sa.Index:
    """An index of the rows that meet ``where``, worded the same on both dialects (a partial
    index serves a query only when the query names its condition)."""
    condition = sa.text(where)
    return sa.Index(
        name, *columns, unique=unique, sqlite_where=condition, postgresql_where=condition
    )


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    openId: str = Field(sa_type=sa.String(64), unique=True, nullable=False)
    name: str | None = Field(default=None, sa_type=sa.Text)
    email: str | None = Field(default=None, sa_type=sa.String(320))
    loginMethod: str | None = Field(default=None, sa_type=sa.String(64))
    role: str = Field(default="user", sa_type=sa.String(16), nullable=False)
    createdAt: datetime = Field(sa_type=_TS, nullable=False)
    updatedAt: datetime = Field(sa_type=_TS, nullable=False)
    lastSignedIn: datetime = Field(sa_type=_TS, nullable=False)
    # The user's daily spending budget in USD (rpc.procedures.budgets): NULL follows
    # USER_DAILY_BUDGET_USD, 0 is none, more is theirs.
    dailyBudgetUsd: float | None = Field(default=None, sa_type=sa.Float)


class VisionJob(SQLModel, table=True):
    """One image through the pipeline; also the queue entry (status, lease, run-after)."""

    __tablename__ = "visionJobs"
    __table_args__ = (
        sa.Index("idx_status", "status"),
        sa.Index("idx_userId_status", "userId", "status"),
        sa.Index("idx_createdAt", "createdAt"),
        sa.Index("idx_userId_createdAt", "userId", "createdAt", "id"),
        # The claim reads only waiting jobs, oldest eligible first; a partial index keeps it
        # small however many finished jobs the table holds (PERF_NOTES: the plain status index
        # degrades as the table churns).
        _partial("idx_claim", "runAfter", "id", where="status = 'pending'"),
        # The fair claim (issue 17): the users with waiting jobs, one probe each, and each
        # user's waiting jobs in claim order. Partial like idx_claim; on PostgreSQL worded so
        # that only this index can serve the claim (see FAIR_WAITING_JOB).
        sa.Index(
            "idx_fair",
            "userId",
            "runAfter",
            "id",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text(FAIR_WAITING_JOB),
        ),
        # The reaper looks only at running jobs, by lease expiry.
        _partial(
            "idx_lease",
            "leaseExpiresAt",
            where="status IN ('gemini_analyzing', 'deepseek_generating')",
        ),
        # Jobs made from a stored image (storage.images): whether any job of the user still
        # uses an image, asked by the deletion trigger. Partial: an index of every imageUrl
        # would hold 8 KB URLs (over PostgreSQL's index row limit).
        _partial("idx_stored_image_jobs", "userId", "imageUrl", where=STORED_IMAGE_JOB),
        # Jobs still holding a whole data: URL (older versions stored them): what the
        # conversion at start-up looks for, an empty index once it has run.
        _partial("idx_inline_image_jobs", "id", where=INLINE_IMAGE_JOB),
        # Finished jobs by when they finished (a completion sets updatedAt = completedAt, and
        # nothing touches a finished job but a retry, which takes it out): the dashboard's
        # last hour, recent failures and spend per day read a range of it. Partial: one
        # entry per job, written by its final transition only.
        _partial("idx_finished", "updatedAt", where=FINISHED_JOB),
        # The result cache (pipeline.cache): a stage's answer by its key, newest first; a
        # lookup also names the user unless CACHE_SCOPE=global (a key is a SHA-256: a few
        # rows at most share one). Partial: a lookup's `key = $1` implies the condition.
        _partial("idx_visionCacheKey", "visionCacheKey", where=VISION_KEYED_JOB),
        _partial("idx_contentCacheKey", "contentCacheKey", where=CONTENT_KEYED_JOB),
        # createJob's idempotencyKey: one job per (user, key), also when two API processes
        # insert at once; partial, so the jobs without a key (and cleared ones) are not in it.
        _partial(
            "uq_jobs_userId_idempotencyKey",
            "userId",
            "idempotencyKey",
            where=KEYED_JOB,
            unique=True,
        ),
        # The housekeeping's clearing of keys older than 24 hours: a range of this one.
        _partial("idx_keyed_createdAt", "createdAt", where=KEYED_JOB),
        # A user's spend today (the budget): their jobs finished since midnight (the rest are
        # their unfinished jobs, idx_userId_status). Partial: written once per job, by its
        # final transition, rather than by each of the userId-scattered updates of its life.
        _partial("idx_userId_updatedAt", "userId", "updatedAt", where=FINISHED_JOB),
    )

    id: int | None = Field(default=None, primary_key=True)
    userId: int = Field(nullable=False)
    imageUrl: str = Field(sa_type=sa.Text, nullable=False)
    imageContext: str | None = Field(default=None, sa_type=sa.Text)
    analysisPurpose: str = Field(sa_type=sa.Text, nullable=False)
    outputFormat: str = Field(sa_type=sa.String(32), nullable=False)
    creativityLevel: float = Field(default=1.0, sa_type=sa.Float, nullable=False)
    additionalInstructions: str | None = Field(default=None, sa_type=sa.Text)
    status: str = Field(default=JobStatus.PENDING.value, sa_type=sa.String(32), nullable=False)
    progress: int = Field(default=0, nullable=False)
    geminOutput: str | None = Field(default=None, sa_type=sa.Text)
    deepseekOutput: str | None = Field(default=None, sa_type=sa.Text)
    geminAnalyzedAt: datetime | None = _ts()
    deepseekGeneratedAt: datetime | None = _ts()
    errorMessage: str | None = Field(default=None, sa_type=sa.Text)
    errorStage: str | None = Field(default=None, sa_type=sa.String(32))
    retryCount: int = Field(default=0, nullable=False)
    maxRetries: int = Field(default=3, nullable=False)
    createdAt: datetime = Field(sa_type=_TS, nullable=False)
    updatedAt: datetime = Field(sa_type=_TS, nullable=False)
    completedAt: datetime | None = _ts()
    # Queue columns (not in the design document): when the job may run next, which attempt
    # is current (the fencing token), who holds it and until when.
    runAfter: datetime = Field(sa_type=_TS, nullable=False)
    attempt: int = Field(default=0, nullable=False)
    lockedBy: str | None = Field(default=None, sa_type=sa.String(64))
    lockedAt: datetime | None = _ts()
    leaseExpiresAt: datetime | None = _ts()
    cancelRequested: bool = Field(default=False, nullable=False)
    # What every attempt so far cost (the sum of its visionJobSessions rows), kept on the job so
    # getJobStatus stays a single-row read.
    costUsd: float = Field(default=0.0, sa_type=sa.Float, nullable=False)
    # createJob's idempotencyKey (NULL: none, or cleared after 24 hours) and the SHA-256 of
    # the inputs it was given with (rpc.procedures.idempotency).
    idempotencyKey: str | None = Field(default=None, sa_type=sa.String(200))
    idempotencyFingerprint: str | None = Field(default=None, sa_type=sa.String(64))
    # The result cache (pipeline.cache): each stage's key (hex SHA-256), set when the stage's
    # provider answered this job (not when its answer came from the cache: a hit's source is
    # always the job that paid, and the TTL counts from that answer); createJob's
    # ``cache: false`` asks for fresh answers (bypassCache: no lookup).
    visionCacheKey: str | None = Field(default=None, sa_type=sa.String(64))
    contentCacheKey: str | None = Field(default=None, sa_type=sa.String(64))
    bypassCache: bool = Field(
        default=False, nullable=False, sa_column_kwargs={"server_default": sa.text("FALSE")}
    )
    # The content stage's answer so far while it streams (pipeline.streaming): written at a
    # bounded pace by the running attempt, copied into its events by the triggers, cleared
    # when the attempt ends. Never the job's output.
    partialContent: str | None = Field(default=None, sa_type=sa.Text)


class VisionJobOutput(SQLModel, table=True):
    """The structured result of a completed job, one row per job, kept as training data."""

    __tablename__ = "visionJobOutputs"
    __table_args__ = (sa.Index("idx_outputs_userId", "userId"),)

    id: int | None = Field(default=None, primary_key=True)
    jobId: int = Field(unique=True, nullable=False)
    userId: int = Field(nullable=False)
    colors_primary: str | None = Field(default=None, sa_type=sa.Text)
    colors_secondary: str | None = Field(default=None, sa_type=sa.Text)
    colors_description: str | None = Field(default=None, sa_type=sa.Text)
    mood: str | None = Field(default=None, sa_type=sa.Text)
    tone: str | None = Field(default=None, sa_type=sa.Text)
    composition_layout: str | None = Field(default=None, sa_type=sa.Text)
    brand_personality: str | None = Field(default=None, sa_type=sa.Text)
    perceived_industry: str | None = Field(default=None, sa_type=sa.Text)
    target_audience: str | None = Field(default=None, sa_type=sa.Text)
    content_pieces: str | None = Field(default=None, sa_type=sa.Text)
    isTrainingData: bool = Field(default=True, nullable=False)
    createdAt: datetime = Field(sa_type=_TS, nullable=False)


class VisionJobSession(SQLModel, table=True):
    """One processing attempt: the job's audit trail (who, how far, how it ended, what it cost)."""

    __tablename__ = "visionJobSessions"
    __table_args__ = (sa.Index("idx_sessions_jobId", "jobId", "attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    jobId: int = Field(nullable=False)
    attempt: int = Field(nullable=False)
    workerId: str | None = Field(default=None, sa_type=sa.String(64))
    stageReached: str | None = Field(default=None, sa_type=sa.String(32))
    outcome: str = Field(sa_type=sa.String(16), nullable=False)
    errorMessage: str | None = Field(default=None, sa_type=sa.Text)
    startedAt: datetime | None = _ts()
    endedAt: datetime = Field(sa_type=_TS, nullable=False)
    geminiModel: str | None = Field(default=None, sa_type=sa.String(64))
    geminiInputTokens: int = Field(default=0, nullable=False)
    geminiOutputTokens: int = Field(default=0, nullable=False)
    geminiLatencyMs: int = Field(default=0, nullable=False)
    deepseekModel: str | None = Field(default=None, sa_type=sa.String(64))
    deepseekInputTokens: int = Field(default=0, nullable=False)
    deepseekOutputTokens: int = Field(default=0, nullable=False)
    deepseekLatencyMs: int = Field(default=0, nullable=False)
    costUsd: float = Field(default=0.0, sa_type=sa.Float, nullable=False)
    # A stage answered from the result cache: the job whose answer it reused (no tokens,
    # no cost); NULL when the provider was called or the stage was not reached.
    geminiCachedFrom: int | None = Field(default=None)
    deepseekCachedFrom: int | None = Field(default=None)


class VisionJobEvent(SQLModel, table=True):
    """Every change of a job's status, progress, message or streamed text, in commit order.

    Written by database triggers (``storage.triggers``), so no writer can forget one: the
    worker, the API, the reaper and an operator's command all leave the same trail. The id is
    the change counter that live progress resumes from (a tracked SSE event id).
    """

    __tablename__ = "visionJobEvents"
    __table_args__ = (sa.Index("idx_events_jobId", "jobId", "id"),)

    id: int | None = Field(
        default=None, sa_type=sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    jobId: int = Field(nullable=False)
    userId: int = Field(nullable=False)
    status: str = Field(sa_type=sa.String(32), nullable=False)
    progress: int = Field(nullable=False)
    errorMessage: str | None = Field(default=None, sa_type=sa.Text)
    createdAt: datetime = Field(sa_type=_TS, nullable=False)
    # The job's partialContent at this change (a streamed answer's text so far), else NULL.
    partialContent: str | None = Field(default=None, sa_type=sa.Text)


class VisionImage(SQLModel, table=True):
    """An image a user sent inline (or, later, uploaded), stored once per (user, SHA-256).

    Jobs refer to it as ``/api/images/<sha256>`` in their imageUrl; the deletion trigger
    (``storage.triggers``) removes it with the last job of its user that does. Nothing is
    shared across users: another user's identical image is that user's own row.
    """

    __tablename__ = "visionImages"
    __table_args__ = (
        sa.UniqueConstraint("userId", "sha256", name="uq_images_userId_sha256"),
        sa.Index("idx_images_sha256", "sha256"),  # an admin's read, whoever stored it
    )

    id: int | None = Field(default=None, primary_key=True)
    userId: int = Field(nullable=False)
    sha256: str = Field(sa_type=sa.String(64), nullable=False)  # hex, lowercase
    mimeType: str = Field(sa_type=sa.String(255), nullable=False)
    byteSize: int = Field(nullable=False)
    # NULL when Pillow could not read them (a converted data: URL that is not an image).
    width: int | None = Field(default=None)
    height: int | None = Field(default=None)
    data: bytes = Field(sa_type=sa.LargeBinary, nullable=False)  # BLOB / BYTEA
    createdAt: datetime = Field(sa_type=_TS, nullable=False)


class VisionWorker(SQLModel, table=True):
    """One worker process (``vision-pipeline worker``, or ``serve``'s own), written by its
    heartbeat, deleted when it stops cleanly; a row not seen for a day is deleted by any
    other worker's heartbeat (a process that was killed). The dashboard's view of every
    process on every host: ``getWorkerStatus`` knows only its own."""

    __tablename__ = "visionWorkers"

    workerId: str = Field(sa_type=sa.String(64), primary_key=True)  # as in lockedBy
    host: str = Field(sa_type=sa.String(255), nullable=False)
    pid: int = Field(nullable=False)
    startedAt: datetime = Field(sa_type=_TS, nullable=False)
    lastSeenAt: datetime = Field(sa_type=_TS, nullable=False)
    concurrency: int = Field(nullable=False)
    running: int = Field(nullable=False)  # jobs in flight at the last heartbeat


def metadata() -> sa.MetaData:
    return SQLModel.metadata
