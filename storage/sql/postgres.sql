-- Every statement the queue and the API run on PostgreSQL, loaded once by storage/queries.py.
--
-- Each statement follows a "-- name: NAME --" line and a one-line "-- " description; further
-- comment lines say why. Paste any of them into psql as written ($1, $2 … are its parameters).
-- sqlite.sql names the same statements (tests/test_sql.py lists the few only one of them has).
--
-- Writes a worker makes to a job it runs are fenced: they match attempt (bumped by every
-- claim) and lockedBy, so a worker that lost its lease changes nothing. Batched writes take
-- their rows as one JSON parameter (json_to_recordset), whatever the batch size, so each is
-- one prepared statement. Statuses and progress values are storage/jobstate.py's.


-- === users ===================================================================================

-- name: upsert_user_seen --
-- First sight of an openId creates its user; a later sight refreshes lastSignedIn.
--   And name, when the session carries one. Returns the row's id and role.
INSERT INTO users ("openId", name, role, "createdAt", "updatedAt", "lastSignedIn")
VALUES ($1, $2, $3, $4, $4, $4)
ON CONFLICT ("openId") DO UPDATE SET "lastSignedIn" = excluded."lastSignedIn",
    name = COALESCE(excluded.name, users.name)
RETURNING id, role;

-- name: get_user --
-- The whole user row by id, for auth.me.
SELECT id, "openId", name, email, "loginMethod", role, "createdAt", "updatedAt", "lastSignedIn",
    "dailyBudgetUsd"
FROM users WHERE id = $1;

-- name: get_user_role --
-- A cached session's role read again; no row when the user is gone.
--   A role changed by any process reaches the session this way.
SELECT role FROM users WHERE id = $1;

-- name: set_user_role --
-- Make a user an admin (or back to user); creates the row when the openId is new.
INSERT INTO users ("openId", role, "createdAt", "updatedAt", "lastSignedIn")
VALUES ($1, $2, $3, $3, $3)
ON CONFLICT ("openId") DO UPDATE SET role = excluded.role, "updatedAt" = excluded."updatedAt"
RETURNING id;

-- name: touch_user --
-- A session's user seen again: refresh lastSignedIn; no row when the openId is new.
--   Also name when the session carries one, and role when $3 is set (the owner's re-promotion
--   to admin).
UPDATE users SET "lastSignedIn" = $4, name = COALESCE($2, name), role = COALESCE($3, role)
WHERE "openId" = $1 RETURNING id, role;

-- name: upsert_user_login --
-- A login (the template's upsertUser, TEMPLATE_FLOWS §1.7); returns the row's id and role.
--   Sets name, email, loginMethod and lastSignedIn; role $5 when set (the owner: admin, on
--   insert and update), else 'user' on insert and the kept role on update.
INSERT INTO users ("openId", name, email, "loginMethod", role, "createdAt", "updatedAt",
    "lastSignedIn")
VALUES ($1, $2, $3, $4, COALESCE($5, 'user'), $6, $6, $6)
ON CONFLICT ("openId") DO UPDATE SET name = excluded.name, email = excluded.email,
    "loginMethod" = excluded."loginMethod", role = COALESCE($5, users.role),
    "updatedAt" = excluded."updatedAt", "lastSignedIn" = excluded."lastSignedIn"
RETURNING id, role;


-- === jobs: the API side ======================================================================

-- name: insert_jobs --
-- createJob, the calls of one moment in one statement ($2: JSON rows): new pending jobs.
--   Eligible at once. Ids are drawn in row order, so the returned ids, sorted, match the rows.
INSERT INTO "visionJobs" ("userId", "imageUrl", "imageContext", "analysisPurpose",
    "outputFormat", "creativityLevel", "additionalInstructions", status, progress,
    "retryCount", "maxRetries", "createdAt", "updatedAt", "runAfter", attempt,
    "cancelRequested", "costUsd", "bypassCache")
SELECT v.owner, v.url, v.context, v.purpose, v.format, v.creativity, v.instructions,
    'pending', 0, 0, v.retries, $1, $1, $1, 0, FALSE, 0, v.bypass
FROM json_to_recordset($2::json) AS v(owner int, url text, context text, purpose text,
    format text, creativity float8, instructions text, retries int, bypass boolean)
WHERE TRUE
RETURNING id;

-- name: get_job_status --
-- getJobStatus: one job by id with its owner, so ownership is checked without a second query.
SELECT id, "userId", status, progress, "geminOutput", "deepseekOutput", "errorMessage",
    "errorStage", "retryCount", "createdAt", "completedAt", "costUsd"
FROM "visionJobs" WHERE id = $1;

-- name: list_user_jobs --
-- getJobHistory: a user's jobs, oldest first, served by the (userId, createdAt, id) index.
SELECT id, status, progress, "imageUrl", "analysisPurpose", "createdAt", "completedAt"
FROM "visionJobs" WHERE "userId" = $1 ORDER BY "createdAt", id LIMIT $2 OFFSET $3;


-- === jobs: the worker side ===================================================================

-- name: claim_jobs --
-- Take up to $4 waiting jobs whose runAfter has passed, round-robin over users, for worker $1.
--   Bumps the attempt (the fencing token), sets the lease, and moves each to the stage it
--   resumes at (a job whose vision output is stored resumes at the content stage). SKIP LOCKED
--   lets many workers claim side by side.
--   Fair (issue 17): ring walks the users with waiting jobs, two probes of idx_fair each (the
--   next user, and whether its first job is due: ok), from after user $5 (the store's
--   rotating cursor: the highest user id its last claim served), wrapping once, until it has
--   max(8, 2 x $4) users with an eligible job (users): a claim costs a few
--   probes per job it takes however many users wait, and the rotating start lets every user
--   into a window in turn. Each of those users offers its first eligible jobs in (runAfter, id)
--   order, the k-th ranked ceil(((jobs it runs now, busy) + k) / q), q = max(1, $4 / 4): the
--   turns are quanta of a quarter of the claim, so a claim of 16 takes four neighbouring jobs
--   of each of four users (a user's jobs are neighbours in the table: the claim and the stage
--   writes touch a few pages, not 16, bench/RESULTS.md §21), and a claim of up to 7 one job of
--   each. The lowest ranks win, ties by (runAfter, id). A user offers at most
--   max(q, $4 + 1 - (users in the window)) jobs: still $4 when alone, and enough that the
--   window offers $4 whenever it holds $4 (top: the best 3 x $4 before the rows are read and
--   locked). So a user with 10,000 waiting jobs does not delay another's single job past the
--   next claim, and each user's jobs keep their order.
--   Plans that hold whatever the statistics say (bench/RESULTS.md §21): the walk and the
--   candidates say "(status = 'pending') IS TRUE", idx_fair's own condition, which idx_status
--   cannot serve (with "status = 'pending'", statistics holding no waiting job, an ANALYZE of a
--   drained queue, made each probe read every waiting job through idx_status); the pick locks
--   the chosen rows by the ctid the candidates read, a TID scan (joined by id, a plan made
--   while the table was small read it whole): a row another claim holds is skipped, and
--   whatever PostgreSQL hands back for a row updated since the candidates read it, the claim
--   keeps only rows whose locked version is still pending and due (was, due). A probe of
--   one user's jobs asks for the first rows from that user on ("userId" >= u, in idx_fair's
--   order) and keeps that user's: with "userId" = u, a plan made before the statistics knew
--   of a backlog (a new table, one user's burst) read and sorted all of the user's waiting
--   jobs through idx_userId_status, twice per claim (bench/RESULTS.md §29).
WITH RECURSIVE ring(u, wrapped, ok, k) AS (
    SELECT s.u, s.wrapped, h.ok, 0
    FROM (SELECT COALESCE(a.nx, (SELECT "userId" FROM "visionJobs" WHERE (status = 'pending') IS TRUE
                ORDER BY "userId", "runAfter" LIMIT 1)) AS u, a.nx IS NULL AS wrapped
          FROM (SELECT (SELECT "userId" FROM "visionJobs" WHERE (status = 'pending') IS TRUE
                AND "userId" > $5 ORDER BY "userId", "runAfter" LIMIT 1) AS nx) AS a) AS s
    CROSS JOIN LATERAL (SELECT (SELECT "userId" = s.u AND "runAfter" <= $2 FROM "visionJobs"
            WHERE (status = 'pending') IS TRUE AND "userId" >= s.u
            ORDER BY "userId", "runAfter" LIMIT 1) AS ok OFFSET 0) AS h
    UNION ALL
    SELECT s.u, s.wrapped, h.ok, r.k + CASE WHEN r.ok THEN 1 ELSE 0 END
    FROM ring AS r CROSS JOIN LATERAL (
        SELECT COALESCE(a.nx, CASE WHEN NOT r.wrapped THEN (SELECT "userId" FROM "visionJobs"
                WHERE (status = 'pending') IS TRUE ORDER BY "userId", "runAfter" LIMIT 1) END) AS u,
            r.wrapped OR a.nx IS NULL AS wrapped
        FROM (SELECT (SELECT "userId" FROM "visionJobs" WHERE (status = 'pending') IS TRUE
                AND "userId" > r.u ORDER BY "userId", "runAfter" LIMIT 1) AS nx OFFSET 0) AS a
        ) AS s
    CROSS JOIN LATERAL (SELECT (SELECT "userId" = s.u AND "runAfter" <= $2 FROM "visionJobs"
            WHERE (status = 'pending') IS TRUE AND "userId" >= s.u
            ORDER BY "userId", "runAfter" LIMIT 1) AS ok OFFSET 0) AS h
    WHERE r.u IS NOT NULL AND NOT (r.wrapped AND r.u > $5) AND r.k < GREATEST(8, 2 * $4)),
users AS MATERIALIZED (
    SELECT r.u FROM ring AS r
    WHERE r.u IS NOT NULL AND NOT (r.wrapped AND r.u > $5) AND r.k < GREATEST(8, 2 * $4)
        AND r.ok),
busy AS (
    SELECT "userId" AS u, count(*) AS running FROM "visionJobs"
    WHERE status IN ('gemini_analyzing', 'deepseek_generating') GROUP BY "userId"),
cand AS (
    SELECT c.id, c.ctid, c."runAfter",
        (COALESCE(b.running, 0) + c.k + GREATEST(1, $4 / 4) - 1) / GREATEST(1, $4 / 4) AS rank
    FROM users AS w LEFT JOIN busy AS b ON b.u = w.u CROSS JOIN LATERAL (
        SELECT h.id, h.ctid, h."runAfter", row_number() OVER (ORDER BY h."runAfter", h.id) AS k
        FROM (SELECT id, ctid, "userId", "runAfter" FROM "visionJobs"
              WHERE (status = 'pending') IS TRUE AND "userId" >= w.u
              ORDER BY "userId", "runAfter", id
              LIMIT GREATEST(1, $4 / 4, $4 + 1 - (SELECT count(*) FROM users))) AS h
        WHERE h."userId" = w.u AND h."runAfter" <= $2) AS c),
top AS (
    SELECT id, ctid, rank, "runAfter" FROM cand ORDER BY rank, "runAfter", id LIMIT 3 * $4),
picked AS (
    SELECT j.id, j.status AS was, j."runAfter" AS due
    FROM top JOIN "visionJobs" AS j ON j.ctid = top.ctid
    ORDER BY top.rank, top."runAfter", top.id LIMIT $4
    FOR UPDATE OF j SKIP LOCKED),
claimed AS (
    UPDATE "visionJobs" AS j SET
        status = CASE WHEN j."geminOutput" IS NULL THEN 'gemini_analyzing'
                      ELSE 'deepseek_generating' END,
        progress = CASE WHEN j."geminOutput" IS NULL THEN 25 ELSE 60 END,
        attempt = j.attempt + 1, "lockedBy" = $1, "lockedAt" = $2,
        "leaseExpiresAt" = $3, "updatedAt" = $2
    FROM picked WHERE j.id = picked.id AND picked.was = 'pending' AND picked.due <= $2
    RETURNING j.id, "userId", "imageUrl", "imageContext", "analysisPurpose", "outputFormat",
        "creativityLevel", "additionalInstructions", status, "geminOutput", "retryCount",
        "maxRetries", attempt, "lockedAt", "bypassCache")
SELECT * FROM claimed;

-- name: next_run_after --
-- When the earliest waiting job becomes eligible, so an idle worker sleeps exactly that long.
SELECT MIN("runAfter") AS next FROM "visionJobs" WHERE status = 'pending';

-- name: store_vision_outputs --
-- Stage boundary (fenced, a batch): keep each vision analysis, move to the content stage.
--   A retry of the content stage then does not pay for the vision stage again. $2: JSON rows
--   {id, attempt, worker, output, key: its cache key, NULL for a cached answer}. Returns the
--   rows still held, with whether a cancel was requested meanwhile.
UPDATE "visionJobs" AS j SET status = 'deepseek_generating', progress = 60,
    "geminOutput" = v.output, "geminAnalyzedAt" = $1, "updatedAt" = $1,
    "visionCacheKey" = v.key
FROM json_to_recordset($2::json) AS v(id bigint, attempt int, worker text, output text,
    key text)
WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
    AND j.status IN ('gemini_analyzing', 'deepseek_generating')
RETURNING j.id, j.attempt, j."cancelRequested";

-- name: store_partial_contents --
-- The content stage's answers so far (fenced, a batch): each running attempt's streamed text.
--   Written at a bounded pace (pipeline.streaming); the triggers copy it into an event. Only an
--   attempt still holding its job at the content stage writes: a stale worker's text, or one
--   arriving after its completion, changes nothing. $2: JSON rows {id, attempt, worker,
--   content}. Returns the rows written.
UPDATE "visionJobs" AS j SET "partialContent" = v.content, "updatedAt" = $1
FROM json_to_recordset($2::json) AS v(id bigint, attempt int, worker text, content text)
WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
    AND j.status = 'deepseek_generating'
RETURNING j.id, j.attempt;

-- name: complete_jobs --
-- Completion (fenced, a batch), with the outputs and attempt rows, in one statement.
--   Stores the content, marks complete, drops the lease, clears the message of earlier failed
--   attempts (they stay in visionJobSessions), adds the attempt's cost. A job whose cancel was
--   requested does not complete: the caller then records the cancel. $2: JSON rows {id,
--   attempt, worker, content, cost, the outputs columns, the attempt's fields}. Data-modifying
--   CTEs write the completed jobs' visionJobOutputs and visionJobSessions rows: one round trip.
WITH v AS (
    SELECT * FROM json_to_recordset($2::json) AS v(id bigint, attempt int, content text,
        colors_primary text, colors_secondary text, colors_description text, mood text,
        tone text, composition_layout text, brand_personality text, perceived_industry text,
        target_audience text, content_pieces text, worker text, stage text, outcome text,
        error text, vision_model text, vision_in int, vision_out int, vision_ms int,
        content_model text, content_in int, content_out int, content_ms int, cost float8,
        vision_from bigint, content_from bigint, content_key text)),
done AS (
    UPDATE "visionJobs" AS j SET status = 'complete', progress = 100,
        "deepseekOutput" = v.content, "deepseekGeneratedAt" = $1, "completedAt" = $1,
        "updatedAt" = $1, "errorMessage" = NULL, "errorStage" = NULL, "lockedBy" = NULL,
        "leaseExpiresAt" = NULL, "costUsd" = j."costUsd" + v.cost, "partialContent" = NULL,
        "contentCacheKey" = v.content_key
    FROM v WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
        AND j.status IN ('gemini_analyzing', 'deepseek_generating') AND NOT j."cancelRequested"
    RETURNING j.id, j.attempt, j."userId", j."lockedAt"),
outputs AS (
    INSERT INTO "visionJobOutputs" ("jobId", "userId", colors_primary, colors_secondary,
        colors_description, mood, tone, composition_layout, brand_personality,
        perceived_industry, target_audience, content_pieces, "isTrainingData", "createdAt")
    SELECT d.id, d."userId", v.colors_primary, v.colors_secondary, v.colors_description,
        v.mood, v.tone, v.composition_layout, v.brand_personality, v.perceived_industry,
        v.target_audience, v.content_pieces, TRUE, $1
    FROM done AS d JOIN v ON v.id = d.id AND v.attempt = d.attempt
    ON CONFLICT ("jobId") DO NOTHING),
attempts AS (
    INSERT INTO "visionJobSessions" ("jobId", attempt, "workerId", "stageReached", outcome,
        "errorMessage", "startedAt", "endedAt", "geminiModel", "geminiInputTokens",
        "geminiOutputTokens", "geminiLatencyMs", "deepseekModel", "deepseekInputTokens",
        "deepseekOutputTokens", "deepseekLatencyMs", "costUsd", "geminiCachedFrom",
        "deepseekCachedFrom")
    SELECT d.id, d.attempt, v.worker, v.stage, v.outcome, v.error, d."lockedAt", $1,
        v.vision_model, v.vision_in, v.vision_out, v.vision_ms, v.content_model, v.content_in,
        v.content_out, v.content_ms, v.cost, v.vision_from, v.content_from
    FROM done AS d JOIN v ON v.id = d.id AND v.attempt = d.attempt)
SELECT id, attempt, "userId" FROM done;

-- name: complete_and_claim --
-- complete_jobs, and in the same statement claim up to $5 waiting jobs for worker $3.
--   Leased until $4: the slots the completions free are refilled without a round trip of their
--   own (bench/RESULTS.md: the instant-throughput benchmark needs it). Rows: the completed
--   (id, attempt, userId), then one row per claimed job with its columns as JSON in claimed.
--   The claim is claim_jobs's, round-robin over users from after user $6 (the cursor).
WITH RECURSIVE v AS (
    SELECT * FROM json_to_recordset($2::json) AS v(id bigint, attempt int, content text,
        colors_primary text, colors_secondary text, colors_description text, mood text,
        tone text, composition_layout text, brand_personality text, perceived_industry text,
        target_audience text, content_pieces text, worker text, stage text, outcome text,
        error text, vision_model text, vision_in int, vision_out int, vision_ms int,
        content_model text, content_in int, content_out int, content_ms int, cost float8,
        vision_from bigint, content_from bigint, content_key text)),
done AS (
    UPDATE "visionJobs" AS j SET status = 'complete', progress = 100,
        "deepseekOutput" = v.content, "deepseekGeneratedAt" = $1, "completedAt" = $1,
        "updatedAt" = $1, "errorMessage" = NULL, "errorStage" = NULL, "lockedBy" = NULL,
        "leaseExpiresAt" = NULL, "costUsd" = j."costUsd" + v.cost, "partialContent" = NULL,
        "contentCacheKey" = v.content_key
    FROM v WHERE j.id = v.id AND j.attempt = v.attempt AND j."lockedBy" = v.worker
        AND j.status IN ('gemini_analyzing', 'deepseek_generating') AND NOT j."cancelRequested"
    RETURNING j.id, j.attempt, j."userId", j."lockedAt"),
outputs AS (
    INSERT INTO "visionJobOutputs" ("jobId", "userId", colors_primary, colors_secondary,
        colors_description, mood, tone, composition_layout, brand_personality,
        perceived_industry, target_audience, content_pieces, "isTrainingData", "createdAt")
    SELECT d.id, d."userId", v.colors_primary, v.colors_secondary, v.colors_description,
        v.mood, v.tone, v.composition_layout, v.brand_personality, v.perceived_industry,
        v.target_audience, v.content_pieces, TRUE, $1
    FROM done AS d JOIN v ON v.id = d.id AND v.attempt = d.attempt
    ON CONFLICT ("jobId") DO NOTHING),
attempts AS (
    INSERT INTO "visionJobSessions" ("jobId", attempt, "workerId", "stageReached", outcome,
        "errorMessage", "startedAt", "endedAt", "geminiModel", "geminiInputTokens",
        "geminiOutputTokens", "geminiLatencyMs", "deepseekModel", "deepseekInputTokens",
        "deepseekOutputTokens", "deepseekLatencyMs", "costUsd", "geminiCachedFrom",
        "deepseekCachedFrom")
    SELECT d.id, d.attempt, v.worker, v.stage, v.outcome, v.error, d."lockedAt", $1,
        v.vision_model, v.vision_in, v.vision_out, v.vision_ms, v.content_model, v.content_in,
        v.content_out, v.content_ms, v.cost, v.vision_from, v.content_from
    FROM done AS d JOIN v ON v.id = d.id AND v.attempt = d.attempt),
ring(u, wrapped, ok, k) AS (
    SELECT s.u, s.wrapped, h.ok, 0
    FROM (SELECT COALESCE(a.nx, (SELECT "userId" FROM "visionJobs" WHERE (status = 'pending') IS TRUE
                ORDER BY "userId", "runAfter" LIMIT 1)) AS u, a.nx IS NULL AS wrapped
          FROM (SELECT (SELECT "userId" FROM "visionJobs" WHERE (status = 'pending') IS TRUE
                AND "userId" > $6 ORDER BY "userId", "runAfter" LIMIT 1) AS nx) AS a) AS s
    CROSS JOIN LATERAL (SELECT (SELECT "userId" = s.u AND "runAfter" <= $1 FROM "visionJobs"
            WHERE (status = 'pending') IS TRUE AND "userId" >= s.u
            ORDER BY "userId", "runAfter" LIMIT 1) AS ok OFFSET 0) AS h
    UNION ALL
    SELECT s.u, s.wrapped, h.ok, r.k + CASE WHEN r.ok THEN 1 ELSE 0 END
    FROM ring AS r CROSS JOIN LATERAL (
        SELECT COALESCE(a.nx, CASE WHEN NOT r.wrapped THEN (SELECT "userId" FROM "visionJobs"
                WHERE (status = 'pending') IS TRUE ORDER BY "userId", "runAfter" LIMIT 1) END) AS u,
            r.wrapped OR a.nx IS NULL AS wrapped
        FROM (SELECT (SELECT "userId" FROM "visionJobs" WHERE (status = 'pending') IS TRUE
                AND "userId" > r.u ORDER BY "userId", "runAfter" LIMIT 1) AS nx OFFSET 0) AS a
        ) AS s
    CROSS JOIN LATERAL (SELECT (SELECT "userId" = s.u AND "runAfter" <= $1 FROM "visionJobs"
            WHERE (status = 'pending') IS TRUE AND "userId" >= s.u
            ORDER BY "userId", "runAfter" LIMIT 1) AS ok OFFSET 0) AS h
    WHERE r.u IS NOT NULL AND NOT (r.wrapped AND r.u > $6) AND r.k < GREATEST(8, 2 * $5)),
users AS MATERIALIZED (
    SELECT r.u FROM ring AS r
    WHERE r.u IS NOT NULL AND NOT (r.wrapped AND r.u > $6) AND r.k < GREATEST(8, 2 * $5)
        AND r.ok),
busy AS (
    SELECT "userId" AS u, count(*) AS running FROM "visionJobs"
    WHERE status IN ('gemini_analyzing', 'deepseek_generating') GROUP BY "userId"),
cand AS (
    SELECT c.id, c.ctid, c."runAfter",
        (COALESCE(b.running, 0) + c.k + GREATEST(1, $5 / 4) - 1) / GREATEST(1, $5 / 4) AS rank
    FROM users AS w LEFT JOIN busy AS b ON b.u = w.u CROSS JOIN LATERAL (
        SELECT h.id, h.ctid, h."runAfter", row_number() OVER (ORDER BY h."runAfter", h.id) AS k
        FROM (SELECT id, ctid, "userId", "runAfter" FROM "visionJobs"
              WHERE (status = 'pending') IS TRUE AND "userId" >= w.u
              ORDER BY "userId", "runAfter", id
              LIMIT GREATEST(1, $5 / 4, $5 + 1 - (SELECT count(*) FROM users))) AS h
        WHERE h."userId" = w.u AND h."runAfter" <= $1) AS c),
top AS (
    SELECT id, ctid, rank, "runAfter" FROM cand ORDER BY rank, "runAfter", id LIMIT 3 * $5),
picked AS (
    SELECT j.id, j.status AS was, j."runAfter" AS due
    FROM top JOIN "visionJobs" AS j ON j.ctid = top.ctid
    ORDER BY top.rank, top."runAfter", top.id LIMIT $5
    FOR UPDATE OF j SKIP LOCKED),
claimed AS (
    UPDATE "visionJobs" AS j SET
        status = CASE WHEN j."geminOutput" IS NULL THEN 'gemini_analyzing'
                      ELSE 'deepseek_generating' END,
        progress = CASE WHEN j."geminOutput" IS NULL THEN 25 ELSE 60 END,
        attempt = j.attempt + 1, "lockedBy" = $3, "lockedAt" = $1,
        "leaseExpiresAt" = $4, "updatedAt" = $1
    FROM picked WHERE j.id = picked.id AND picked.was = 'pending' AND picked.due <= $1
    RETURNING j.id, "userId", "imageUrl", "imageContext", "analysisPurpose", "outputFormat",
        "creativityLevel", "additionalInstructions", status, "geminOutput", "retryCount",
        "maxRetries", attempt, "lockedAt", "bypassCache")
SELECT id, attempt, "userId", NULL::json AS claimed FROM done
UNION ALL
SELECT NULL, NULL, NULL, row_to_json(c) FROM claimed AS c;

-- name: retry_job --
-- A failed attempt that may succeed later (fenced): back to pending, not before $4.
--   errorMessage $5 names the failed stage and the attempt count.
UPDATE "visionJobs" SET status = 'pending', progress = 0, "retryCount" = "retryCount" + 1,
    "runAfter" = $4, "errorMessage" = $5, "errorStage" = $6, "updatedAt" = $7,
    "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + $8,
    "partialContent" = NULL
WHERE id = $1 AND attempt = $2 AND "lockedBy" = $3
    AND status IN ('gemini_analyzing', 'deepseek_generating');

-- name: fail_job --
-- A failed attempt that ends the job (fenced): error is final.
--   retryCount counts the failed attempt only when $7 is true (a cancel is not a failure).
UPDATE "visionJobs" SET status = 'error', progress = 0,
    "retryCount" = "retryCount" + CASE WHEN $7 THEN 1 ELSE 0 END,
    "errorMessage" = $4, "errorStage" = $5, "updatedAt" = $6,
    "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + $8,
    "partialContent" = NULL
WHERE id = $1 AND attempt = $2 AND "lockedBy" = $3
    AND status IN ('gemini_analyzing', 'deepseek_generating');

-- name: release_job --
-- Graceful shutdown (fenced): a running job back to the queue at once, not counted as failed.
--   It resumes at the stage it reached.
UPDATE "visionJobs" SET status = 'pending', progress = 0, "runAfter" = $4,
    "updatedAt" = $4, "lockedBy" = NULL, "leaseExpiresAt" = NULL, "costUsd" = "costUsd" + $5,
    "partialContent" = NULL
WHERE id = $1 AND attempt = $2 AND "lockedBy" = $3
    AND status IN ('gemini_analyzing', 'deepseek_generating');

-- name: renew_leases --
-- Heartbeat: extend the leases of the attempts worker $1 runs ($3: JSON [[id, attempt], …]).
--   Only those: a job it holds but no longer works on must expire and be reaped. The returned
--   rows are the attempts it still owns; any other was taken from it.
UPDATE "visionJobs" SET "leaseExpiresAt" = $2
WHERE "lockedBy" = $1 AND status IN ('gemini_analyzing', 'deepseek_generating')
    AND (id, attempt) IN (SELECT (e->>0)::bigint, (e->>1)::int
                          FROM jsonb_array_elements($3::jsonb) AS e)
RETURNING id, attempt, "cancelRequested";

-- name: find_expired_leases --
-- Reaper: running jobs whose holder stopped renewing its lease (killed, frozen, cut off).
--   Locked for the reaping transaction; another reaper skips them.
SELECT id, attempt, "lockedBy", "lockedAt", status, "retryCount", "maxRetries"
FROM "visionJobs"
WHERE status IN ('gemini_analyzing', 'deepseek_generating') AND "leaseExpiresAt" < $1
ORDER BY "leaseExpiresAt" LIMIT 100 FOR UPDATE SKIP LOCKED;

-- name: insert_attempt --
-- One row per processing attempt, written when the attempt ends: the job's audit trail.
INSERT INTO "visionJobSessions" ("jobId", attempt, "workerId", "stageReached", outcome,
    "errorMessage", "startedAt", "endedAt", "geminiModel", "geminiInputTokens",
    "geminiOutputTokens", "geminiLatencyMs", "deepseekModel", "deepseekInputTokens",
    "deepseekOutputTokens", "deepseekLatencyMs", "costUsd", "geminiCachedFrom",
    "deepseekCachedFrom")
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
    $19);


-- === operators ===============================================================================

-- name: retry_failed_job --
-- `jobs retry ID`: an error job back to pending with its retries reset; its id if it was.
UPDATE "visionJobs" SET status = 'pending', progress = 0, "retryCount" = 0,
    "errorMessage" = NULL, "errorStage" = NULL, "cancelRequested" = FALSE,
    "runAfter" = $2, "updatedAt" = $2
WHERE id = $1 AND status = 'error' RETURNING id;

-- name: cancel_pending_job --
-- `jobs cancel ID` on a waiting job: it ends at once as error/cancelled.
UPDATE "visionJobs" SET status = 'error', progress = 0, "errorStage" = 'cancelled',
    "errorMessage" = 'Cancelled by an operator', "cancelRequested" = TRUE, "updatedAt" = $2
WHERE id = $1 AND status = 'pending' RETURNING id;

-- name: request_cancel --
-- `jobs cancel ID` on a running job: flag it; its worker stops at the next stage boundary.
UPDATE "visionJobs" SET "cancelRequested" = TRUE, "updatedAt" = $2
WHERE id = $1 AND status IN ('gemini_analyzing', 'deepseek_generating') RETURNING id;

-- name: count_by_status --
-- How many jobs are in each status (operators, tests, benchmarks).
SELECT status, COUNT(*) AS n FROM "visionJobs" GROUP BY status;


-- === quotas (rpc.procedures.quotas) =====================================================================

-- name: user_quota_counts --
-- createJob's quota check in one round trip: recent jobs, the oldest of them, unfinished jobs.
--   The user's jobs created since $2 (counted up to $3), the oldest one's createdAt, and the
--   user's unfinished jobs (counted up to $4). Each count is a range of the (userId,
--   createdAt, id) or (userId, status) index, cut at the limit.
SELECT
    (SELECT COUNT(*) FROM (SELECT 1 FROM "visionJobs"
        WHERE "userId" = $1 AND "createdAt" >= $2 LIMIT $3) AS r) AS recent,
    (SELECT MIN("createdAt") FROM "visionJobs"
        WHERE "userId" = $1 AND "createdAt" >= $2) AS oldest,
    (SELECT COUNT(*) FROM (SELECT 1 FROM "visionJobs"
        WHERE "userId" = $1
            AND status IN ('pending', 'gemini_analyzing', 'deepseek_generating')
        LIMIT $4) AS w) AS waiting;

-- name: count_waiting_jobs --
-- How many jobs wait to be claimed, counted up to $1 (the global cap).
--   A scan of the partial index of pending jobs that stops at the cap.
SELECT COUNT(*) AS n FROM (SELECT 1 FROM "visionJobs" WHERE status = 'pending' LIMIT $1) AS w;


-- === the change feed (live progress, cross-process wake-up) ==================================

-- name: last_event_id --
-- The change counter: the newest event's id.
SELECT COALESCE(MAX(id), 0) AS last FROM "visionJobEvents";

-- name: events_after --
-- Every job change after event $1, oldest first, at most $2: what a listener missed.
SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt",
    "partialContent"
FROM "visionJobEvents" WHERE id > $1 ORDER BY id LIMIT $2;

-- name: job_events_after --
-- One job's changes after event $2 (a reconnecting subscriber resumes from its last id).
SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt",
    "partialContent"
FROM "visionJobEvents" WHERE "jobId" = $1 AND id > $2 ORDER BY id LIMIT $3;

-- name: user_events_after --
-- A user's job changes after event $2 (onMyJobs resuming).
SELECT id, "jobId", "userId", status, progress, "errorMessage", "createdAt",
    "partialContent"
FROM "visionJobEvents" WHERE "userId" = $1 AND id > $2 ORDER BY id LIMIT $3;

-- name: analysed_before_event --
-- Whether job $1's image analysis existed before event $2: an earlier event of the job at
--   the content stage or complete (the stage boundary writes the analysis with that status).
--   A replayed event shows the analysis only from then on; served by idx_events_jobId.
SELECT EXISTS (SELECT 1 FROM "visionJobEvents" WHERE "jobId" = $1 AND id < $2
    AND status IN ('deepseek_generating', 'complete')) AS analysed;


-- === the image store (storage.images) ========================================================

-- name: insert_image --
-- Store an image for user $1 under its SHA-256 $2; a user who has it keeps their row.
INSERT INTO "visionImages" ("userId", sha256, "mimeType", "byteSize", width, height, data,
    "createdAt")
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ("userId", sha256) DO NOTHING;

-- name: stored_image_bytes --
-- The bytes of user $1's stored images, and whether they have image $2 already (uploadImage).
SELECT COALESCE(SUM("byteSize"), 0) AS total, COALESCE(bool_or(sha256 = $2), FALSE) AS has
FROM "visionImages" WHERE "userId" = $1;

-- name: touch_image --
-- An upload of the image $2 user $1 has: its createdAt becomes $3.
--   The unused upload's retention (UPLOAD_RETENTION_HOURS) starts again from this upload.
UPDATE "visionImages" SET "createdAt" = $3 WHERE "userId" = $1 AND sha256 = $2;

-- name: hold_image --
-- Whether user $1 has the image $2, share-locked until the transaction ends.
--   The job about to refer to it commits before the deletion trigger (which locks the image
--   FOR UPDATE first) can decide that no job uses it.
SELECT id FROM "visionImages" WHERE "userId" = $1 AND sha256 = $2 FOR SHARE;

-- name: get_image --
-- User $1's image $2 with its bytes (GET /api/images/…, and the worker reading a job's).
SELECT "userId", sha256, "mimeType", "byteSize", width, height, data
FROM "visionImages" WHERE "userId" = $1 AND sha256 = $2;

-- name: get_image_info --
-- User $1's image $2 without its bytes (HEAD, and a GET the client has cached: 304).
SELECT "userId", sha256, "mimeType", "byteSize", width, height, NULL AS data
FROM "visionImages" WHERE "userId" = $1 AND sha256 = $2;

-- name: get_any_image --
-- The image $1 whichever user stored it (an admin's GET), with its bytes.
--   The same bytes whoever's row it is.
SELECT "userId", sha256, "mimeType", "byteSize", width, height, data
FROM "visionImages" WHERE sha256 = $1 ORDER BY id LIMIT 1;

-- name: get_any_image_info --
-- get_any_image without the bytes.
SELECT "userId", sha256, "mimeType", "byteSize", width, height, NULL AS data
FROM "visionImages" WHERE sha256 = $1 ORDER BY id LIMIT 1;

-- name: next_inline_image_job --
-- The conversion of older rows: the next job after id $1 still holding a whole data: URL.
--   Served by the partial index idx_inline_image_jobs (the condition is its, word for word),
--   locked; a job another process is converting is skipped (SKIP LOCKED), so processes
--   starting together share the work.
SELECT id, "userId", "imageUrl" FROM "visionJobs"
WHERE lower(substr("imageUrl", 1, 5)) = 'data:' AND id > $1
ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;

-- name: set_inline_image_url --
-- The conversion: job $1's data: URL replaced by its stored image's path $2.
--   Or by the invalid-image marker. Only while it still holds a data: URL, so running it twice
--   changes nothing; updatedAt is kept (the job itself did not change).
UPDATE "visionJobs" SET "imageUrl" = $2
WHERE id = $1 AND lower(substr("imageUrl", 1, 5)) = 'data:';


-- === operators' commands (storage.operators, `vision-pipeline jobs …` / `users …`) ===========
--
-- The job filters: $1 a JSON array of statuses, $2 an openId, $3 a createdAt lower bound; a
-- NULL filter matches every job. Pages are keyset (id > after ORDER BY id LIMIT n), so a read
-- of a million jobs holds one page at a time and never rescans what it passed.

-- name: operator_list_jobs --
-- `jobs list`: the newest $4 jobs matching the filters, with their owner's openId.
SELECT j.id, u."openId", j.status, j.progress, j."retryCount", j."errorStage", j."costUsd",
    j."createdAt", j."completedAt", j."updatedAt"
FROM "visionJobs" j LEFT JOIN users u ON u.id = j."userId"
WHERE ($1::jsonb IS NULL OR j.status IN (SELECT jsonb_array_elements_text($1::jsonb)))
    AND ($2::text IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = $2))
    AND ($3::timestamptz IS NULL OR j."createdAt" >= $3)
ORDER BY j.id DESC LIMIT $4;

-- name: operator_count_jobs --
-- How many jobs match the filters (a retry or cancel by filter; the export's progress bar).
SELECT COUNT(*) AS n FROM "visionJobs" j
WHERE ($1::jsonb IS NULL OR j.status IN (SELECT jsonb_array_elements_text($1::jsonb)))
    AND ($2::text IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = $2))
    AND ($3::timestamptz IS NULL OR j."createdAt" >= $3);

-- name: operator_job_ids_page --
-- The next $5 ids after $4 of the jobs matching the filters (a retry or cancel by filter).
SELECT j.id FROM "visionJobs" j
WHERE ($1::jsonb IS NULL OR j.status IN (SELECT jsonb_array_elements_text($1::jsonb)))
    AND ($2::text IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = $2))
    AND ($3::timestamptz IS NULL OR j."createdAt" >= $3)
    AND j.id > $4
ORDER BY j.id LIMIT $5;

-- name: operator_export_page --
-- `jobs export`: the next $5 jobs after id $4 matching the filters, with inputs and outputs.
--   The tokens are the sums over the job's attempts (visionJobSessions, by its jobId index).
SELECT j.id, u."openId", j.status, j."createdAt", j."completedAt", j."imageUrl",
    j."imageContext", j."analysisPurpose", j."outputFormat", j."creativityLevel",
    j."additionalInstructions", j."geminOutput", j."deepseekOutput", j."retryCount",
    j."costUsd", o.colors_primary, o.colors_secondary, o.colors_description, o.mood, o.tone,
    o.composition_layout, o.brand_personality, o.perceived_industry, o.target_audience,
    o.content_pieces, o."isTrainingData",
    COALESCE(t.gemini_in, 0) AS "geminiInputTokens",
    COALESCE(t.gemini_out, 0) AS "geminiOutputTokens",
    COALESCE(t.deepseek_in, 0) AS "deepseekInputTokens",
    COALESCE(t.deepseek_out, 0) AS "deepseekOutputTokens"
FROM "visionJobs" j
LEFT JOIN users u ON u.id = j."userId"
LEFT JOIN "visionJobOutputs" o ON o."jobId" = j.id
LEFT JOIN LATERAL (
    SELECT SUM(s."geminiInputTokens") AS gemini_in, SUM(s."geminiOutputTokens") AS gemini_out,
        SUM(s."deepseekInputTokens") AS deepseek_in,
        SUM(s."deepseekOutputTokens") AS deepseek_out
    FROM "visionJobSessions" s WHERE s."jobId" = j.id) t ON TRUE
WHERE ($1::jsonb IS NULL OR j.status IN (SELECT jsonb_array_elements_text($1::jsonb)))
    AND ($2::text IS NULL OR j."userId" = (SELECT id FROM users WHERE "openId" = $2))
    AND ($3::timestamptz IS NULL OR j."createdAt" >= $3)
    AND j.id > $4
ORDER BY j.id LIMIT $5;

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
FROM "visionJobs" j LEFT JOIN users u ON u.id = j."userId" WHERE j.id = $1;

-- name: operator_job_attempts --
-- `jobs show`: the job's attempts in order (visionJobSessions).
SELECT attempt, "workerId", "stageReached", outcome, "errorMessage", "startedAt", "endedAt",
    "geminiModel", "geminiInputTokens", "geminiOutputTokens", "geminiLatencyMs",
    "deepseekModel", "deepseekInputTokens", "deepseekOutputTokens", "deepseekLatencyMs",
    "costUsd", "geminiCachedFrom", "deepseekCachedFrom"
FROM "visionJobSessions" WHERE "jobId" = $1 ORDER BY attempt, id;

-- name: operator_job_events --
-- `jobs show`: the job's first $2 events (visionJobEvents) in order.
SELECT id, status, progress, "errorMessage", "createdAt"
FROM "visionJobEvents" WHERE "jobId" = $1 ORDER BY id LIMIT $2;

-- name: operator_job_states --
-- The status of each job among the ids $1 (a JSON array): which exist, and in what state.
SELECT id, status FROM "visionJobs"
WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::int);

-- name: operator_waiting_by_user --
-- `jobs stats`: the $1 users with the most waiting jobs, with their openId and running jobs.
--   The fair claim takes turns between these users (issue 17); idx_fair, the waiting jobs by
--   user, is counted alone.
SELECT w."userId", u."openId", w.waiting,
    (SELECT COUNT(*) FROM "visionJobs" AS r WHERE r."userId" = w."userId"
        AND r.status IN ('gemini_analyzing', 'deepseek_generating')) AS running
FROM (SELECT "userId", COUNT(*) AS waiting FROM "visionJobs" WHERE status = 'pending'
      GROUP BY "userId" ORDER BY waiting DESC, "userId" LIMIT $1) AS w
LEFT JOIN users AS u ON u.id = w."userId"
ORDER BY w.waiting DESC, w."userId";

-- name: operator_oldest_pending --
-- `jobs stats`: when the oldest waiting job was created (NULL: none waits).
--   The partial index of pending jobs holds only them.
SELECT MIN("createdAt") AS oldest FROM "visionJobs" WHERE status = 'pending';

-- name: operator_window_completions --
-- `jobs stats`: how many jobs completed since $1.
SELECT COUNT(*) AS n FROM "visionJobs" WHERE status = 'complete' AND "completedAt" >= $1;

-- name: operator_completion_time_at --
-- `jobs stats`: the time-to-complete (createdAt to completedAt, seconds) of rank $2 since $1.
--   Ranks count from 0 in ascending order: the percentiles are nearest-rank, computed in the
--   database (a sort there, one row back), so the command's memory does not grow with jobs.
SELECT EXTRACT(EPOCH FROM ("completedAt" - "createdAt"))::float8 AS seconds
FROM "visionJobs" WHERE status = 'complete' AND "completedAt" >= $1
ORDER BY seconds LIMIT 1 OFFSET $2;

-- name: operator_failures_by_stage --
-- `jobs stats`: jobs that ended in error since $1, by the stage they failed at.
SELECT "errorStage" AS stage, COUNT(*) AS n FROM "visionJobs"
WHERE status = 'error' AND "updatedAt" >= $1 GROUP BY "errorStage" ORDER BY "errorStage";

-- name: operator_cost_since --
-- `jobs stats`: the cost of the jobs created since $1 (today), $2 (7 days), $3 (30 days).
--   $3 is the earliest; the createdAt index bounds the scan to it.
SELECT COALESCE(SUM(CASE WHEN "createdAt" >= $1 THEN "costUsd" ELSE 0 END), 0) AS today,
    COALESCE(SUM(CASE WHEN "createdAt" >= $2 THEN "costUsd" ELSE 0 END), 0) AS week,
    COALESCE(SUM("costUsd"), 0) AS month
FROM "visionJobs" WHERE "createdAt" >= $3;

-- name: operator_list_users --
-- `users list`: the first $1 users by id, with how many jobs each has and their budget.
SELECT u.id, u."openId", u.name, u.email, u.role, u."createdAt", u."lastSignedIn",
    (SELECT COUNT(*) FROM "visionJobs" j WHERE j."userId" = u.id) AS jobs,
    u."dailyBudgetUsd"
FROM users u ORDER BY u.id LIMIT $1;

-- name: operator_change_user_role --
-- `users set-role` of a known user: the new role; no row when the openId is unknown.
UPDATE users SET role = $2, "updatedAt" = $3 WHERE "openId" = $1 RETURNING id;

-- ==== retention (storage.retention, pipeline.retention, `jobs prune`) ========================
-- Bounded batches: each statement touches at most $2 jobs or $3 events, so no statement holds
-- its row locks long and the workers' writes go on between batches.

-- name: prune_finished_jobs --
-- Delete up to $2 finished jobs (complete, error) last updated before $1; returns their ids.
--   "Older" is updatedAt, the moment the job finished. Found through idx_createdAt (a job
--   finished before $1 was created before it), so only old jobs are read; SKIP LOCKED: a row
--   someone is changing waits for the next run. Pending and running jobs are never touched.
--   The deletion trigger removes the stored images no remaining job of the user uses.
DELETE FROM "visionJobs"
WHERE id IN (
    SELECT id FROM "visionJobs"
    WHERE "createdAt" < $1 AND status IN ('complete', 'error') AND "updatedAt" < $1
    ORDER BY "createdAt", id LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING id;

-- name: count_prunable_jobs --
-- How many jobs prune_finished_jobs would delete for cutoff $1 (`jobs prune --dry-run`).
SELECT count(*) AS n FROM "visionJobs"
WHERE "createdAt" < $1 AND status IN ('complete', 'error') AND "updatedAt" < $1;

-- name: delete_jobs_events --
-- The events of the jobs prune_finished_jobs deleted ($1: JSON [id, …]).
DELETE FROM "visionJobEvents"
WHERE "jobId" IN (SELECT j.id::int FROM jsonb_array_elements_text($1::jsonb) AS j(id));

-- name: delete_jobs_attempts --
-- The attempt rows (visionJobSessions) of the jobs prune_finished_jobs deleted ($1: JSON ids).
DELETE FROM "visionJobSessions"
WHERE "jobId" IN (SELECT j.id::int FROM jsonb_array_elements_text($1::jsonb) AS j(id));

-- name: delete_jobs_outputs --
-- The outputs rows of the jobs prune_finished_jobs deleted ($1: JSON [id, …]).
DELETE FROM "visionJobOutputs"
WHERE "jobId" IN (SELECT j.id::int FROM jsonb_array_elements_text($1::jsonb) AS j(id));

-- name: unused_images --
-- Up to $2 stored images created before $1 that no job of their user refers to (ids).
--   Uploads nobody made a job from (every other image goes with its user's last job: the
--   deletion trigger). The job probe is idx_stored_image_jobs.
--   Locked FOR UPDATE, skipping an image a createJob holds (hold_image, FOR SHARE): that one
--   waits for the next run.
SELECT i.id FROM "visionImages" AS i
WHERE i."createdAt" < $1 AND NOT EXISTS (
        SELECT 1 FROM "visionJobs" AS j
        WHERE j."userId" = i."userId" AND substr(j."imageUrl", 1, 12) = '/api/images/'
            AND j."imageUrl" = '/api/images/' || i.sha256)
ORDER BY i.id LIMIT $2
FOR UPDATE OF i SKIP LOCKED;

-- name: delete_unused_images --
-- Delete the images $1 (JSON ids) still created before $2 and still used by no job.
--   A statement of its own after unused_images: on PostgreSQL its fresh snapshot sees a job
--   committed since (a createJob that held the image), and a createdAt an upload refreshed.
DELETE FROM "visionImages" AS i
WHERE i.id IN (SELECT j.id::int FROM jsonb_array_elements_text($1::jsonb) AS j(id)) AND i."createdAt" < $2
    AND NOT EXISTS (
        SELECT 1 FROM "visionJobs" AS j
        WHERE j."userId" = i."userId" AND substr(j."imageUrl", 1, 12) = '/api/images/'
            AND j."imageUrl" = '/api/images/' || i.sha256);

-- name: events_window --
-- The $3 events after id $1, each with whether it may go (a read, no lock taken).
--   It may go when it is older than $2 and its job finished before $2, or is gone. The walk
--   stops at the first window whose last event is not older than $2 (ids follow time).
SELECT e.id, e."createdAt",
    (e."createdAt" < $2 AND (j.id IS NULL
        OR (j.status IN ('complete', 'error') AND j."updatedAt" < $2))) AS prunable
FROM (SELECT id, "jobId", "createdAt" FROM "visionJobEvents"
      WHERE id > $1 ORDER BY id LIMIT $3) AS e
LEFT JOIN "visionJobs" AS j ON j.id = e."jobId"
ORDER BY e.id;

-- name: delete_events --
-- Delete the events $1 (JSON [id, …]) whose job is still finished before $2, or gone.
--   Checked again: a job retried since events_window read it keeps its events.
DELETE FROM "visionJobEvents" AS e
WHERE e.id IN (SELECT v.id::bigint FROM jsonb_array_elements_text($1::jsonb) AS v(id))
    AND NOT EXISTS (
        SELECT 1 FROM "visionJobs" AS j WHERE j.id = e."jobId"
            AND (j.status NOT IN ('complete', 'error') OR j."updatedAt" >= $2));

-- name: try_exclusive_lock --
-- Take the session-level advisory lock named $1 if free (housekeeping: one process at a time).
--   On a connection of its own, held until it closes; the two-key form, apart from db push's.
SELECT pg_try_advisory_lock(22096, hashtext($1)) AS locked;

-- name: vacuum_pruned_tables --
-- Make the space of the rows retention deleted reusable (Driver.reclaim_space), autovacuum or not.
--   Plain VACUUM, not FULL: it takes no lock that blocks reads or writes. It cannot run in a
--   transaction block, so it is run alone, outside one. SKIP_LOCKED: a table autovacuum (or a
--   migration) is busy with is left to it rather than waited for.
VACUUM (SKIP_LOCKED) "visionJobs", "visionJobEvents", "visionJobSessions", "visionJobOutputs",
    "visionImages";

-- ==== schema check (storage/schemacheck.py, storage/migrate.py) ====

-- name: schema_triggers --
-- The triggers of this schema's tables: name, definition, the body of the function it runs.
--   Compared with storage/triggers.py's.
SELECT t.tgname, pg_get_triggerdef(t.oid), p.prosrc FROM pg_trigger AS t
JOIN pg_class AS c ON c.oid = t.tgrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_proc AS p ON p.oid = t.tgfoid
WHERE NOT t.tgisinternal AND n.nspname = current_schema()
ORDER BY t.tgname;

-- name: schema_partial_indexes --
-- The indexes with a WHERE condition, by name (the models' partial indexes).
SELECT indexname FROM pg_indexes
WHERE schemaname = current_schema() AND position(' WHERE ' IN indexdef) > 0
ORDER BY indexname;

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
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT ("workerId") DO UPDATE SET "lastSeenAt" = excluded."lastSeenAt",
    concurrency = excluded.concurrency, running = excluded.running;

-- name: forget_stale_workers --
-- The rows of workers not seen since $1 (killed processes), deleted beside a heartbeat.
--   A handful of rows: no index needed.
DELETE FROM "visionWorkers" WHERE "lastSeenAt" < $1;

-- name: forget_worker --
-- A worker stopping cleanly deletes its row.
DELETE FROM "visionWorkers" WHERE "workerId" = $1;

-- name: list_workers --
-- Every worker process's row, by host and start (`vision-pipeline workers`, the dashboard).
SELECT "workerId", host, pid, "startedAt", "lastSeenAt", concurrency, running
FROM "visionWorkers" ORDER BY host, "startedAt", "workerId" LIMIT $1;


-- === the dashboard (storage.dashboard, visionPipeline.admin.overview) ======================
-- Each read is a range of an index: the running jobs (idx_status, a handful), finished jobs
-- by when they finished (idx_finished, the last hour or 14 days of them).

-- name: dashboard_finished_per_bucket --
-- Jobs finished since $1 per 5-minute bucket (0: the one starting at $1): completed, failed.
--   A cancelled job (errorStage 'cancelled') is not counted as failed.
SELECT floor(extract(epoch FROM ("updatedAt" - $1::timestamptz)) / 300)::int AS bucket,
    COUNT(*) FILTER (WHERE status = 'complete') AS completed,
    COUNT(*) FILTER (WHERE status = 'error' AND "errorStage" IS DISTINCT FROM 'cancelled')
        AS failed
FROM "visionJobs" WHERE status IN ('complete', 'error') AND "updatedAt" >= $1
GROUP BY bucket;

-- name: dashboard_in_flight --
-- The running jobs, longest held first, at most $1: stage, worker, attempt, when claimed.
--   And how much of the content has streamed in (partialContent's characters, NULL: none).
SELECT id AS "jobId", "userId", status, "lockedBy" AS "workerId", attempt, "lockedAt",
    length("partialContent") AS "streamedChars"
FROM "visionJobs" WHERE status IN ('gemini_analyzing', 'deepseek_generating')
ORDER BY "lockedAt", id LIMIT $1;

-- name: dashboard_recent_failures --
-- The $1 jobs that failed last (in error, not cancelled), newest first, with their message.
SELECT id AS "jobId", "userId", "errorStage", "errorMessage", "retryCount", "updatedAt"
FROM "visionJobs"
WHERE status IN ('complete', 'error') AND status = 'error'
    AND "errorStage" IS DISTINCT FROM 'cancelled'
ORDER BY "updatedAt" DESC, id DESC LIMIT $1;

-- name: dashboard_spend_per_day --
-- What the jobs that finished from $1 to before $2 cost, per UTC day, newest day first.
--   Called for today alone, and for the days before (which a process keeps for a while).
SELECT to_char("updatedAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day,
    COALESCE(SUM("costUsd"), 0) AS "costUsd", COUNT(*) AS jobs
FROM "visionJobs"
WHERE status IN ('complete', 'error') AND "updatedAt" >= $1 AND "updatedAt" < $2
GROUP BY day ORDER BY day DESC;


-- === the result cache (storage.stagecache, pipeline.cache) =================================
-- A stage's key is set only on a job whose provider answered it, so a hit always names the
-- job that paid, and the TTL counts from that answer. Served by idx_visionCacheKey /
-- idx_contentCacheKey (a key is a SHA-256: a few rows at most share one).

-- name: cache_vision_answer --
-- Stage 1: the newest stored vision analysis under key $1, analysed at $2 or later.
--   Only user $3's jobs, unless $3 is NULL (CACHE_SCOPE=global). The analysis stays once
--   stored, whatever became of its job's content stage.
SELECT id, "geminOutput" AS answer FROM "visionJobs"
WHERE "visionCacheKey" = $1 AND "geminOutput" IS NOT NULL AND "geminAnalyzedAt" >= $2
    AND ($3::integer IS NULL OR "userId" = $3::integer)
ORDER BY "geminAnalyzedAt" DESC, id DESC LIMIT 1;

-- name: cache_content_answer --
-- Stage 2: the newest completed job's content under key $1, completed at $2 or later.
--   Only user $3's jobs, unless $3 is NULL (CACHE_SCOPE=global).
SELECT id, "deepseekOutput" AS answer FROM "visionJobs"
WHERE "contentCacheKey" = $1 AND status = 'complete' AND "completedAt" >= $2
    AND ($3::integer IS NULL OR "userId" = $3::integer)
ORDER BY "completedAt" DESC, id DESC LIMIT 1;

-- name: dashboard_cache_hits --
-- Stage answers the result cache gave the attempts of the jobs finished at $1 or later.
--   The dashboard's "cache hits today": a range of idx_finished, then each job's attempts.
SELECT COALESCE(SUM(CASE WHEN s."geminiCachedFrom" IS NOT NULL THEN 1 ELSE 0 END
        + CASE WHEN s."deepseekCachedFrom" IS NOT NULL THEN 1 ELSE 0 END), 0) AS hits
FROM "visionJobs" AS j JOIN "visionJobSessions" AS s ON s."jobId" = j.id
WHERE j.status IN ('complete', 'error') AND j."updatedAt" >= $1;

-- === idempotency and budgets (storage.budgets, rpc.procedures.idempotency / budgets) =======

-- name: find_keyed_job --
-- createJob with an idempotencyKey: user $1's job holding key $2 (the unique partial index).
SELECT id, status, "idempotencyFingerprint" AS fingerprint, "createdAt"
FROM "visionJobs" WHERE "userId" = $1 AND "idempotencyKey" = $2;

-- name: clear_stale_key --
-- Before a keyed insert: user $1's key $2 let go when its job was created before $3 (24 h).
UPDATE "visionJobs" SET "idempotencyKey" = NULL, "idempotencyFingerprint" = NULL
WHERE "userId" = $1 AND "idempotencyKey" = $2 AND "createdAt" < $3;

-- name: insert_keyed_job --
-- createJob with an idempotencyKey ($10), its inputs' fingerprint ($11) and bypassCache ($12):
--   a new pending job,
--   or no row when the user holds the key already (a concurrent create: the index decides).
INSERT INTO "visionJobs" ("userId", "imageUrl", "imageContext", "analysisPurpose",
    "outputFormat", "creativityLevel", "additionalInstructions", status, progress,
    "retryCount", "maxRetries", "createdAt", "updatedAt", "runAfter", attempt,
    "cancelRequested", "costUsd", "idempotencyKey", "idempotencyFingerprint", "bypassCache")
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, 0, $8, $9, $9, $9, 0, FALSE, 0, $10, $11,
    $12)
ON CONFLICT ("userId", "idempotencyKey") WHERE "idempotencyKey" IS NOT NULL DO NOTHING
RETURNING id;

-- name: clear_old_keys --
-- The housekeeping: the idempotencyKeys of jobs created before $1, $2 at most per statement.
UPDATE "visionJobs" SET "idempotencyKey" = NULL, "idempotencyFingerprint" = NULL
WHERE id IN (SELECT id FROM "visionJobs"
    WHERE "idempotencyKey" IS NOT NULL AND "createdAt" < $1 ORDER BY "createdAt" LIMIT $2);

-- name: user_spend_today --
-- The budget of user $1: role, own budget, and their spend since $4 (UTC midnight) when $3,
--   or when a budget applies (theirs, else the default $2; not 0; admins are not asked):
--   the cost of the attempts that ended since. Those are attempts of the user's jobs that
--   finished since (a job's last transition writes its updatedAt: idx_userId_updatedAt,
--   partial) or have not finished (idx_userId_status): a finished job's attempts all ended
--   by then, and only a retry, which makes it unfinished again, adds one.
SELECT u.role, u."dailyBudgetUsd" AS budget,
    CASE WHEN $3 OR COALESCE(u."dailyBudgetUsd", $2) > 0 THEN
        (SELECT COALESCE(SUM(s."costUsd"), 0) FROM "visionJobSessions" s
         WHERE s."endedAt" >= $4 AND s."jobId" IN (
            SELECT id FROM "visionJobs" WHERE "userId" = u.id
                AND status IN ('complete', 'error') AND "updatedAt" >= $4
            UNION ALL
            SELECT id FROM "visionJobs" WHERE "userId" = u.id
                AND status IN ('pending', 'gemini_analyzing', 'deepseek_generating')))
    END AS spent
FROM users u WHERE u.id = $1;

-- name: set_user_budget --
-- `users set-budget`: user $1's daily budget (NULL: the default, 0: none); no row if unknown.
UPDATE users SET "dailyBudgetUsd" = $2, "updatedAt" = $3 WHERE "openId" = $1 RETURNING id;
