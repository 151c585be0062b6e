"""Content streamed as it is written (issue 17, part 5): ``partialContent`` on ``visionJobs``
(the content stage's answer so far) and on ``visionJobEvents`` (copied by the triggers, so
the text travels as ordinary job events); the event triggers recreated to copy it and to
fire when it changes.

The trigger text is frozen here as this revision wrote it: ``storage/triggers.py`` may move
on, this revision must not.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# storage.migrate reads it: completing a 0.1.0 database adds these too, without reporting them.
adds_columns = (("visionJobs", "partialContent"), ("visionJobEvents", "partialContent"))

_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS trg_job_created AFTER INSERT ON "visionJobs"
BEGIN
    INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt", NEW."partialContent");
END""",
    """CREATE TRIGGER IF NOT EXISTS trg_job_changed
AFTER UPDATE OF status, progress, "errorMessage", "partialContent" ON "visionJobs"
WHEN OLD.status IS NOT NEW.status OR OLD.progress IS NOT NEW.progress
        OR OLD."errorMessage" IS NOT NEW."errorMessage"
        OR OLD."partialContent" IS NOT NEW."partialContent"
BEGIN
    INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt", NEW."partialContent");
END""",
)

_POSTGRES_FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION vision_jobs_inserted() RETURNS trigger AS $$
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
$$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE FUNCTION vision_jobs_updated() RETURNS trigger AS $$
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
$$ LANGUAGE plpgsql""",
)


def upgrade() -> None:
    # A database 0.1.0's push made is completed from the current models before it is stamped
    # at 0001 (storage.migrate), so the columns may be there already: add only what is missing.
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table, column in adds_columns:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column(column, sa.Text(), nullable=True))
    if bind.dialect.name == "sqlite":
        # SQLite has no CREATE OR REPLACE TRIGGER: drop, then create this revision's.
        for name in ("trg_job_created", "trg_job_changed"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        for statement in _SQLITE_TRIGGERS:
            bind.exec_driver_sql(statement)
    else:
        # The triggers run these functions by name: replacing the functions is enough.
        for statement in _POSTGRES_FUNCTIONS:
            bind.exec_driver_sql(statement)


def downgrade() -> None:
    from storage.migrations import baseline_postgres, baseline_sqlite

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for name in ("trg_job_created", "trg_job_changed"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        wanted = ("trg_job_created", "trg_job_changed")
        statements = baseline_sqlite.STATEMENTS
    else:
        wanted = ("vision_jobs_inserted()", "vision_jobs_updated()")
        statements = baseline_postgres.STATEMENTS
    for statement in statements:
        first = statement.strip().splitlines()[0]
        if "CREATE" in first and any(name in first for name in wanted):
            bind.exec_driver_sql(statement)
    # Plain DROP COLUMN (SQLite 3.35+): a batch would copy visionJobs into a new table and
    # lose its other triggers.
    for table, column in adds_columns:
        op.drop_column(table, column)
