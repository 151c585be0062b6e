"""The triggers that write ``visionJobEvents`` and, on PostgreSQL, wake listeners; and the
one that deletes a stored image with the last job that uses it.

A trigger rather than an INSERT in each query: every writer of ``visionJobs`` (worker, API,
reaper, operators, a DBA's UPDATE) records its change the same way, in the same transaction.
On PostgreSQL the trigger also sends ``NOTIFY vision_job_events`` (PostgreSQL folds equal
notifications of a transaction into one), so listening workers claim a new job at once and
live-progress streams learn of a change without polling.
"""

from __future__ import annotations

from storage.tables import STORED_IMAGE_JOB

CHANNEL = "vision_job_events"

# partialContent (issue 17): a streamed answer's text so far travels as an ordinary event.
# A change of these triggers needs a revision that recreates them with its text frozen
# (storage/migrations/versions/rev_0006_stream.py).
_CHANGED = '''OLD.status IS NOT NEW.status OR OLD.progress IS NOT NEW.progress
        OR OLD."errorMessage" IS NOT NEW."errorMessage"
        OR OLD."partialContent" IS NOT NEW."partialContent"'''
_INSERT = """INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt", NEW."partialContent")"""

# An image of the store is deleted with the last job of its user that refers to it, whoever
# deletes the job (the API, a retention command, an operator's SQL). The condition is the
# partial index's (storage.tables.STORED_IMAGE_JOB), so the check is an index probe.
_STILL_USED = """SELECT 1 FROM "visionJobs" AS j
            WHERE j."userId" = {user} AND {stored} AND j."imageUrl" = {url}"""
_STORED = STORED_IMAGE_JOB.replace('"imageUrl"', 'j."imageUrl"')
_STILL_USED_SQLITE = _STILL_USED.format(user='OLD."userId"', stored=_STORED, url='OLD."imageUrl"')
_STILL_USED_PG = _STILL_USED.format(user='d."userId"', stored=_STORED, url='d."imageUrl"')
_OLD_STORED = STORED_IMAGE_JOB.replace('"imageUrl"', 'o."imageUrl"')

SQLITE = [
    f"""CREATE TRIGGER IF NOT EXISTS trg_job_created AFTER INSERT ON "visionJobs"
BEGIN
    {_INSERT};
END""",
    f"""CREATE TRIGGER IF NOT EXISTS trg_job_changed
AFTER UPDATE OF status, progress, "errorMessage", "partialContent" ON "visionJobs"
WHEN {_CHANGED}
BEGIN
    {_INSERT};
END""",
    # SQLite has one writer at a time: nothing can take up the image between check and delete.
    f"""CREATE TRIGGER IF NOT EXISTS trg_job_deleted AFTER DELETE ON "visionJobs"
WHEN {STORED_IMAGE_JOB.replace('"imageUrl"', 'OLD."imageUrl"')}
BEGIN
    DELETE FROM "visionImages"
    WHERE "userId" = OLD."userId" AND sha256 = substr(OLD."imageUrl", 13)
        AND NOT EXISTS ({_STILL_USED_SQLITE});
END""",
]

# PostgreSQL: statement-level triggers over the transition tables. A batched write (a claim
# of 16 jobs, a batch of completions) then records its events with one INSERT … SELECT and
# one NOTIFY, instead of a PL/pgSQL call, an INSERT and a NOTIFY per row. The NOTIFY's
# payload is 'pending' when a job became claimable, so a worker can wake on just that
# (storage.changes) without reading the events.
_PG_EVENTS = """INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt", "partialContent")
        SELECT n.id, n."userId", n.status, n.progress, n."errorMessage", n."updatedAt",
            n."partialContent"
        FROM new_rows AS n{join}
        ORDER BY n.id
        RETURNING status"""
_PG_BODY = """DECLARE
    changed integer;
    pending boolean;
BEGIN
    WITH written AS ({events})
    SELECT count(*), coalesce(bool_or(status = 'pending'), FALSE) INTO changed, pending
    FROM written;
    IF changed > 0 THEN
        PERFORM pg_notify('{channel}', CASE WHEN pending THEN 'pending' ELSE '' END);
    END IF;
    RETURN NULL;
END"""
_PG_CHANGED = """ JOIN old_rows AS o ON o.id = n.id
        WHERE o.status IS DISTINCT FROM n.status OR o.progress IS DISTINCT FROM n.progress
            OR o."errorMessage" IS DISTINCT FROM n."errorMessage"
            OR o."partialContent" IS DISTINCT FROM n."partialContent\""""

POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION vision_jobs_inserted() RETURNS trigger AS $$
{_PG_BODY.format(events=_PG_EVENTS.format(join=""), channel=CHANNEL)}
$$ LANGUAGE plpgsql""",
    f"""CREATE OR REPLACE FUNCTION vision_jobs_updated() RETURNS trigger AS $$
{_PG_BODY.format(events=_PG_EVENTS.format(join=_PG_CHANGED), channel=CHANNEL)}
$$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER trg_job_created AFTER INSERT ON "visionJobs"
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION vision_jobs_inserted()""",
    # No column list: PostgreSQL allows none with transition tables; the join keeps only
    # the rows whose status, progress, message or partial text changed.
    """CREATE OR REPLACE TRIGGER trg_job_changed AFTER UPDATE ON "visionJobs"
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION vision_jobs_updated()""",
    # The row-level function of earlier versions, unused once the triggers are replaced.
    "DROP FUNCTION IF EXISTS vision_job_event()",
    # A createJob that reuses an image holds it FOR SHARE until it commits (JobStore's
    # keep_image); this locks the images first and then, in a statement of its own (a fresh
    # snapshot under READ COMMITTED), sees that createJob's job: an image is never deleted
    # under a job that is being created with it. Statement-level, as the others: a retention
    # DELETE of many jobs runs this once.
    f"""CREATE OR REPLACE FUNCTION vision_jobs_deleted() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM "visionImages" AS i
    JOIN (SELECT DISTINCT o."userId", substr(o."imageUrl", 13) AS sha256
          FROM old_rows AS o WHERE {_OLD_STORED}
         ) AS d ON i."userId" = d."userId" AND i.sha256 = d.sha256
    ORDER BY i.id FOR UPDATE OF i;
    DELETE FROM "visionImages" AS i
    USING (SELECT DISTINCT o."userId", o."imageUrl" FROM old_rows AS o
           WHERE {_OLD_STORED}) AS d
    WHERE i."userId" = d."userId" AND i.sha256 = substr(d."imageUrl", 13)
        AND NOT EXISTS ({_STILL_USED_PG});
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER trg_job_deleted AFTER DELETE ON "visionJobs"
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION vision_jobs_deleted()""",
]


def for_dialect(dialect: str) -> list[str]:
    return SQLITE if dialect == "sqlite" else POSTGRES
