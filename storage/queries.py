"""Every SQL statement the queue and the API run, named and described, in one place.

Read this file to know what "claim a job" or "complete a job" means: each statement is one
``Query`` with a description. Parameters are written ``$1, $2 …`` (PostgreSQL's form); the
SQLite driver runs the same text with ``?1, ?2 …``. Where the dialects must differ (the claim,
the reaper's lock) a query carries both texts. Drivers execute these; nothing else builds SQL.

Writes a worker makes to a job it runs are *fenced*: they match ``attempt`` (bumped by every
claim) and ``lockedBy``, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from storage.tables import INLINE_IMAGE_JOB

_PARAM = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    postgres: str
    sqlite: str = field(default="")

    def __post_init__(self) -> None:
        if not self.sqlite:
            object.__setattr__(self, "sqlite", _PARAM.sub(r"?\1", self.postgres))


RUNNING = "('gemini_analyzing', 'deepseek_generating')"

# Columns a worker needs to run a job it has claimed.
_CLAIMED_COLUMNS = """id, "userId", "imageUrl", "imageContext", "analysisPurpose", "outputFormat",
    "creativityLevel", "additionalInstructions", status, "geminOutput", "retryCount",
    "maxRetries", attempt, "lockedAt\""""


def _json_rows(param: int, columns: str) -> tuple[str, str]:
    """A JSON array of objects (parameter ``param``) as the row source ``v``, in both dialects.

    ``columns`` is ``"name type, …"`` (PostgreSQL types). Batched writes pass their rows this
    way: one parameter, whatever the batch size, so each is one prepared statement.
    """
    names = [c.split()[0] for c in columns.split(",")]
    postgres = f"json_to_recordset(${param}::json) AS v({columns})"
    picks = ", ".join(f"json_extract(value, '$.{n}') AS {n}" for n in names)
    sqlite = f"(SELECT {picks} FROM json_each(?{param})) AS v"
    return postgres, sqlite


def _both(template: str, rows: tuple[str, str]) -> dict[str, str]:
    """One statement text with its row source for each dialect (``{rows}`` in ``template``)."""
    sqlite = _PARAM.sub(r"?\1", template.format(rows="{rows}")).format(rows=rows[1])
    head, returning, tail = sqlite.partition("RETURNING ")
    # SQLite's RETURNING names the target table's columns bare (PostgreSQL's would be
    # ambiguous with the row source's, hence the alias there).
    return {
        "postgres": template.format(rows=rows[0]),
        "sqlite": head + returning + tail.replace("j.", ""),
    }


# --- users ------------------------------------------------------------------------------------

UPSERT_USER_SEEN = Query(
    "upsert_user_seen",
    "First sight of an openId creates its user; a later sight refreshes lastSignedIn (and name "
    "when the session carries one). Returns the row's id and role.",
    """INSERT INTO users ("openId", name, role, "createdAt", "updatedAt", "lastSignedIn")
    VALUES ($1, $2, $3, $4, $4, $4)
    ON CONFLICT ("openId") DO UPDATE SET "lastSignedIn" = excluded."lastSignedIn",
        name = COALESCE(excluded.name, users.name)
    RETURNING id, role""",
)

GET_USER = Query(
    "get_user",
    "The whole user row by id, for auth.me.",
    """SELECT id, "openId", name, email, "loginMethod", role, "createdAt", "updatedAt",
        "lastSignedIn" FROM users WHERE id = $1""",
)

GET_USER_ROLE = Query(
    "get_user_role",
    "A cached session's role read again (a role changed by any process reaches it); no row "
    "when the user is gone.",
    """SELECT role FROM users WHERE id = $1""",
)

SET_USER_ROLE = Query(
    "set_user_role",
    "Make a user an admin (or back to user); creates the row when the openId is new.",
    """INSERT INTO users ("openId", role, "createdAt", "updatedAt", "lastSignedIn")
    VALUES ($1, $2, $3, $3, $3)
    ON CONFLICT ("openId") DO UPDATE SET role = excluded.role, "updatedAt" = excluded."updatedAt"
    RETURNING id""",
)

TOUCH_USER = Query(
    "touch_user",
    "A session's user seen again: refresh lastSignedIn (and name when the session carries one; "
    "role when $3 is set, the owner's re-promotion to admin). No row when the openId is new.",
    """UPDATE users SET "lastSignedIn" = $4, name = COALESCE($2, name), role = COALESCE($3, role)
    WHERE "openId" = $1 RETURNING id, role""",
)

UPSERT_USER_LOGIN = Query(
    "upsert_user_login",
    "A login (the template's upsertUser, TEMPLATE_FLOWS §1.7): set name, email, loginMethod and "
    "lastSignedIn; role $5 when set (the owner: admin, on insert and update), else 'user' on "
    "insert and the kept role on update. Returns the row's id and role.",
    """INSERT INTO users ("openId", name, email, "loginMethod", role, "createdAt", "updatedAt",
        "lastSignedIn")
    VALUES ($1, $2, $3, $4, COALESCE($5, 'user'), $6, $6, $6)
    ON CONFLICT ("openId") DO UPDATE SET name = excluded.name, email = excluded.email,
        "loginMethod" = excluded."loginMethod", role = COALESCE($5, users.role),
        "updatedAt" = excluded."updatedAt", "lastSignedIn" = excluded."lastSignedIn"
    RETURNING id, role""",
)

# --- jobs: the API side -----------------------------------------------------------------------

INSERT_JOBS = Query(
    "insert_jobs",
    "createJob, the calls of one moment in one statement ($2: JSON rows): new pending jobs, "
    "eligible at once. Ids are drawn in row order, so the returned ids, sorted, match the rows.",
    **_both(
        """INSERT INTO "visionJobs" ("userId", "imageUrl", "imageContext", "analysisPurpose",
        "outputFormat", "creativityLevel", "additionalInstructions", status, progress,
        "retryCount", "maxRetries", "createdAt", "updatedAt", "runAfter", attempt,
        "cancelRequested", "costUsd")
    SELECT v.owner, v.url, v.context, v.purpose, v.format, v.creativity, v.instructions,
        'pending', 0, 0, v.retries, $1, $1, $1, 0, FALSE, 0
    FROM {rows} WHERE TRUE
    RETURNING id""",
        _json_rows(
            2,
            "owner int, url text, context text, purpose text, format text, creativity float8, "
            "instructions text, retries int",
        ),
    ),
)

GET_JOB_STATUS = Query(
    "get_job_status",
    "getJobStatus: one job by id with its owner, so ownership is checked without a second query.",
    """SELECT id, "userId", status, progress, "geminOutput", "deepseekOutput", "errorMessage",
        "errorStage", "retryCount", "createdAt", "completedAt", "costUsd"
    FROM "visionJobs" WHERE id = $1""",
)

LIST_USER_JOBS = Query(
    "list_user_jobs",
    "getJobHistory: a user's jobs, oldest first as the design document orders them; served "
    "by the (userId, createdAt, id) index.",
    """SELECT id, status, progress, "imageUrl", "analysisPurpose", "createdAt", "completedAt"
    FROM "visionJobs" WHERE "userId" = $1 ORDER BY "createdAt", id LIMIT $2 OFFSET $3""",
)

# --- jobs: the worker side --------------------------------------------------------------------


def _pg_claim(worker: str, now: str, lease_until: str, limit: str) -> str:
    """The claim as two PostgreSQL CTEs (``picked``, ``claimed``), so a completion can carry it."""
    return f"""picked AS (
        SELECT id FROM "visionJobs"
        WHERE status = 'pending' AND "runAfter" <= {now}
        ORDER BY "runAfter", id LIMIT {limit}
        FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE "visionJobs" AS j SET
            status = CASE WHEN j."geminOutput" IS NULL THEN 'gemini_analyzing'
                          ELSE 'deepseek_generating' END,
            progress = CASE WHEN j."geminOutput" IS NULL THEN 25 ELSE 60 END,
            attempt = j.attempt + 1, "lockedBy" = {worker}, "lockedAt" = {now},
            "leaseExpiresAt" = {lease_until}, "updatedAt" = {now}
        FROM picked WHERE j.id = picked.id
        RETURNING {_CLAIMED_COLUMNS.replace("id,", "j.id,", 1)})"""


CLAIM_JOBS = Query(
    "claim_jobs",
    "Take up to $4 waiting jobs whose runAfter has passed, oldest first, for worker $1: bump the "
    "attempt (the fencing token), set the lease, and move each to the stage it resumes at "
    "(a job whose vision output is stored resumes at the content stage). On PostgreSQL, "
    "SKIP LOCKED lets many workers claim side by side; SQLite has one writer at a time.",
    postgres=f"""WITH {_pg_claim("$1", "$2", "$3", "$4")}
    SELECT * FROM claimed""",
    sqlite=f"""UPDATE "visionJobs" SET
        status = CASE WHEN "geminOutput" IS NULL THEN 'gemini_analyzing'
                      ELSE 'deepseek_generating' END,
        progress = CASE WHEN "geminOutput" IS NULL THEN 25 ELSE 60 END,
        attempt = attempt + 1, "lockedBy" = ?1, "lockedAt" = ?2, "leaseExpiresAt" = ?3,
        "updatedAt" = ?2
    WHERE id IN (SELECT id FROM "visionJobs"
                 WHERE status = 'pending' AND "runAfter" <= ?2
                 ORDER BY "runAfter", id LIMIT ?4)
    RETURNING {_CLAIMED_COLUMNS}""",
)

NEXT_RUN_AFTER = Query(
    "next_run_after",
    "When the earliest waiting job becomes eligible, so an idle worker sleeps exactly that long.",
    """SELECT MIN("runAfter") AS next FROM "visionJobs" WHERE status = 'pending'""",
)

STORE_VISION_OUTPUTS = Query(
    "store_vision_outputs",
    "Stage boundary (fenced, a batch in one statement): keep each job's vision analysis and "
    "move it to the content stage, so a retry of the content stage does not pay for the vision "
    "stage again. $2: JSON rows {id, attempt, worker, output}. Returns the rows still held, "
    "with whether a cancel was requested meanwhile.",
    **_both(
        f"""UPDATE "visionJobs" AS j SET status = 'deepseek_generating', progress = 60,
        "geminOutput" = v.output, "geminAnalyzedAt" = $1, "updatedAt" = $1
    FROM {{rows}}
    WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
        AND j.status IN {RUNNING}
    RETURNING j.id, j.attempt, j."cancelRequested\"""",
        _json_rows(2, "id bigint, attempt int, worker text, output text"),
    ),
)

_OUTPUT_COLUMNS = """colors_primary, colors_secondary, colors_description, mood, tone,
    composition_layout, brand_personality, perceived_industry, target_audience, content_pieces"""
_OUTPUT_NAMES = [c.strip() for c in _OUTPUT_COLUMNS.split(",")]
_ATTEMPT_COLUMNS = """("jobId", attempt, "workerId", "stageReached", outcome,
        "errorMessage", "startedAt", "endedAt", "geminiModel", "geminiInputTokens",
        "geminiOutputTokens", "geminiLatencyMs", "deepseekModel", "deepseekInputTokens",
        "deepseekOutputTokens", "deepseekLatencyMs", "costUsd")"""
_ATTEMPT_ROW = """v.worker, v.stage, v.outcome, v.error, {started}, $1,
        v.vision_model, v.vision_in, v.vision_out, v.vision_ms, v.content_model, v.content_in,
        v.content_out, v.content_ms, v.cost"""
_ATTEMPT_FIELDS = (
    "worker text, stage text, outcome text, error text, vision_model text, vision_in int, "
    "vision_out int, vision_ms int, content_model text, content_in int, content_out int, "
    "content_ms int, cost float8"
)
_COMPLETE_SET = """status = 'complete', progress = 100,
        "deepseekOutput" = v.content, "deepseekGeneratedAt" = $1, "completedAt" = $1,
        "updatedAt" = $1, "errorMessage" = NULL, "errorStage" = NULL, "lockedBy" = NULL,
        "leaseExpiresAt" = NULL, "costUsd" = j."costUsd" + v.cost"""
_COMPLETE_WHERE = f"""j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
        AND j.status IN {RUNNING} AND NOT j."cancelRequested\""""
_COMPLETE_ROWS = _json_rows(2, "id bigint, attempt int, worker text, content text, cost float8")
_DONE_ON_POSTGRES = "-- PostgreSQL: written by complete_jobs, in the same statement"
_PG_COMPLETE = f"""WITH v AS (SELECT * FROM json_to_recordset($2::json) AS v(id bigint,
        attempt int, content text, {", ".join(f"{c} text" for c in _OUTPUT_NAMES)},
        {_ATTEMPT_FIELDS})),
    done AS (
        UPDATE "visionJobs" AS j SET {_COMPLETE_SET}
        FROM v WHERE {_COMPLETE_WHERE}
        RETURNING j.id, j.attempt, j."userId", j."lockedAt"),
    outputs AS (
        INSERT INTO "visionJobOutputs" ("jobId", "userId", {_OUTPUT_COLUMNS},
            "isTrainingData", "createdAt")
        SELECT d.id, d."userId", {", ".join("v." + c for c in _OUTPUT_NAMES)}, TRUE, $1
        FROM done AS d JOIN v ON v.id = d.id AND v.attempt = d.attempt
        ON CONFLICT ("jobId") DO NOTHING),
    attempts AS (
        INSERT INTO "visionJobSessions" {_ATTEMPT_COLUMNS}
        SELECT d.id, d.attempt, {_ATTEMPT_ROW.format(started='d."lockedAt"')}
        FROM done AS d JOIN v ON v.id = d.id AND v.attempt = d.attempt)"""

COMPLETE_JOBS = Query(
    "complete_jobs",
    "Completion (fenced, a batch in one statement): store the content, mark complete, drop the "
    "lease, clear the message of earlier failed attempts (they stay in visionJobSessions), add "
    "the attempt's cost. $2: JSON rows {id, attempt, worker, content, cost, the outputs "
    "columns, the attempt's fields}. A job whose cancel was requested does not complete: the "
    "caller then records the cancel. On PostgreSQL the same statement also writes the "
    "completed jobs' outputs and attempt rows (data-modifying CTEs: one round trip); SQLite "
    "runs insert_outputs and insert_attempts after it.",
    postgres=f"""{_PG_COMPLETE}
    SELECT id, attempt, "userId" FROM done""",
    sqlite=_both(
        f"""UPDATE "visionJobs" AS j SET {_COMPLETE_SET}
    FROM {{rows}} WHERE {_COMPLETE_WHERE}
    RETURNING j.id, j.attempt, j."userId\"""",
        _COMPLETE_ROWS,
    )["sqlite"],
)

COMPLETE_AND_CLAIM = Query(
    "complete_and_claim",
    "PostgreSQL: complete_jobs, and in the same statement claim up to $5 waiting jobs for "
    "worker $3 (lease until $4): the slots the completions free are refilled without a round "
    "trip of their own. Rows: the completed (id, attempt, userId), then one row per claimed "
    "job with its columns as JSON in ``claimed``.",
    postgres=f"""{_PG_COMPLETE},
    {_pg_claim("$3", "$1", "$4", "$5")}
    SELECT id, attempt, "userId", NULL::json AS claimed FROM done
    UNION ALL
    SELECT NULL, NULL, NULL, row_to_json(c) FROM claimed AS c""",
    sqlite="-- PostgreSQL only: SQLite completes and claims in separate statements",
)

INSERT_OUTPUTS = Query(
    "insert_outputs",
    "SQLite: the structured outputs rows of completed jobs ($2: JSON rows); unique per job, so "
    "a second insert is a no-op rather than a duplicate.",
    postgres=_DONE_ON_POSTGRES,
    sqlite=_both(
        f"""INSERT INTO "visionJobOutputs" ("jobId", "userId", {_OUTPUT_COLUMNS},
        "isTrainingData", "createdAt")
    SELECT v.job, v.owner, {", ".join("v." + c for c in _OUTPUT_NAMES)}, TRUE, $1
    FROM {{rows}} WHERE TRUE
    ON CONFLICT ("jobId") DO NOTHING""",
        _json_rows(2, "job bigint, owner int, " + ", ".join(f"{c} text" for c in _OUTPUT_NAMES)),
    )["sqlite"],
)

INSERT_ATTEMPTS = Query(
    "insert_attempts",
    "SQLite: the visionJobSessions rows of attempts that completed in one batch ($2: JSON "
    "rows); an attempt started when its job was claimed (the job's lockedAt, which a claim "
    "sets and nothing else changes).",
    postgres=_DONE_ON_POSTGRES,
    sqlite=_both(
        f"""INSERT INTO "visionJobSessions" {_ATTEMPT_COLUMNS}
    SELECT v.job, v.attempt, {_ATTEMPT_ROW.format(started='j."lockedAt"')}
    FROM {{rows}} JOIN "visionJobs" AS j ON j.id = v.job""",
        _json_rows(2, "job bigint, attempt int, " + _ATTEMPT_FIELDS),
    )["sqlite"],
)

RETRY_JOB = Query(
    "retry_job",
    "A failed attempt that may succeed later (fenced): back to pending, not before $4, with the "
    "failed stage and the attempt count in errorMessage.",
    f"""UPDATE "visionJobs" SET status = 'pending', progress = 0, "retryCount" = "retryCount" + 1,
        "runAfter" = $4, "errorMessage" = $5, "errorStage" = $6, "updatedAt" = $7,
        "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + $8
    WHERE id = $1 AND attempt = $2 AND "lockedBy" = $3 AND status IN {RUNNING}""",
)

FAIL_JOB = Query(
    "fail_job",
    "A failed attempt that ends the job (fenced): error is final. retryCount counts the failed "
    "attempt only when $7 is true (a cancel is not a failure).",
    f"""UPDATE "visionJobs" SET status = 'error', progress = 0,
        "retryCount" = "retryCount" + CASE WHEN $7 THEN 1 ELSE 0 END,
        "errorMessage" = $4, "errorStage" = $5, "updatedAt" = $6,
        "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + $8
    WHERE id = $1 AND attempt = $2 AND "lockedBy" = $3 AND status IN {RUNNING}""",
)

RELEASE_JOB = Query(
    "release_job",
    "Graceful shutdown (fenced): hand a running job back to the queue at once without counting "
    "a failed attempt; it resumes at the stage it reached.",
    f"""UPDATE "visionJobs" SET status = 'pending', progress = 0, "runAfter" = $4,
        "updatedAt" = $4, "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + $5
    WHERE id = $1 AND attempt = $2 AND "lockedBy" = $3 AND status IN {RUNNING}""",
)

RENEW_LEASES = Query(
    "renew_leases",
    "Heartbeat: extend, in one statement, the leases of the attempts worker $1 is running ($3: "
    "a JSON array of [id, attempt]). Only those: a job it holds but no longer works on must "
    "expire and be reaped. The returned rows are the attempts it still owns; any other was "
    "taken from it.",
    postgres=f"""UPDATE "visionJobs" SET "leaseExpiresAt" = $2
    WHERE "lockedBy" = $1 AND status IN {RUNNING}
        AND (id, attempt) IN (SELECT (e->>0)::bigint, (e->>1)::int
                              FROM jsonb_array_elements($3::jsonb) AS e)
    RETURNING id, attempt, "cancelRequested\"""",
    sqlite=f"""UPDATE "visionJobs" SET "leaseExpiresAt" = ?2
    WHERE "lockedBy" = ?1 AND status IN {RUNNING}
        AND (id, attempt) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                              FROM json_each(?3))
    RETURNING id, attempt, "cancelRequested\"""",
)

FIND_EXPIRED_LEASES = Query(
    "find_expired_leases",
    "Reaper: running jobs whose holder stopped renewing its lease (killed, frozen, cut off).",
    postgres=f"""SELECT id, attempt, "lockedBy", "lockedAt", status, "retryCount", "maxRetries"
    FROM "visionJobs" WHERE status IN {RUNNING} AND "leaseExpiresAt" < $1
    ORDER BY "leaseExpiresAt" LIMIT 100 FOR UPDATE SKIP LOCKED""",
    sqlite=f"""SELECT id, attempt, "lockedBy", "lockedAt", status, "retryCount", "maxRetries"
    FROM "visionJobs" WHERE status IN {RUNNING} AND "leaseExpiresAt" < ?1
    ORDER BY "leaseExpiresAt" LIMIT 100""",
)

INSERT_ATTEMPT = Query(
    "insert_attempt",
    "One row per processing attempt, written when the attempt ends: the job's audit trail.",
    """INSERT INTO "visionJobSessions" ("jobId", attempt, "workerId", "stageReached", outcome,
        "errorMessage", "startedAt", "endedAt", "geminiModel", "geminiInputTokens",
        "geminiOutputTokens", "geminiLatencyMs", "deepseekModel", "deepseekInputTokens",
        "deepseekOutputTokens", "deepseekLatencyMs", "costUsd")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)""",
)

# --- operators --------------------------------------------------------------------------------

RETRY_FAILED_JOB = Query(
    "retry_failed_job",
    "`jobs retry ID`: an error job back to pending with its retries reset. Returns the id when "
    "the job was in error.",
    """UPDATE "visionJobs" SET status = 'pending', progress = 0, "retryCount" = 0,
        "errorMessage" = NULL, "errorStage" = NULL, "cancelRequested" = FALSE,
        "runAfter" = $2, "updatedAt" = $2
    WHERE id = $1 AND status = 'error' RETURNING id""",
)

CANCEL_PENDING_JOB = Query(
    "cancel_pending_job",
    "`jobs cancel ID` on a waiting job: it ends at once as error/cancelled.",
    """UPDATE "visionJobs" SET status = 'error', progress = 0, "errorStage" = 'cancelled',
        "errorMessage" = 'Cancelled by an operator', "cancelRequested" = TRUE, "updatedAt" = $2
    WHERE id = $1 AND status = 'pending' RETURNING id""",
)

REQUEST_CANCEL = Query(
    "request_cancel",
    "`jobs cancel ID` on a running job: flag it; its worker stops at the next stage boundary.",
    f"""UPDATE "visionJobs" SET "cancelRequested" = TRUE, "updatedAt" = $2
    WHERE id = $1 AND status IN {RUNNING} RETURNING id""",
)

COUNT_BY_STATUS = Query(
    "count_by_status",
    "How many jobs are in each status (operators, tests, benchmarks).",
    """SELECT status, COUNT(*) AS n FROM "visionJobs" GROUP BY status""",
)

# --- quotas (rpc.quotas) ------------------------------------------------------------------------

USER_QUOTA_COUNTS = Query(
    "user_quota_counts",
    "createJob's quota check, one round trip: the user's jobs created since $2 (counted up to "
    "$3), the oldest of them, and the user's unfinished jobs (counted up to $4). Each count "
    "is a range of the (userId, createdAt, id) or (userId, status) index, cut at the limit.",
    f"""SELECT
        (SELECT COUNT(*) FROM (SELECT 1 FROM "visionJobs"
            WHERE "userId" = $1 AND "createdAt" >= $2 LIMIT $3) AS r) AS recent,
        (SELECT MIN("createdAt") FROM "visionJobs"
            WHERE "userId" = $1 AND "createdAt" >= $2) AS oldest,
        (SELECT COUNT(*) FROM (SELECT 1 FROM "visionJobs"
            WHERE "userId" = $1 AND status IN ('pending', {RUNNING[1:-1]}) LIMIT $4) AS w)
            AS waiting""",
)

COUNT_WAITING_JOBS = Query(
    "count_waiting_jobs",
    "How many jobs wait to be claimed, counted up to $1 (the global cap): a scan of the "
    "partial index of pending jobs that stops at the cap.",
    """SELECT COUNT(*) AS n FROM (SELECT 1 FROM "visionJobs" WHERE status = 'pending'
        LIMIT $1) AS w""",
)

# --- the change feed (live progress, cross-process wake-up) -----------------------------------

LAST_EVENT_ID = Query(
    "last_event_id",
    "The change counter: the newest event's id. Polled cheaply on SQLite (a primary-key max) "
    "to learn that another process changed a job.",
    """SELECT COALESCE(MAX(id), 0) AS last FROM "visionJobEvents\"""",
)

EVENTS_AFTER = Query(
    "events_after",
    "Every job change after event $1, oldest first, at most $2: what a listener missed.",
    """SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt"
    FROM "visionJobEvents" WHERE id > $1 ORDER BY id LIMIT $2""",
)

JOB_EVENTS_AFTER = Query(
    "job_events_after",
    "One job's changes after event $2 (a reconnecting subscriber resumes from its last id).",
    """SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt"
    FROM "visionJobEvents" WHERE "jobId" = $1 AND id > $2 ORDER BY id LIMIT $3""",
)

USER_EVENTS_AFTER = Query(
    "user_events_after",
    "A user's job changes after event $2 (onMyJobs resuming).",
    """SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt"
    FROM "visionJobEvents" WHERE "userId" = $1 AND id > $2 ORDER BY id LIMIT $3""",
)

# --- the image store (storage.images) ---------------------------------------------------------

INSERT_IMAGE = Query(
    "insert_image",
    "Store an image for user $1 under its SHA-256 $2; a user who has it already keeps the row "
    "they have (nothing is written).",
    """INSERT INTO "visionImages" ("userId", sha256, "mimeType", "byteSize", width, height, data,
        "createdAt")
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT ("userId", sha256) DO NOTHING""",
)

HOLD_IMAGE = Query(
    "hold_image",
    "Whether user $1 has the image $2, and on PostgreSQL a share lock on it until the "
    "transaction ends: the job about to refer to it commits before the deletion trigger "
    "(which locks the image FOR UPDATE first) can decide that no job uses it.",
    postgres="""SELECT id FROM "visionImages" WHERE "userId" = $1 AND sha256 = $2 FOR SHARE""",
    sqlite="""SELECT id FROM "visionImages" WHERE "userId" = ?1 AND sha256 = ?2""",
)

_IMAGE_INFO = '"userId", sha256, "mimeType", "byteSize", width, height'

GET_IMAGE = Query(
    "get_image",
    "User $1's image $2 with its bytes (GET /api/images/…, and the worker reading a job's).",
    f"""SELECT {_IMAGE_INFO}, data FROM "visionImages" WHERE "userId" = $1 AND sha256 = $2""",
)

GET_IMAGE_INFO = Query(
    "get_image_info",
    "User $1's image $2 without its bytes (HEAD, and a GET the client has cached: 304).",
    f"""SELECT {_IMAGE_INFO}, NULL AS data FROM "visionImages"
    WHERE "userId" = $1 AND sha256 = $2""",
)

GET_ANY_IMAGE = Query(
    "get_any_image",
    "The image $1 whichever user stored it (an admin's GET), with its bytes: the same bytes "
    "whoever's row it is.",
    f"""SELECT {_IMAGE_INFO}, data FROM "visionImages" WHERE sha256 = $1 ORDER BY id LIMIT 1""",
)

GET_ANY_IMAGE_INFO = Query(
    "get_any_image_info",
    "get_any_image without the bytes.",
    f"""SELECT {_IMAGE_INFO}, NULL AS data FROM "visionImages"
    WHERE sha256 = $1 ORDER BY id LIMIT 1""",
)

NEXT_INLINE_IMAGE_JOB = Query(
    "next_inline_image_job",
    "The conversion of older rows: the next job after id $1 whose imageUrl still holds a whole "
    "data: URL (served by the partial index idx_inline_image_jobs), locked; on PostgreSQL a job "
    "another process is converting is skipped (SKIP LOCKED), so processes starting together "
    "share the work.",
    postgres=f"""SELECT id, "userId", "imageUrl" FROM "visionJobs"
    WHERE {INLINE_IMAGE_JOB} AND id > $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED""",
    sqlite=f"""SELECT id, "userId", "imageUrl" FROM "visionJobs"
    WHERE {INLINE_IMAGE_JOB} AND id > ?1 ORDER BY id LIMIT 1""",
)

SET_INLINE_IMAGE_URL = Query(
    "set_inline_image_url",
    "The conversion: job $1's data: URL replaced by its stored image's path $2 (or the "
    "invalid-image marker). Only while it still holds a data: URL, so running it twice "
    "changes nothing; updatedAt is kept (the job itself did not change).",
    f"""UPDATE "visionJobs" SET "imageUrl" = $2 WHERE id = $1 AND {INLINE_IMAGE_JOB}""",
)
