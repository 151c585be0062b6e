-- Every statement the queue and the API run on SQLite, loaded once by storage/queries.py.
--
-- Each statement follows a "-- name: NAME --" line and a one-line "-- " description; further
-- comment lines say why. Paste any of them into sqlite3 as written (?1, ?2 … are its
-- parameters).
-- postgres.sql names the same statements (tests/test_sql.py lists the few only one of them has).
--
-- Writes a worker makes to a job it runs are fenced: they match attempt (bumped by every
-- claim) and lockedBy, so a worker that lost its lease changes nothing. Batched writes take
-- their rows as one JSON parameter (json_each), whatever the batch size, so each is one
-- prepared statement. Statuses and progress values are storage/jobstate.py's.


-- === users ===================================================================================

-- name: upsert_user_seen --
-- First sight of an openId creates its user; a later sight refreshes lastSignedIn.
--   And name, when the session carries one. Returns the row's id and role.
INSERT INTO users ("openId", name, role, "createdAt", "updatedAt", "lastSignedIn")
VALUES (?1, ?2, ?3, ?4, ?4, ?4)
ON CONFLICT ("openId") DO UPDATE SET "lastSignedIn" = excluded."lastSignedIn",
    name = COALESCE(excluded.name, users.name)
RETURNING id, role;

-- name: get_user --
-- The whole user row by id, for auth.me.
SELECT id, "openId", name, email, "loginMethod", role, "createdAt", "updatedAt", "lastSignedIn",
    "dailyBudgetUsd"
FROM users WHERE id = ?1;

-- name: get_user_role --
-- A cached session's role read again; no row when the user is gone.
--   A role changed by any process reaches the session this way.
SELECT role FROM users WHERE id = ?1;

-- name: set_user_role --
-- Make a user an admin (or back to user); creates the row when the openId is new.
INSERT INTO users ("openId", role, "createdAt", "updatedAt", "lastSignedIn")
VALUES (?1, ?2, ?3, ?3, ?3)
ON CONFLICT ("openId") DO UPDATE SET role = excluded.role, "updatedAt" = excluded."updatedAt"
RETURNING id;

-- name: touch_user --
-- A session's user seen again: refresh lastSignedIn; no row when the openId is new.
--   Also name when the session carries one, and role when ?3 is set (the owner's re-promotion
--   to admin).
UPDATE users SET "lastSignedIn" = ?4, name = COALESCE(?2, name), role = COALESCE(?3, role)
WHERE "openId" = ?1 RETURNING id, role;

-- name: upsert_user_login --
-- A login (the template's upsertUser, TEMPLATE_FLOWS §1.7); returns the row's id and role.
--   Sets name, email, loginMethod and lastSignedIn; role ?5 when set (the owner: admin, on
--   insert and update), else 'user' on insert and the kept role on update.
INSERT INTO users ("openId", name, email, "loginMethod", role, "createdAt", "updatedAt",
    "lastSignedIn")
VALUES (?1, ?2, ?3, ?4, COALESCE(?5, 'user'), ?6, ?6, ?6)
ON CONFLICT ("openId") DO UPDATE SET name = excluded.name, email = excluded.email,
    "loginMethod" = excluded."loginMethod", role = COALESCE(?5, users.role),
    "updatedAt" = excluded."updatedAt", "lastSignedIn" = excluded."lastSignedIn"
RETURNING id, role;


-- === jobs: the API side ======================================================================

-- name: insert_jobs --
-- createJob, the calls of one moment in one statement (?2: JSON rows): new pending jobs.
--   Eligible at once. Ids are drawn in row order, so the returned ids, sorted, match the rows.
INSERT INTO "visionJobs" ("userId", "imageUrl", "imageContext", "analysisPurpose",
    "outputFormat", "creativityLevel", "additionalInstructions", status, progress,
    "retryCount", "maxRetries", "createdAt", "updatedAt", "runAfter", attempt,
    "cancelRequested", "costUsd", "bypassCache")
SELECT v.owner, v.url, v.context, v.purpose, v.format, v.creativity, v.instructions,
    'pending', 0, 0, v.retries, ?1, ?1, ?1, 0, FALSE, 0, v.bypass
FROM (SELECT json_extract(value, '$.owner') AS owner, json_extract(value, '$.url') AS url,
        json_extract(value, '$.context') AS context, json_extract(value, '$.purpose') AS purpose,
        json_extract(value, '$.format') AS format,
        json_extract(value, '$.creativity') AS creativity,
        json_extract(value, '$.instructions') AS instructions,
        json_extract(value, '$.retries') AS retries,
        json_extract(value, '$.bypass') AS bypass
    FROM json_each(?2)) AS v
WHERE TRUE
RETURNING id;

-- name: get_job_status --
-- getJobStatus: one job by id with its owner, so ownership is checked without a second query.
SELECT id, "userId", status, progress, "geminOutput", "deepseekOutput", "errorMessage",
    "errorStage", "retryCount", "createdAt", "completedAt", "costUsd"
FROM "visionJobs" WHERE id = ?1;

-- name: list_user_jobs --
-- getJobHistory: a user's jobs, oldest first, served by the (userId, createdAt, id) index.
SELECT id, status, progress, "imageUrl", "analysisPurpose", "createdAt", "completedAt"
FROM "visionJobs" WHERE "userId" = ?1 ORDER BY "createdAt", id LIMIT ?2 OFFSET ?3;


-- === jobs: the worker side ===================================================================

-- name: claim_jobs --
-- Take up to ?4 waiting jobs whose runAfter has passed, round-robin over users, for worker ?1.
--   Bumps the attempt (the fencing token), sets the lease, and moves each to the stage it
--   resumes at (a job whose vision output is stored resumes at the content stage). SQLite has
--   one writer at a time: nothing to skip.
--   Fair (issue 17), as postgres.sql's: ring walks the users with waiting jobs, one probe of
--   idx_fair each, from after user ?5 (the store's rotating cursor), wrapping once, until it
--   has max(8, 2 x ?4) users with an eligible job (users); each offers its first eligible jobs
--   in (runAfter, id) order, at most max(q, ?4 + 1 - (users in the window)), the k-th ranked
--   ceil(((jobs it runs now) + k) / q), q = max(1, ?4 / 4): turns in quanta of a quarter of
--   the claim, neighbouring rows; the lowest ranks win, ties by (runAfter, id).
WITH RECURSIVE ring(u, wrapped, k) AS (
    SELECT COALESCE(
            (SELECT "userId" FROM "visionJobs" INDEXED BY idx_fair WHERE status = 'pending'
             AND "userId" > ?5 ORDER BY "userId", "runAfter" LIMIT 1),
            (SELECT "userId" FROM "visionJobs" INDEXED BY idx_fair WHERE status = 'pending'
             ORDER BY "userId", "runAfter" LIMIT 1)),
        NOT EXISTS (SELECT 1 FROM "visionJobs" INDEXED BY idx_fair
            WHERE status = 'pending' AND "userId" > ?5), 0
    UNION ALL
    SELECT COALESCE(
            (SELECT "userId" FROM "visionJobs" INDEXED BY idx_fair WHERE status = 'pending'
             AND "userId" > r.u ORDER BY "userId", "runAfter" LIMIT 1),
            CASE WHEN NOT r.wrapped THEN (SELECT "userId" FROM "visionJobs" INDEXED BY idx_fair
                WHERE status = 'pending' ORDER BY "userId", "runAfter" LIMIT 1) END),
        r.wrapped OR NOT EXISTS (SELECT 1 FROM "visionJobs" INDEXED BY idx_fair
            WHERE status = 'pending' AND "userId" > r.u),
        r.k + EXISTS (SELECT 1 FROM "visionJobs" INDEXED BY idx_fair WHERE status = 'pending'
            AND "userId" = r.u AND "runAfter" <= ?2)
    FROM ring AS r
    WHERE r.u IS NOT NULL AND NOT (r.wrapped AND r.u > ?5) AND r.k < max(8, 2 * ?4)),
users AS MATERIALIZED (
    SELECT r.u, (SELECT count(*) FROM "visionJobs" AS b WHERE b."userId" = r.u
            AND b.status IN ('gemini_analyzing', 'deepseek_generating')) AS running
    FROM ring AS r
    WHERE r.u IS NOT NULL AND NOT (r.wrapped AND r.u > ?5) AND r.k < max(8, 2 * ?4)
        AND EXISTS (SELECT 1 FROM "visionJobs" INDEXED BY idx_fair WHERE status = 'pending'
            AND "userId" = r.u AND "runAfter" <= ?2)),
cand AS (
    SELECT j.id, j."runAfter", (w.running + row_number() OVER (
            PARTITION BY j."userId" ORDER BY j."runAfter", j.id) + max(1, ?4 / 4) - 1)
        / max(1, ?4 / 4) AS rank
    FROM users AS w JOIN "visionJobs" AS j ON j.id IN (
        SELECT id FROM "visionJobs" INDEXED BY idx_fair
        WHERE status = 'pending' AND "userId" = w.u AND "runAfter" <= ?2
        ORDER BY "userId", "runAfter", id
        LIMIT max(1, ?4 / 4, ?4 + 1 - (SELECT count(*) FROM users))))
UPDATE "visionJobs" SET
    status = CASE WHEN "geminOutput" IS NULL THEN 'gemini_analyzing'
                  ELSE 'deepseek_generating' END,
    progress = CASE WHEN "geminOutput" IS NULL THEN 25 ELSE 60 END,
    attempt = attempt + 1, "lockedBy" = ?1, "lockedAt" = ?2, "leaseExpiresAt" = ?3,
    "updatedAt" = ?2
WHERE id IN (SELECT id FROM cand ORDER BY rank, "runAfter", id LIMIT ?4)
RETURNING id, "userId", "imageUrl", "imageContext", "analysisPurpose", "outputFormat",
    "creativityLevel", "additionalInstructions", status, "geminOutput", "retryCount",
    "maxRetries", attempt, "lockedAt", "bypassCache";

-- name: next_run_after --
-- When the earliest waiting job becomes eligible, so an idle worker sleeps exactly that long.
SELECT MIN("runAfter") AS next FROM "visionJobs" WHERE status = 'pending';

-- name: store_vision_outputs --
-- Stage boundary (fenced, a batch): keep each vision analysis, move to the content stage.
--   A retry of the content stage then does not pay for the vision stage again. ?2: JSON rows
--   {id, attempt, worker, output, key: its cache key, NULL for a cached answer}. Returns the
--   rows still held, with whether a cancel was requested meanwhile. (SQLite's RETURNING
--   names the target table's columns bare.)
UPDATE "visionJobs" AS j SET status = 'deepseek_generating', progress = 60,
    "geminOutput" = v.output, "geminAnalyzedAt" = ?1, "updatedAt" = ?1,
    "visionCacheKey" = v.key
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
        json_extract(value, '$.worker') AS worker, json_extract(value, '$.output') AS output,
        json_extract(value, '$.key') AS key
    FROM json_each(?2)) AS v
WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
    AND j.status IN ('gemini_analyzing', 'deepseek_generating')
RETURNING id, attempt, "cancelRequested";

-- name: store_partial_contents --
-- The content stage's answers so far (fenced, a batch): each running attempt's streamed text.
--   Written at a bounded pace (pipeline.streaming); the triggers copy it into an event. Only an
--   attempt still holding its job at the content stage writes: a stale worker's text, or one
--   arriving after its completion, changes nothing. ?2: JSON rows {id, attempt, worker,
--   content}. Returns the rows written.
UPDATE "visionJobs" AS j SET "partialContent" = v.content, "updatedAt" = ?1
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
        json_extract(value, '$.worker') AS worker, json_extract(value, '$.content') AS content
    FROM json_each(?2)) AS v
WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
    AND j.status = 'deepseek_generating'
RETURNING id, attempt;

-- name: complete_jobs --
-- Completion (fenced, a batch): store the content, mark complete, drop the lease.
--   Clears the message of earlier failed attempts (they stay in visionJobSessions), adds the
--   attempt's cost. A job whose cancel was requested does not complete: the caller then
--   records the cancel. ?2: JSON rows {id, attempt, worker, content, cost, …}. SQLite has no
--   data-modifying CTEs: insert_outputs and insert_attempts follow in the same transaction.
UPDATE "visionJobs" AS j SET status = 'complete', progress = 100,
    "deepseekOutput" = v.content, "deepseekGeneratedAt" = ?1, "completedAt" = ?1,
    "updatedAt" = ?1, "errorMessage" = NULL, "errorStage" = NULL, "lockedBy" = NULL,
    "leaseExpiresAt" = NULL, "costUsd" = j."costUsd" + v.cost, "partialContent" = NULL,
    "contentCacheKey" = v.content_key
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
        json_extract(value, '$.worker') AS worker, json_extract(value, '$.content') AS content,
        json_extract(value, '$.cost') AS cost,
        json_extract(value, '$.content_key') AS content_key
    FROM json_each(?2)) AS v
WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
    AND j.status IN ('gemini_analyzing', 'deepseek_generating') AND NOT j."cancelRequested"
RETURNING id, attempt, "userId";

-- name: insert_outputs --
-- The visionJobOutputs rows of the jobs complete_jobs completed (?2: JSON rows).
--   Unique per job, so a second insert is a no-op rather than a duplicate.
INSERT INTO "visionJobOutputs" ("jobId", "userId", colors_primary, colors_secondary,
    colors_description, mood, tone, composition_layout, brand_personality,
    perceived_industry, target_audience, content_pieces, "isTrainingData", "createdAt")
SELECT v.job, v.owner, v.colors_primary, v.colors_secondary, v.colors_description, v.mood,
    v.tone, v.composition_layout, v.brand_personality, v.perceived_industry,
    v.target_audience, v.content_pieces, TRUE, ?1
FROM (SELECT json_extract(value, '$.job') AS job, json_extract(value, '$.owner') AS owner,
        json_extract(value, '$.colors_primary') AS colors_primary,
        json_extract(value, '$.colors_secondary') AS colors_secondary,
        json_extract(value, '$.colors_description') AS colors_description,
        json_extract(value, '$.mood') AS mood, json_extract(value, '$.tone') AS tone,
        json_extract(value, '$.composition_layout') AS composition_layout,
        json_extract(value, '$.brand_personality') AS brand_personality,
        json_extract(value, '$.perceived_industry') AS perceived_industry,
        json_extract(value, '$.target_audience') AS target_audience,
        json_extract(value, '$.content_pieces') AS content_pieces
    FROM json_each(?2)) AS v
WHERE TRUE
ON CONFLICT ("jobId") DO NOTHING;

-- name: insert_attempts --
-- The visionJobSessions rows of the attempts complete_jobs completed (?2: JSON rows).
--   An attempt started when its job was claimed: the job's lockedAt, which a claim sets and
--   nothing else changes.
INSERT INTO "visionJobSessions" ("jobId", attempt, "workerId", "stageReached", outcome,
    "errorMessage", "startedAt", "endedAt", "geminiModel", "geminiInputTokens",
    "geminiOutputTokens", "geminiLatencyMs", "deepseekModel", "deepseekInputTokens",
    "deepseekOutputTokens", "deepseekLatencyMs", "costUsd", "geminiCachedFrom",
    "deepseekCachedFrom")
SELECT v.job, v.attempt, v.worker, v.stage, v.outcome, v.error, j."lockedAt", ?1,
    v.vision_model, v.vision_in, v.vision_out, v.vision_ms, v.content_model, v.content_in,
    v.content_out, v.content_ms, v.cost, v.vision_from, v.content_from
FROM (SELECT json_extract(value, '$.job') AS job, json_extract(value, '$.attempt') AS attempt,
        json_extract(value, '$.worker') AS worker, json_extract(value, '$.stage') AS stage,
        json_extract(value, '$.outcome') AS outcome, json_extract(value, '$.error') AS error,
        json_extract(value, '$.vision_model') AS vision_model,
        json_extract(value, '$.vision_in') AS vision_in,
        json_extract(value, '$.vision_out') AS vision_out,
        json_extract(value, '$.vision_ms') AS vision_ms,
        json_extract(value, '$.content_model') AS content_model,
        json_extract(value, '$.content_in') AS content_in,
        json_extract(value, '$.content_out') AS content_out,
        json_extract(value, '$.content_ms') AS content_ms,
        json_extract(value, '$.cost') AS cost,
        json_extract(value, '$.vision_from') AS vision_from,
        json_extract(value, '$.content_from') AS content_from
    FROM json_each(?2)) AS v
JOIN "visionJobs" AS j ON j.id = v.job;

-- name: retry_job --
-- A failed attempt that may succeed later (fenced): back to pending, not before ?4.
--   errorMessage ?5 names the failed stage and the attempt count.
UPDATE "visionJobs" SET status = 'pending', progress = 0, "retryCount" = "retryCount" + 1,
    "runAfter" = ?4, "errorMessage" = ?5, "errorStage" = ?6, "updatedAt" = ?7,
    "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + ?8,
    "partialContent" = NULL
WHERE id = ?1 AND attempt = ?2 AND "lockedBy" = ?3
    AND status IN ('gemini_analyzing', 'deepseek_generating');

-- name: fail_job --
-- A failed attempt that ends the job (fenced): error is final.
--   retryCount counts the failed attempt only when ?7 is true (a cancel is not a failure).
UPDATE "visionJobs" SET status = 'error', progress = 0,
    "retryCount" = "retryCount" + CASE WHEN ?7 THEN 1 ELSE 0 END,
    "errorMessage" = ?4, "errorStage" = ?5, "updatedAt" = ?6,
    "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + ?8,
    "partialContent" = NULL
WHERE id = ?1 AND attempt = ?2 AND "lockedBy" = ?3
    AND status IN ('gemini_analyzing', 'deepseek_generating');

-- name: release_job --
-- Graceful shutdown (fenced): a running job back to the queue at once, not counted as failed.
--   It resumes at the stage it reached.
UPDATE "visionJobs" SET status = 'pending', progress = 0, "runAfter" = ?4,
    "updatedAt" = ?4, "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + ?5,
    "partialContent" = NULL
WHERE id = ?1 AND attempt = ?2 AND "lockedBy" = ?3
    AND status IN ('gemini_analyzing', 'deepseek_generating');

-- name: renew_leases --
-- Heartbeat: extend the leases of the attempts worker ?1 runs (?3: JSON [[id, attempt], …]).
--   Only those: a job it holds but no longer works on must expire and be reaped. The returned
--   rows are the attempts it still owns; any other was taken from it.
UPDATE "visionJobs" SET "leaseExpiresAt" = ?2
WHERE "lockedBy" = ?1 AND status IN ('gemini_analyzing', 'deepseek_generating')
    AND (id, attempt) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
                          FROM json_each(?3))
RETURNING id, attempt, "cancelRequested";

-- name: find_expired_leases --
-- Reaper: running jobs whose holder stopped renewing its lease (killed, frozen, cut off).
--   The reaping transaction is the one writer meanwhile: nothing to lock.
SELECT id, attempt, "lockedBy", "lockedAt", status, "retryCount", "maxRetries"
FROM "visionJobs"
WHERE status IN ('gemini_analyzing', 'deepseek_generating') AND "leaseExpiresAt" < ?1
ORDER BY "leaseExpiresAt" LIMIT 100;

-- name: insert_attempt --
-- One row per processing attempt, written when the attempt ends: the job's audit trail.
INSERT INTO "visionJobSessions" ("jobId", attempt, "workerId", "stageReached", outcome,
    "errorMessage", "startedAt", "endedAt", "geminiModel", "geminiInputTokens",
    "geminiOutputTokens", "geminiLatencyMs", "deepseekModel", "deepseekInputTokens",
    "deepseekOutputTokens", "deepseekLatencyMs", "costUsd", "geminiCachedFrom",
    "deepseekCachedFrom")
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
    ?19);


-- === operators ===============================================================================

-- name: retry_failed_job --
-- `jobs retry ID`: an error job back to pending with its retries reset; its id if it was.
UPDATE "visionJobs" SET status = 'pending', progress = 0, "retryCount" = 0,
    "errorMessage" = NULL, "errorStage" = NULL, "cancelRequested" = FALSE,
    "runAfter" = ?2, "updatedAt" = ?2
WHERE id = ?1 AND status = 'error' RETURNING id;

-- name: cancel_pending_job --
-- `jobs cancel ID` on a waiting job: it ends at once as error/cancelled.
UPDATE "visionJobs" SET status = 'error', progress = 0, "errorStage" = 'cancelled',
    "errorMessage" = 'Cancelled by an operator', "cancelRequested" = TRUE, "updatedAt" = ?2
WHERE id = ?1 AND status = 'pending' RETURNING id;

-- name: request_cancel --
-- `jobs cancel ID` on a running job: flag it; its worker stops at the next stage boundary.
UPDATE "visionJobs" SET "cancelRequested" = TRUE, "updatedAt" = ?2
WHERE id = ?1 AND status IN ('gemini_analyzing', 'deepseek_generating') RETURNING id;

-- name: count_by_status --
-- How many jobs are in each status (operators, tests, benchmarks).
SELECT status, COUNT(*) AS n FROM "visionJobs" GROUP BY status;


-- === quotas (rpc.procedures.quotas) =====================================================================

-- name: user_quota_counts --
-- createJob's quota check in one round trip: recent jobs, the oldest of them, unfinished jobs.
--   The user's jobs created since ?2 (counted up to ?3), the oldest one's createdAt, and the
--   user's unfinished jobs (counted up to ?4). Each count is a range of the (userId,
--   createdAt, id) or (userId, status) index, cut at the limit.
SELECT
    (SELECT COUNT(*) FROM (SELECT 1 FROM "visionJobs"
        WHERE "userId" = ?1 AND "createdAt" >= ?2 LIMIT ?3) AS r) AS recent,
    (SELECT MIN("createdAt") FROM "visionJobs"
        WHERE "userId" = ?1 AND "createdAt" >= ?2) AS oldest,
    (SELECT COUNT(*) FROM (SELECT 1 FROM "visionJobs"
        WHERE "userId" = ?1
            AND status IN ('pending', 'gemini_analyzing', 'deepseek_generating')
        LIMIT ?4) AS w) AS waiting;

-- name: count_waiting_jobs --
-- How many jobs wait to be claimed, counted up to ?1 (the global cap).
--   A scan of the partial index of pending jobs that stops at the cap.
SELECT COUNT(*) AS n FROM (SELECT 1 FROM "visionJobs" WHERE status = 'pending' LIMIT ?1) AS w;


-- === the change feed (live progress, cross-process wake-up) ==================================

-- name: last_event_id --
-- The change counter: the newest event's id.
SELECT COALESCE(MAX(id), 0) AS last FROM "visionJobEvents";

-- name: events_after --
-- Every job change after event ?1, oldest first, at most ?2: what a listener missed.
SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt",
    "partialContent"
FROM "visionJobEvents" WHERE id > ?1 ORDER BY id LIMIT ?2;

-- name: job_events_after --
-- One job's changes after event ?2 (a reconnecting subscriber resumes from its last id).
SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt",
    "partialContent"
FROM "visionJobEvents" WHERE "jobId" = ?1 AND id > ?2 ORDER BY id LIMIT ?3;

-- name: user_events_after --
-- A user's job changes after event ?2 (onMyJobs resuming).
SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt",
    "partialContent"
FROM "visionJobEvents" WHERE "userId" = ?1 AND id > ?2 ORDER BY id LIMIT ?3;

-- name: analysed_before_event --
-- Whether job ?1's image analysis existed before event ?2: an earlier event of the job at
--   the content stage or complete (the stage boundary writes the analysis with that status).
--   A replayed event shows the analysis only from then on; served by idx_events_jobId.
SELECT EXISTS (SELECT 1 FROM "visionJobEvents" WHERE "jobId" = ?1 AND id < ?2
    AND status IN ('deepseek_generating', 'complete')) AS analysed;


-- === the image store (storage.images) ========================================================

-- name: insert_image --
-- Store an image for user ?1 under its SHA-256 ?2; a user who has it keeps their row.
INSERT INTO "visionImages" ("userId", sha256, "mimeType", "byteSize", width, height, data,
    "createdAt")
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT ("userId", sha256) DO NOTHING;

-- name: stored_image_bytes --
-- The bytes of user ?1's stored images, and whether they have image ?2 already (uploadImage).
SELECT COALESCE(SUM("byteSize"), 0) AS total, COALESCE(MAX(sha256 = ?2), 0) AS has
FROM "visionImages" WHERE "userId" = ?1;

-- name: touch_image --
-- An upload of the image ?2 user ?1 has: its createdAt becomes ?3.
--   The unused upload's retention (UPLOAD_RETENTION_HOURS) starts again from this upload.
UPDATE "visionImages" SET "createdAt" = ?3 WHERE "userId" = ?1 AND sha256 = ?2;

-- name: hold_image --
-- Whether user ?1 has the image ?2.
--   SQLite has one writer at a time: no deletion can come between this and the job's insert.
SELECT id FROM "visionImages" WHERE "userId" = ?1 AND sha256 = ?2;

-- name: get_image --
-- User ?1's image ?2 with its bytes (GET /api/images/…, and the worker reading a job's).
SELECT "userId", sha256, "mimeType", "byteSize", width, height, data
FROM "visionImages" WHERE "userId" = ?1 AND sha256 = ?2;

-- name: get_image_info --
-- User ?1's image ?2 without its bytes (HEAD, and a GET the client has cached: 304).
SELECT "userId", sha256, "mimeType", "byteSize", width, height, NULL AS data
FROM "visionImages" WHERE "userId" = ?1 AND sha256 = ?2;

-- name: get_any_image --
-- The image ?1 whichever user stored it (an admin's GET), with its bytes.
--   The same bytes whoever's row it is.
SELECT "userId", sha256, "mimeType", "byteSize", width, height, data
FROM "visionImages" WHERE sha256 = ?1 ORDER BY id LIMIT 1;

-- name: get_any_image_info --
-- get_any_image without the bytes.
SELECT "userId", sha256, "mimeType", "byteSize", width, height, NULL AS data
FROM "visionImages" WHERE sha256 = ?1 ORDER BY id LIMIT 1;

-- name: next_inline_image_job --
-- The conversion of older rows: the next job after id ?1 still holding a whole data: URL.
--   Served by the partial index idx_inline_image_jobs (the condition is its, word for word).
SELECT id, "userId", "imageUrl" FROM "visionJobs"
WHERE lower(substr("imageUrl", 1, 5)) = 'data:' AND id > ?1
ORDER BY id LIMIT 1;

-- name: set_inline_image_url --
-- The conversion: job ?1's data: URL replaced by its stored image's path ?2.
--   Or by the invalid-image marker. Only while it still holds a data: URL, so running it twice
--   changes nothing; updatedAt is kept (the job itself did not change).
UPDATE "visionJobs" SET "imageUrl" = ?2
WHERE id = ?1 AND lower(substr("imageUrl", 1, 5)) = 'data:';


-- === operators' commands (storage.operators, `vision-pipeline jobs …` / `users …`) ===========
--
-- The job filters: ?1 a JSON array of statuses, ?2 an openId, ?3 a createdAt lower bound; a
-- NULL filter matches every job. Pages are keyset (id > after ORDER BY id LIMIT n), so a read
-- of a million jobs holds one page at a time and never rescans what it passed.

-- name: operator_list_jobs --
-- `jobs list`: the newest ?4 jobs matching the filters, with their owner's openId.
SELECT j.id, u."openId", j.status, j.progress, j."retryCount", j."errorStage", j."costUsd",
    j."createdAt", j."completedAt", j."updatedAt"
FROM "visionJobs" j LEFT JOIN users u ON u.id = j."userId"
WHERE (?1 IS NULL OR j.status IN (SELECT value FROM json_each(?1)))
    AND (?2 IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = ?2))
    AND (?3 IS NULL OR j."createdAt" >= ?3)
ORDER BY j.id DESC LIMIT ?4;

-- name: operator_count_jobs --
-- How many jobs match the filters (a retry or cancel by filter; the export's progress bar).
SELECT COUNT(*) AS n FROM "visionJobs" j
WHERE (?1 IS NULL OR j.status IN (SELECT value FROM json_each(?1)))
    AND (?2 IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = ?2))
    AND (?3 IS NULL OR j."createdAt" >= ?3);

-- name: operator_job_ids_page --
-- The next ?5 ids after ?4 of the jobs matching the filters (a retry or cancel by filter).
SELECT j.id FROM "visionJobs" j
WHERE (?1 IS NULL OR j.status IN (SELECT value FROM json_each(?1)))
    AND (?2 IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = ?2))
    AND (?3 IS NULL OR j."createdAt" >= ?3)
    AND j.id > ?4
ORDER BY j.id LIMIT ?5;

-- name: operator_export_page --
-- `jobs export`: the next ?5 jobs after id ?4 matching the filters, with inputs and outputs.
--   The tokens are the sums over the job's attempts (visionJobSessions, by its jobId index).
SELECT j.id, u."openId", j.status, j."createdAt", j."completedAt", j."imageUrl",
    j."imageContext", j."analysisPurpose", j."outputFormat", j."creativityLevel",
    j."additionalInstructions", j."geminOutput", j."deepseekOutput", j."retryCount",
    j."costUsd", o.colors_primary, o.colors_secondary, o.colors_description, o.mood, o.tone,
    o.composition_layout, o.brand_personality, o.perceived_industry, o.target_audience,
    o.content_pieces, o."isTrainingData",
    (SELECT COALESCE(SUM(s."geminiInputTokens"), 0) FROM "visionJobSessions" s
        WHERE s."jobId" = j.id) AS "geminiInputTokens",
    (SELECT COALESCE(SUM(s."geminiOutputTokens"), 0) FROM "visionJobSessions" s
        WHERE s."jobId" = j.id) AS "geminiOutputTokens",
    (SELECT COALESCE(SUM(s."deepseekInputTokens"), 0) FROM "visionJobSessions" s
        WHERE s."jobId" = j.id) AS "deepseekInputTokens",
    (SELECT COALESCE(SUM(s."deepseekOutputTokens"), 0) FROM "visionJobSessions" s
        WHERE s."jobId" = j.id) AS "deepseekOutputTokens"
FROM "visionJobs" j
LEFT JOIN users u ON u.id = j."userId"
LEFT JOIN "visionJobOutputs" o ON o."jobId" = j.id
WHERE (?1 IS NULL OR j.status IN (SELECT value FROM json_each(?1)))
    AND (?2 IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = ?2))
    AND (?3 IS NULL OR j."createdAt" >= ?3)
    AND j.id > ?4
ORDER BY j.id LIMIT ?5;

-- name: operator_get_job --
-- `jobs show`: the whole job row with its owner's openId.
--   With issue 17's columns: the createJob's idempotencyKey, whether it asked for fresh
--   answers (bypassCache), the content streamed in so far.
SELECT j.id, u."openId", j."userId", j.status, j.progress, j."imageUrl", j."imageContext",
    j."analysisPurpose", j."outputFormat", j."creativityLevel", j."additionalInstructions",
    j."geminOutput", j."deepseekOutput", j."errorMessage", j."errorStage", j."retryCount",
    j."maxRetries", j.attempt, j."lockedBy", j."leaseExpiresAt", j."cancelRequested",
    j."costUsd", j."createdAt", j."updatedAt", j."completedAt", j."runAfter",
    j."idempotencyKey", j."bypassCache", j."partialContent"
FROM "visionJobs" j LEFT JOIN users u ON u.id = j."userId" WHERE j.id = ?1;

-- name: operator_job_attempts --
-- `jobs show`: the job's attempts in order (visionJobSessions).
SELECT attempt, "workerId", "stageReached", outcome, "errorMessage", "startedAt", "endedAt",
    "geminiModel", "geminiInputTokens", "geminiOutputTokens", "geminiLatencyMs",
    "deepseekModel", "deepseekInputTokens", "deepseekOutputTokens", "deepseekLatencyMs",
    "costUsd", "geminiCachedFrom", "deepseekCachedFrom"
FROM "visionJobSessions" WHERE "jobId" = ?1 ORDER BY attempt, id;

-- name: operator_job_events --
-- `jobs show`: the job's first ?2 events (visionJobEvents) in order.
SELECT id, status, progress, "errorMessage", "createdAt"
FROM "visionJobEvents" WHERE "jobId" = ?1 ORDER BY id LIMIT ?2;

-- name: operator_job_states --
-- The status of each job among the ids ?1 (a JSON array): which exist, and in what state.
SELECT id, status FROM "visionJobs" WHERE id IN (SELECT value FROM json_each(?1));

-- name: operator_waiting_by_user --
-- `jobs stats`: the ?1 users with the most waiting jobs, with their openId and running jobs.
--   The fair claim takes turns between these users (issue 17); idx_fair, the waiting jobs by
--   user, is counted alone.
SELECT w."userId", u."openId", w.waiting,
    (SELECT COUNT(*) FROM "visionJobs" AS r WHERE r."userId" = w."userId"
        AND r.status IN ('gemini_analyzing', 'deepseek_generating')) AS running
FROM (SELECT "userId", COUNT(*) AS waiting FROM "visionJobs" WHERE status = 'pending'
      GROUP BY "userId" ORDER BY waiting DESC, "userId" LIMIT ?1) AS w
LEFT JOIN users AS u ON u.id = w."userId"
ORDER BY w.waiting DESC, w."userId";

-- name: operator_oldest_pending --
-- `jobs stats`: when the oldest waiting job was created (NULL: none waits).
--   The partial index of pending jobs holds only them.
SELECT MIN("createdAt") AS oldest FROM "visionJobs" WHERE status = 'pending';

-- name: operator_window_completions --
-- `jobs stats`: how many jobs completed since ?1.
SELECT COUNT(*) AS n FROM "visionJobs" WHERE status = 'complete' AND "completedAt" >= ?1;

-- name: operator_completion_time_at --
-- `jobs stats`: the time-to-complete (createdAt to completedAt, seconds) of rank ?2 since ?1.
--   Ranks count from 0 in ascending order: the percentiles are nearest-rank, computed in the
--   database (a sort there, one row back), so the command's memory does not grow with jobs.
SELECT (julianday("completedAt") - julianday("createdAt")) * 86400.0 AS seconds
FROM "visionJobs" WHERE status = 'complete' AND "completedAt" >= ?1
ORDER BY seconds LIMIT 1 OFFSET ?2;

-- name: operator_failures_by_stage --
-- `jobs stats`: jobs that ended in error since ?1, by the stage they failed at.
SELECT "errorStage" AS stage, COUNT(*) AS n FROM "visionJobs"
WHERE status = 'error' AND "updatedAt" >= ?1 GROUP BY "errorStage" ORDER BY "errorStage";

-- name: operator_cost_since --
-- `jobs stats`: the cost of the jobs created since ?1 (today), ?2 (7 days), ?3 (30 days).
--   ?3 is the earliest; the createdAt index bounds the scan to it.
SELECT COALESCE(SUM(CASE WHEN "createdAt" >= ?1 THEN "costUsd" ELSE 0 END), 0) AS today,
    COALESCE(SUM(CASE WHEN "createdAt" >= ?2 THEN "costUsd" ELSE 0 END), 0) AS week,
    COALESCE(SUM("costUsd"), 0) AS month
FROM "visionJobs" WHERE "createdAt" >= ?3;

-- name: operator_list_users --
-- `users list`: the first ?1 users by id, with how many jobs each has and their budget.
SELECT u.id, u."openId", u.name, u.email, u.role, u."createdAt", u."lastSignedIn",
    (SELECT COUNT(*) FROM "visionJobs" j WHERE j."userId" = u.id) AS jobs,
    u."dailyBudgetUsd"
FROM users u ORDER BY u.id LIMIT ?1;

-- name: operator_change_user_role --
-- `users set-role` of a known user: the new role; no row when the openId is unknown.
UPDATE users SET role = ?2, "updatedAt" = ?3 WHERE "openId" = ?1 RETURNING id;

-- ==== retention (storage.retention, pipeline.retention, `jobs prune`) ========================
-- Bounded batches: each statement touches at most ?2 jobs or ?3 events, so the write lock is
-- held briefly and the workers' writes go on between batches. Never the newest job or event:
-- SQLite (no AUTOINCREMENT) would hand its id out again, and a job id or an event id (the
-- live-progress resume position) must never mean two things.

-- name: prune_finished_jobs --
-- Delete up to ?2 finished jobs (complete, error) last updated before ?1; returns their ids.
--   "Older" is updatedAt, the moment the job finished. Found through idx_createdAt (a job
--   finished before ?1 was created before it), so only old jobs are read. Pending and running
--   jobs are never touched. The deletion trigger removes the stored images no remaining job of
--   the user uses.
DELETE FROM "visionJobs"
WHERE id IN (
    SELECT id FROM "visionJobs"
    WHERE "createdAt" < ?1 AND status IN ('complete', 'error') AND "updatedAt" < ?1
        AND id < (SELECT max(id) FROM "visionJobs")
    ORDER BY "createdAt", id LIMIT ?2)
RETURNING id;

-- name: count_prunable_jobs --
-- How many jobs prune_finished_jobs would delete for cutoff ?1 (`jobs prune --dry-run`).
SELECT count(*) AS n FROM "visionJobs"
WHERE "createdAt" < ?1 AND status IN ('complete', 'error') AND "updatedAt" < ?1
    AND id < (SELECT max(id) FROM "visionJobs");

-- name: delete_jobs_events --
-- The events of the jobs prune_finished_jobs deleted (?1: JSON [id, …]).
DELETE FROM "visionJobEvents" WHERE "jobId" IN (SELECT value FROM json_each(?1));

-- name: delete_jobs_attempts --
-- The attempt rows (visionJobSessions) of the jobs prune_finished_jobs deleted (?1: JSON ids).
DELETE FROM "visionJobSessions" WHERE "jobId" IN (SELECT value FROM json_each(?1));

-- name: delete_jobs_outputs --
-- The outputs rows of the jobs prune_finished_jobs deleted (?1: JSON [id, …]).
DELETE FROM "visionJobOutputs" WHERE "jobId" IN (SELECT value FROM json_each(?1));

-- name: unused_images --
-- Up to ?2 stored images created before ?1 that no job of their user refers to (ids).
--   Uploads nobody made a job from (every other image goes with its user's last job: the
--   deletion trigger). The job probe is idx_stored_image_jobs.
SELECT i.id FROM "visionImages" AS i
WHERE i."createdAt" < ?1 AND NOT EXISTS (
        SELECT 1 FROM "visionJobs" AS j
        WHERE j."userId" = i."userId" AND substr(j."imageUrl", 1, 12) = '/api/images/'
            AND j."imageUrl" = '/api/images/' || i.sha256)
ORDER BY i.id LIMIT ?2;

-- name: delete_unused_images --
-- Delete the images ?1 (JSON ids) still created before ?2 and still used by no job.
--   A statement of its own after unused_images: on PostgreSQL its fresh snapshot sees a job
--   committed since (a createJob that held the image), and a createdAt an upload refreshed.
DELETE FROM "visionImages" AS i
WHERE i.id IN (SELECT value FROM json_each(?1)) AND i."createdAt" < ?2
    AND NOT EXISTS (
        SELECT 1 FROM "visionJobs" AS j
        WHERE j."userId" = i."userId" AND substr(j."imageUrl", 1, 12) = '/api/images/'
            AND j."imageUrl" = '/api/images/' || i.sha256);

-- name: events_window --
-- The ?3 events after id ?1, each with whether it may go (a read, outside the write lock).
--   It may go when it is older than ?2 and its job finished before ?2, or is gone. The walk
--   stops at the first window whose last event is not older than ?2 (ids follow time).
SELECT e.id, e."createdAt",
    (e."createdAt" < ?2 AND (j.id IS NULL
        OR (j.status IN ('complete', 'error') AND j."updatedAt" < ?2))) AS prunable
FROM (SELECT id, "jobId", "createdAt" FROM "visionJobEvents"
      WHERE id > ?1 ORDER BY id LIMIT ?3) AS e
LEFT JOIN "visionJobs" AS j ON j.id = e."jobId"
ORDER BY e.id;

-- name: delete_events --
-- Delete the events ?1 (JSON [id, …]) whose job is still finished before ?2, or gone.
--   Checked again: a job retried since events_window read it keeps its events.
DELETE FROM "visionJobEvents"
WHERE id IN (SELECT value FROM json_each(?1))
    AND id < (SELECT max(id) FROM "visionJobEvents")
    AND NOT EXISTS (
        SELECT 1 FROM "visionJobs" AS j WHERE j.id = "visionJobEvents"."jobId"
            AND (j.status NOT IN ('complete', 'error') OR j."updatedAt" >= ?2));

-- ==== schema check (storage/schemacheck.py, storage/migrate.py) ====

-- name: schema_triggers --
-- The triggers the database holds: name, definition, no separate function body.
--   Compared with storage/triggers.py's.
SELECT name, sql, NULL FROM sqlite_master WHERE sql LIKE 'CREATE TRIGGER%' ORDER BY name;

-- name: schema_partial_indexes --
-- The indexes with a WHERE condition, by name (the models' partial indexes).
SELECT name FROM sqlite_master
WHERE (sql LIKE 'CREATE INDEX%' OR sql LIKE 'CREATE UNIQUE INDEX%') AND sql LIKE '% WHERE %'
ORDER BY name;

-- === probes: /metrics and /readyz (storage.probes) ============================================

-- name: queue_depth --
-- The jobs not finished yet, by status, with the oldest one's creation time (a scrape of /metrics).
--   Finished statuses are left out: counting them would read the whole table (idx_status
--   serves the waiting and running ones); the completed/failed counters cover them.
SELECT status, COUNT(*) AS jobs, MIN("createdAt") AS oldest FROM "visionJobs"
WHERE status IN ('pending', 'gemini_analyzing', 'deepseek_generating')
GROUP BY status;

-- name: ping --
-- One round trip to the database (/readyz).
SELECT 1 AS ok;

-- === the workers table (storage.dashboard, pipeline.worker's heartbeat) =====================

-- name: worker_seen --
-- A worker's heartbeat: its row in visionWorkers written, or refreshed (running: jobs in flight).
INSERT INTO "visionWorkers" ("workerId", host, pid, "startedAt", "lastSeenAt", concurrency,
    running)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT ("workerId") DO UPDATE SET "lastSeenAt" = excluded."lastSeenAt",
    concurrency = excluded.concurrency, running = excluded.running;

-- name: forget_stale_workers --
-- The rows of workers not seen since ?1 (killed processes), deleted beside a heartbeat.
--   A handful of rows: no index needed.
DELETE FROM "visionWorkers" WHERE "lastSeenAt" < ?1;

-- name: forget_worker --
-- A worker stopping cleanly deletes its row.
DELETE FROM "visionWorkers" WHERE "workerId" = ?1;

-- name: list_workers --
-- Every worker process's row, by host and start (`vision-pipeline workers`, the dashboard).
SELECT "workerId", host, pid, "startedAt", "lastSeenAt", concurrency, running
FROM "visionWorkers" ORDER BY host, "startedAt", "workerId" LIMIT ?1;


-- === the dashboard (storage.dashboard, visionPipeline.admin.overview) ======================
-- Each read is a range of an index: the running jobs (idx_status, a handful), finished jobs
-- by when they finished (idx_finished, the last hour or 14 days of them; its condition is
-- repeated word for word, as SQLite uses a partial index only then).

-- name: dashboard_finished_per_bucket --
-- Jobs finished since ?1 per 5-minute bucket (0: the one starting at ?1): completed, failed.
--   A cancelled job (errorStage 'cancelled') is not counted as failed. 288 buckets a day.
SELECT CAST((julianday("updatedAt") - julianday(?1)) * 288 AS INTEGER) AS bucket,
    SUM(CASE WHEN status = 'complete' THEN 1 ELSE 0 END) AS completed,
    SUM(CASE WHEN status = 'error' AND COALESCE("errorStage", '') <> 'cancelled'
        THEN 1 ELSE 0 END) AS failed
FROM "visionJobs" WHERE status IN ('complete', 'error') AND "updatedAt" >= ?1
GROUP BY bucket;

-- name: dashboard_in_flight --
-- The running jobs, longest held first, at most ?1: stage, worker, attempt, when claimed.
--   And how much of the content has streamed in (partialContent's characters, NULL: none).
SELECT id AS "jobId", "userId", status, "lockedBy" AS "workerId", attempt, "lockedAt",
    length("partialContent") AS "streamedChars"
FROM "visionJobs" WHERE status IN ('gemini_analyzing', 'deepseek_generating')
ORDER BY "lockedAt", id LIMIT ?1;

-- name: dashboard_recent_failures --
-- The ?1 jobs that failed last (in error, not cancelled), newest first, with their message.
SELECT id AS "jobId", "userId", "errorStage", "errorMessage", "retryCount", "updatedAt"
FROM "visionJobs"
WHERE status IN ('complete', 'error') AND status = 'error'
    AND COALESCE("errorStage", '') <> 'cancelled'
ORDER BY "updatedAt" DESC, id DESC LIMIT ?1;

-- name: dashboard_spend_per_day --
-- What the jobs that finished from ?1 to before ?2 cost, per UTC day, newest day first.
--   Called for today alone, and for the days before (which a process keeps for a while).
SELECT date("updatedAt") AS day, COALESCE(SUM("costUsd"), 0) AS "costUsd", COUNT(*) AS jobs
FROM "visionJobs"
WHERE status IN ('complete', 'error') AND "updatedAt" >= ?1 AND "updatedAt" < ?2
GROUP BY day ORDER BY day DESC;


-- === the result cache (storage.stagecache, pipeline.cache) =================================
-- A stage's key is set only on a job whose provider answered it, so a hit always names the
-- job that paid, and the TTL counts from that answer. Served by idx_visionCacheKey /
-- idx_contentCacheKey (a key is a SHA-256: a few rows at most share one).

-- name: cache_vision_answer --
-- Stage 1: the newest stored vision analysis under key ?1, analysed at ?2 or later.
--   Only user ?3's jobs, unless ?3 is NULL (CACHE_SCOPE=global). The analysis stays once
--   stored, whatever became of its job's content stage.
SELECT id, "geminOutput" AS answer FROM "visionJobs"
WHERE "visionCacheKey" = ?1 AND "geminOutput" IS NOT NULL AND "geminAnalyzedAt" >= ?2
    AND (?3 IS NULL OR "userId" = ?3)
ORDER BY "geminAnalyzedAt" DESC, id DESC LIMIT 1;

-- name: cache_content_answer --
-- Stage 2: the newest completed job's content under key ?1, completed at ?2 or later.
--   Only user ?3's jobs, unless ?3 is NULL (CACHE_SCOPE=global).
SELECT id, "deepseekOutput" AS answer FROM "visionJobs"
WHERE "contentCacheKey" = ?1 AND status = 'complete' AND "completedAt" >= ?2
    AND (?3 IS NULL OR "userId" = ?3)
ORDER BY "completedAt" DESC, id DESC LIMIT 1;

-- name: dashboard_cache_hits --
-- Stage answers the result cache gave the attempts of the jobs finished at ?1 or later.
--   The dashboard's "cache hits today": a range of idx_finished, then each job's attempts.
SELECT COALESCE(SUM(CASE WHEN s."geminiCachedFrom" IS NOT NULL THEN 1 ELSE 0 END
        + CASE WHEN s."deepseekCachedFrom" IS NOT NULL THEN 1 ELSE 0 END), 0) AS hits
FROM "visionJobs" AS j JOIN "visionJobSessions" AS s ON s."jobId" = j.id
WHERE j.status IN ('complete', 'error') AND j."updatedAt" >= ?1;

-- === idempotency and budgets (storage.budgets, rpc.procedures.idempotency / budgets) =======

-- name: find_keyed_job --
-- createJob with an idempotencyKey: user ?1's job holding key ?2 (the unique partial index).
SELECT id, status, "idempotencyFingerprint" AS fingerprint, "createdAt"
FROM "visionJobs" WHERE "userId" = ?1 AND "idempotencyKey" = ?2;

-- name: clear_stale_key --
-- Before a keyed insert: user ?1's key ?2 let go when its job was created before ?3 (24 h).
UPDATE "visionJobs" SET "idempotencyKey" = NULL, "idempotencyFingerprint" = NULL
WHERE "userId" = ?1 AND "idempotencyKey" = ?2 AND "createdAt" < ?3;

-- name: insert_keyed_job --
-- createJob with an idempotencyKey (?10), its inputs' fingerprint (?11) and bypassCache (?12):
--   a new pending job,
--   or no row when the user holds the key already (a concurrent create: the index decides).
INSERT INTO "visionJobs" ("userId", "imageUrl", "imageContext", "analysisPurpose",
    "outputFormat", "creativityLevel", "additionalInstructions", status, progress,
    "retryCount", "maxRetries", "createdAt", "updatedAt", "runAfter", attempt,
    "cancelRequested", "costUsd", "idempotencyKey", "idempotencyFingerprint", "bypassCache")
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, 0, ?8, ?9, ?9, ?9, 0, FALSE, 0, ?10, ?11,
    ?12)
ON CONFLICT ("userId", "idempotencyKey") WHERE "idempotencyKey" IS NOT NULL DO NOTHING
RETURNING id;

-- name: clear_old_keys --
-- The housekeeping: the idempotencyKeys of jobs created before ?1, ?2 at most per statement.
UPDATE "visionJobs" SET "idempotencyKey" = NULL, "idempotencyFingerprint" = NULL
WHERE id IN (SELECT id FROM "visionJobs"
    WHERE "idempotencyKey" IS NOT NULL AND "createdAt" < ?1 ORDER BY "createdAt" LIMIT ?2);

-- name: user_spend_today --
-- The budget of user ?1: role, own budget, and their spend since ?4 (UTC midnight) when ?3,
--   or when a budget applies (theirs, else the default ?2; not 0; admins are not asked):
--   the cost of the attempts that ended since. Those are attempts of the user's jobs that
--   finished since (a job's last transition writes its updatedAt: idx_userId_updatedAt,
--   partial) or have not finished (idx_userId_status): a finished job's attempts all ended
--   by then, and only a retry, which makes it unfinished again, adds one.
SELECT u.role, u."dailyBudgetUsd" AS budget,
    CASE WHEN ?3 OR COALESCE(u."dailyBudgetUsd", ?2) > 0 THEN
        (SELECT COALESCE(SUM(s."costUsd"), 0) FROM "visionJobSessions" s
         WHERE s."endedAt" >= ?4 AND s."jobId" IN (
            SELECT id FROM "visionJobs" WHERE "userId" = u.id
                AND status IN ('complete', 'error') AND "updatedAt" >= ?4
            UNION ALL
            SELECT id FROM "visionJobs" WHERE "userId" = u.id
                AND status IN ('pending', 'gemini_analyzing', 'deepseek_generating')))
    END AS spent
FROM users u WHERE u.id = ?1;

-- name: set_user_budget --
-- `users set-budget`: user ?1's daily budget (NULL: the default, 0: none); no row if unknown.
UPDATE users SET "dailyBudgetUsd" = ?2, "updatedAt" = ?3 WHERE "openId" = ?1 RETURNING id;
