-- vision-pipeline schema. Generated from storage/tables.py by
--   python -m storage.schema > schema.sql
-- Do not edit by hand: tests/test_schema.py fails when this file and the models disagree.


-- ==== SQLite ====

CREATE TABLE users (
	id INTEGER NOT NULL,
	"openId" VARCHAR(64) NOT NULL,
	name TEXT,
	email VARCHAR(320),
	"loginMethod" VARCHAR(64),
	role VARCHAR(16) NOT NULL,
	"createdAt" DATETIME NOT NULL,
	"updatedAt" DATETIME NOT NULL,
	"lastSignedIn" DATETIME NOT NULL,
	"dailyBudgetUsd" FLOAT,
	PRIMARY KEY (id),
	UNIQUE ("openId")
);

CREATE TABLE "visionImages" (
	id INTEGER NOT NULL,
	"userId" INTEGER NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	"mimeType" VARCHAR(255) NOT NULL,
	"byteSize" INTEGER NOT NULL,
	width INTEGER,
	height INTEGER,
	data BLOB NOT NULL,
	"createdAt" DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT "uq_images_userId_sha256" UNIQUE ("userId", sha256)
);

CREATE INDEX idx_images_sha256 ON "visionImages" (sha256);

CREATE TABLE "visionJobEvents" (
	id INTEGER NOT NULL,
	"jobId" INTEGER NOT NULL,
	"userId" INTEGER NOT NULL,
	status VARCHAR(32) NOT NULL,
	progress INTEGER NOT NULL,
	"errorMessage" TEXT,
	"createdAt" DATETIME NOT NULL,
	"partialContent" TEXT,
	PRIMARY KEY (id)
);

CREATE INDEX "idx_events_jobId" ON "visionJobEvents" ("jobId", id);

CREATE TABLE "visionJobOutputs" (
	id INTEGER NOT NULL,
	"jobId" INTEGER NOT NULL,
	"userId" INTEGER NOT NULL,
	colors_primary TEXT,
	colors_secondary TEXT,
	colors_description TEXT,
	mood TEXT,
	tone TEXT,
	composition_layout TEXT,
	brand_personality TEXT,
	perceived_industry TEXT,
	target_audience TEXT,
	content_pieces TEXT,
	"isTrainingData" BOOLEAN NOT NULL,
	"createdAt" DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE ("jobId")
);

CREATE INDEX "idx_outputs_userId" ON "visionJobOutputs" ("userId");

CREATE TABLE "visionJobSessions" (
	id INTEGER NOT NULL,
	"jobId" INTEGER NOT NULL,
	attempt INTEGER NOT NULL,
	"workerId" VARCHAR(64),
	"stageReached" VARCHAR(32),
	outcome VARCHAR(16) NOT NULL,
	"errorMessage" TEXT,
	"startedAt" DATETIME,
	"endedAt" DATETIME NOT NULL,
	"geminiModel" VARCHAR(64),
	"geminiInputTokens" INTEGER NOT NULL,
	"geminiOutputTokens" INTEGER NOT NULL,
	"geminiLatencyMs" INTEGER NOT NULL,
	"deepseekModel" VARCHAR(64),
	"deepseekInputTokens" INTEGER NOT NULL,
	"deepseekOutputTokens" INTEGER NOT NULL,
	"deepseekLatencyMs" INTEGER NOT NULL,
	"costUsd" FLOAT NOT NULL,
	"geminiCachedFrom" INTEGER,
	"deepseekCachedFrom" INTEGER,
	PRIMARY KEY (id)
);

CREATE INDEX "idx_sessions_jobId" ON "visionJobSessions" ("jobId", attempt);

CREATE TABLE "visionJobs" (
	id INTEGER NOT NULL,
	"userId" INTEGER NOT NULL,
	"imageUrl" TEXT NOT NULL,
	"imageContext" TEXT,
	"analysisPurpose" TEXT NOT NULL,
	"outputFormat" VARCHAR(32) NOT NULL,
	"creativityLevel" FLOAT NOT NULL,
	"additionalInstructions" TEXT,
	status VARCHAR(32) NOT NULL,
	progress INTEGER NOT NULL,
	"geminOutput" TEXT,
	"deepseekOutput" TEXT,
	"geminAnalyzedAt" DATETIME,
	"deepseekGeneratedAt" DATETIME,
	"errorMessage" TEXT,
	"errorStage" VARCHAR(32),
	"retryCount" INTEGER NOT NULL,
	"maxRetries" INTEGER NOT NULL,
	"createdAt" DATETIME NOT NULL,
	"updatedAt" DATETIME NOT NULL,
	"completedAt" DATETIME,
	"runAfter" DATETIME NOT NULL,
	attempt INTEGER NOT NULL,
	"lockedBy" VARCHAR(64),
	"lockedAt" DATETIME,
	"leaseExpiresAt" DATETIME,
	"cancelRequested" BOOLEAN NOT NULL,
	"costUsd" FLOAT NOT NULL,
	"idempotencyKey" VARCHAR(200),
	"idempotencyFingerprint" VARCHAR(64),
	"visionCacheKey" VARCHAR(64),
	"contentCacheKey" VARCHAR(64),
	"bypassCache" BOOLEAN DEFAULT FALSE NOT NULL,
	"partialContent" TEXT,
	PRIMARY KEY (id)
);

CREATE INDEX idx_claim ON "visionJobs" ("runAfter", id) WHERE status = 'pending';

CREATE INDEX "idx_contentCacheKey" ON "visionJobs" ("contentCacheKey") WHERE "contentCacheKey" IS NOT NULL;

CREATE INDEX "idx_createdAt" ON "visionJobs" ("createdAt");

CREATE INDEX idx_fair ON "visionJobs" ("userId", "runAfter", id) WHERE status = 'pending';

CREATE INDEX idx_finished ON "visionJobs" ("updatedAt") WHERE status IN ('complete', 'error');

CREATE INDEX idx_inline_image_jobs ON "visionJobs" (id) WHERE lower(substr("imageUrl", 1, 5)) = 'data:';

CREATE INDEX "idx_keyed_createdAt" ON "visionJobs" ("createdAt") WHERE "idempotencyKey" IS NOT NULL;

CREATE INDEX idx_lease ON "visionJobs" ("leaseExpiresAt") WHERE status IN ('gemini_analyzing', 'deepseek_generating');

CREATE INDEX idx_status ON "visionJobs" (status);

CREATE INDEX idx_stored_image_jobs ON "visionJobs" ("userId", "imageUrl") WHERE substr("imageUrl", 1, 12) = '/api/images/';

CREATE INDEX "idx_userId_createdAt" ON "visionJobs" ("userId", "createdAt", id);

CREATE INDEX "idx_userId_status" ON "visionJobs" ("userId", status);

CREATE INDEX "idx_userId_updatedAt" ON "visionJobs" ("userId", "updatedAt") WHERE status IN ('complete', 'error');

CREATE INDEX "idx_visionCacheKey" ON "visionJobs" ("visionCacheKey") WHERE "visionCacheKey" IS NOT NULL;

CREATE UNIQUE INDEX "uq_jobs_userId_idempotencyKey" ON "visionJobs" ("userId", "idempotencyKey") WHERE "idempotencyKey" IS NOT NULL;

CREATE TABLE "visionWorkers" (
	"workerId" VARCHAR(64) NOT NULL,
	host VARCHAR(255) NOT NULL,
	pid INTEGER NOT NULL,
	"startedAt" DATETIME NOT NULL,
	"lastSeenAt" DATETIME NOT NULL,
	concurrency INTEGER NOT NULL,
	running INTEGER NOT NULL,
	PRIMARY KEY ("workerId")
);

CREATE TRIGGER IF NOT EXISTS trg_job_created AFTER INSERT ON "visionJobs"
BEGIN
    INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt", NEW."partialContent");
END;

CREATE TRIGGER IF NOT EXISTS trg_job_changed
AFTER UPDATE OF status, progress, "errorMessage", "partialContent" ON "visionJobs"
WHEN OLD.status IS NOT NEW.status OR OLD.progress IS NOT NEW.progress
        OR OLD."errorMessage" IS NOT NEW."errorMessage"
        OR OLD."partialContent" IS NOT NEW."partialContent"
BEGIN
    INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt", NEW."partialContent");
END;

CREATE TRIGGER IF NOT EXISTS trg_job_deleted AFTER DELETE ON "visionJobs"
WHEN substr(OLD."imageUrl", 1, 12) = '/api/images/'
BEGIN
    DELETE FROM "visionImages"
    WHERE "userId" = OLD."userId" AND sha256 = substr(OLD."imageUrl", 13)
        AND NOT EXISTS (SELECT 1 FROM "visionJobs" AS j
            WHERE j."userId" = OLD."userId" AND substr(j."imageUrl", 1, 12) = '/api/images/' AND j."imageUrl" = OLD."imageUrl");
END;


-- ==== PostgreSQL ====

CREATE TABLE users (
	id SERIAL NOT NULL,
	"openId" VARCHAR(64) NOT NULL,
	name TEXT,
	email VARCHAR(320),
	"loginMethod" VARCHAR(64),
	role VARCHAR(16) NOT NULL,
	"createdAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	"updatedAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	"lastSignedIn" TIMESTAMP WITH TIME ZONE NOT NULL,
	"dailyBudgetUsd" FLOAT,
	PRIMARY KEY (id),
	UNIQUE ("openId")
);

CREATE TABLE "visionImages" (
	id SERIAL NOT NULL,
	"userId" INTEGER NOT NULL,
	sha256 VARCHAR(64) NOT NULL,
	"mimeType" VARCHAR(255) NOT NULL,
	"byteSize" INTEGER NOT NULL,
	width INTEGER,
	height INTEGER,
	data BYTEA NOT NULL,
	"createdAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT "uq_images_userId_sha256" UNIQUE ("userId", sha256)
);

CREATE INDEX idx_images_sha256 ON "visionImages" (sha256);

CREATE TABLE "visionJobEvents" (
	id BIGSERIAL NOT NULL,
	"jobId" INTEGER NOT NULL,
	"userId" INTEGER NOT NULL,
	status VARCHAR(32) NOT NULL,
	progress INTEGER NOT NULL,
	"errorMessage" TEXT,
	"createdAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	"partialContent" TEXT,
	PRIMARY KEY (id)
);

CREATE INDEX "idx_events_jobId" ON "visionJobEvents" ("jobId", id);

CREATE TABLE "visionJobOutputs" (
	id SERIAL NOT NULL,
	"jobId" INTEGER NOT NULL,
	"userId" INTEGER NOT NULL,
	colors_primary TEXT,
	colors_secondary TEXT,
	colors_description TEXT,
	mood TEXT,
	tone TEXT,
	composition_layout TEXT,
	brand_personality TEXT,
	perceived_industry TEXT,
	target_audience TEXT,
	content_pieces TEXT,
	"isTrainingData" BOOLEAN NOT NULL,
	"createdAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	UNIQUE ("jobId")
);

CREATE INDEX "idx_outputs_userId" ON "visionJobOutputs" ("userId");

CREATE TABLE "visionJobSessions" (
	id SERIAL NOT NULL,
	"jobId" INTEGER NOT NULL,
	attempt INTEGER NOT NULL,
	"workerId" VARCHAR(64),
	"stageReached" VARCHAR(32),
	outcome VARCHAR(16) NOT NULL,
	"errorMessage" TEXT,
	"startedAt" TIMESTAMP WITH TIME ZONE,
	"endedAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	"geminiModel" VARCHAR(64),
	"geminiInputTokens" INTEGER NOT NULL,
	"geminiOutputTokens" INTEGER NOT NULL,
	"geminiLatencyMs" INTEGER NOT NULL,
	"deepseekModel" VARCHAR(64),
	"deepseekInputTokens" INTEGER NOT NULL,
	"deepseekOutputTokens" INTEGER NOT NULL,
	"deepseekLatencyMs" INTEGER NOT NULL,
	"costUsd" FLOAT NOT NULL,
	"geminiCachedFrom" INTEGER,
	"deepseekCachedFrom" INTEGER,
	PRIMARY KEY (id)
);

CREATE INDEX "idx_sessions_jobId" ON "visionJobSessions" ("jobId", attempt);

CREATE TABLE "visionJobs" (
	id SERIAL NOT NULL,
	"userId" INTEGER NOT NULL,
	"imageUrl" TEXT NOT NULL,
	"imageContext" TEXT,
	"analysisPurpose" TEXT NOT NULL,
	"outputFormat" VARCHAR(32) NOT NULL,
	"creativityLevel" FLOAT NOT NULL,
	"additionalInstructions" TEXT,
	status VARCHAR(32) NOT NULL,
	progress INTEGER NOT NULL,
	"geminOutput" TEXT,
	"deepseekOutput" TEXT,
	"geminAnalyzedAt" TIMESTAMP WITH TIME ZONE,
	"deepseekGeneratedAt" TIMESTAMP WITH TIME ZONE,
	"errorMessage" TEXT,
	"errorStage" VARCHAR(32),
	"retryCount" INTEGER NOT NULL,
	"maxRetries" INTEGER NOT NULL,
	"createdAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	"updatedAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	"completedAt" TIMESTAMP WITH TIME ZONE,
	"runAfter" TIMESTAMP WITH TIME ZONE NOT NULL,
	attempt INTEGER NOT NULL,
	"lockedBy" VARCHAR(64),
	"lockedAt" TIMESTAMP WITH TIME ZONE,
	"leaseExpiresAt" TIMESTAMP WITH TIME ZONE,
	"cancelRequested" BOOLEAN NOT NULL,
	"costUsd" FLOAT NOT NULL,
	"idempotencyKey" VARCHAR(200),
	"idempotencyFingerprint" VARCHAR(64),
	"visionCacheKey" VARCHAR(64),
	"contentCacheKey" VARCHAR(64),
	"bypassCache" BOOLEAN DEFAULT FALSE NOT NULL,
	"partialContent" TEXT,
	PRIMARY KEY (id)
);

CREATE INDEX idx_claim ON "visionJobs" ("runAfter", id) WHERE status = 'pending';

CREATE INDEX "idx_contentCacheKey" ON "visionJobs" ("contentCacheKey") WHERE "contentCacheKey" IS NOT NULL;

CREATE INDEX "idx_createdAt" ON "visionJobs" ("createdAt");

CREATE INDEX idx_fair ON "visionJobs" ("userId", "runAfter", id) WHERE (status = 'pending') IS TRUE;

CREATE INDEX idx_finished ON "visionJobs" ("updatedAt") WHERE status IN ('complete', 'error');

CREATE INDEX idx_inline_image_jobs ON "visionJobs" (id) WHERE lower(substr("imageUrl", 1, 5)) = 'data:';

CREATE INDEX "idx_keyed_createdAt" ON "visionJobs" ("createdAt") WHERE "idempotencyKey" IS NOT NULL;

CREATE INDEX idx_lease ON "visionJobs" ("leaseExpiresAt") WHERE status IN ('gemini_analyzing', 'deepseek_generating');

CREATE INDEX idx_status ON "visionJobs" (status);

CREATE INDEX idx_stored_image_jobs ON "visionJobs" ("userId", "imageUrl") WHERE substr("imageUrl", 1, 12) = '/api/images/';

CREATE INDEX "idx_userId_createdAt" ON "visionJobs" ("userId", "createdAt", id);

CREATE INDEX "idx_userId_status" ON "visionJobs" ("userId", status);

CREATE INDEX "idx_userId_updatedAt" ON "visionJobs" ("userId", "updatedAt") WHERE status IN ('complete', 'error');

CREATE INDEX "idx_visionCacheKey" ON "visionJobs" ("visionCacheKey") WHERE "visionCacheKey" IS NOT NULL;

CREATE UNIQUE INDEX "uq_jobs_userId_idempotencyKey" ON "visionJobs" ("userId", "idempotencyKey") WHERE "idempotencyKey" IS NOT NULL;

CREATE TABLE "visionWorkers" (
	"workerId" VARCHAR(64) NOT NULL,
	host VARCHAR(255) NOT NULL,
	pid INTEGER NOT NULL,
	"startedAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	"lastSeenAt" TIMESTAMP WITH TIME ZONE NOT NULL,
	concurrency INTEGER NOT NULL,
	running INTEGER NOT NULL,
	PRIMARY KEY ("workerId")
);

CREATE OR REPLACE FUNCTION vision_jobs_inserted() RETURNS trigger AS $$
DECLARE
    changed integer;
    pending boolean;
BEGIN
    WITH written AS (INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        SELECT n.id, n."userId", n.status, n.progress, n."errorMessage", n."updatedAt",
            n."partialContent"
        FROM new_rows AS n
        ORDER BY n.id
        RETURNING status)
    SELECT count(*), coalesce(bool_or(status = 'pending'), FALSE) INTO changed, pending
    FROM written;
    IF changed > 0 THEN
        PERFORM pg_notify('vision_job_events', CASE WHEN pending THEN 'pending' ELSE '' END);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION vision_jobs_updated() RETURNS trigger AS $$
DECLARE
    changed integer;
    pending boolean;
BEGIN
    WITH written AS (INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        SELECT n.id, n."userId", n.status, n.progress, n."errorMessage", n."updatedAt",
            n."partialContent"
        FROM new_rows AS n JOIN old_rows AS o ON o.id = n.id
        WHERE o.status IS DISTINCT FROM n.status OR o.progress IS DISTINCT FROM n.progress
            OR o."errorMessage" IS DISTINCT FROM n."errorMessage"
            OR o."partialContent" IS DISTINCT FROM n."partialContent"
        ORDER BY n.id
        RETURNING status)
    SELECT count(*), coalesce(bool_or(status = 'pending'), FALSE) INTO changed, pending
    FROM written;
    IF changed > 0 THEN
        PERFORM pg_notify('vision_job_events', CASE WHEN pending THEN 'pending' ELSE '' END);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER trg_job_created AFTER INSERT ON "visionJobs"
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION vision_jobs_inserted();

CREATE OR REPLACE TRIGGER trg_job_changed AFTER UPDATE ON "visionJobs"
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION vision_jobs_updated();

DROP FUNCTION IF EXISTS vision_job_event();

CREATE OR REPLACE FUNCTION vision_jobs_deleted() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM "visionImages" AS i
    JOIN (SELECT DISTINCT o."userId", substr(o."imageUrl", 13) AS sha256
          FROM old_rows AS o WHERE substr(o."imageUrl", 1, 12) = '/api/images/'
         ) AS d ON i."userId" = d."userId" AND i.sha256 = d.sha256
    ORDER BY i.id FOR UPDATE OF i;
    DELETE FROM "visionImages" AS i
    USING (SELECT DISTINCT o."userId", o."imageUrl" FROM old_rows AS o
           WHERE substr(o."imageUrl", 1, 12) = '/api/images/') AS d
    WHERE i."userId" = d."userId" AND i.sha256 = substr(d."imageUrl", 13)
        AND NOT EXISTS (SELECT 1 FROM "visionJobs" AS j
            WHERE j."userId" = d."userId" AND substr(j."imageUrl", 1, 12) = '/api/images/' AND j."imageUrl" = d."imageUrl");
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER trg_job_deleted AFTER DELETE ON "visionJobs"
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION vision_jobs_deleted();
