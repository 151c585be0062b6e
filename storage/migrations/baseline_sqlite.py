# ruff: noqa: E501
"""The SQLite schema of vision-pipeline 0.1.0 (the release before versioned migrations),
frozen: revision 0001 creates exactly this, whatever ``storage/tables.py`` says later."""

STATEMENTS = [
    """CREATE TABLE users (
	id INTEGER NOT NULL,
	"openId" VARCHAR(64) NOT NULL,
	name TEXT,
	email VARCHAR(320),
	"loginMethod" VARCHAR(64),
	role VARCHAR(16) NOT NULL,
	"createdAt" DATETIME NOT NULL,
	"updatedAt" DATETIME NOT NULL,
	"lastSignedIn" DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE ("openId")
)""",
    """CREATE TABLE "visionImages" (
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
)""",
    """CREATE INDEX idx_images_sha256 ON "visionImages" (sha256)""",
    """CREATE TABLE "visionJobEvents" (
	id INTEGER NOT NULL,
	"jobId" INTEGER NOT NULL,
	"userId" INTEGER NOT NULL,
	status VARCHAR(32) NOT NULL,
	progress INTEGER NOT NULL,
	"errorMessage" TEXT,
	"createdAt" DATETIME NOT NULL,
	PRIMARY KEY (id)
)""",
    """CREATE INDEX "idx_events_jobId" ON "visionJobEvents" ("jobId", id)""",
    """CREATE TABLE "visionJobOutputs" (
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
)""",
    """CREATE INDEX "idx_outputs_userId" ON "visionJobOutputs" ("userId")""",
    """CREATE TABLE "visionJobSessions" (
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
	PRIMARY KEY (id)
)""",
    """CREATE INDEX "idx_sessions_jobId" ON "visionJobSessions" ("jobId", attempt)""",
    """CREATE TABLE "visionJobs" (
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
	PRIMARY KEY (id)
)""",
    """CREATE INDEX idx_claim ON "visionJobs" ("runAfter", id) WHERE status = 'pending'""",
    """CREATE INDEX "idx_createdAt" ON "visionJobs" ("createdAt")""",
    """CREATE INDEX idx_inline_image_jobs ON "visionJobs" (id) WHERE lower(substr("imageUrl", 1, 5)) = 'data:'""",
    """CREATE INDEX idx_lease ON "visionJobs" ("leaseExpiresAt") WHERE status IN ('gemini_analyzing', 'deepseek_generating')""",
    """CREATE INDEX idx_status ON "visionJobs" (status)""",
    """CREATE INDEX idx_stored_image_jobs ON "visionJobs" ("userId", "imageUrl") WHERE substr("imageUrl", 1, 12) = '/api/images/'""",
    """CREATE INDEX "idx_userId_createdAt" ON "visionJobs" ("userId", "createdAt", id)""",
    """CREATE INDEX "idx_userId_status" ON "visionJobs" ("userId", status)""",
    """CREATE TRIGGER IF NOT EXISTS trg_job_created AFTER INSERT ON "visionJobs"
BEGIN
    INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt");
END""",
    """CREATE TRIGGER IF NOT EXISTS trg_job_changed
AFTER UPDATE OF status, progress, "errorMessage" ON "visionJobs"
WHEN OLD.status IS NOT NEW.status OR OLD.progress IS NOT NEW.progress
        OR OLD."errorMessage" IS NOT NEW."errorMessage"
BEGIN
    INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt");
END""",
    """CREATE TRIGGER IF NOT EXISTS trg_job_deleted AFTER DELETE ON "visionJobs"
WHEN substr(OLD."imageUrl", 1, 12) = '/api/images/'
BEGIN
    DELETE FROM "visionImages"
    WHERE "userId" = OLD."userId" AND sha256 = substr(OLD."imageUrl", 13)
        AND NOT EXISTS (SELECT 1 FROM "visionJobs" AS j
            WHERE j."userId" = OLD."userId" AND substr(j."imageUrl", 1, 12) = '/api/images/' AND j."imageUrl" = OLD."imageUrl");
END""",
]
