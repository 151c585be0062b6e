"""The triggers that write ``visionJobEvents`` and, on PostgreSQL, wake listeners.

A trigger rather than an INSERT in each query: every writer of ``visionJobs`` (worker, API,
reaper, operators, a DBA's UPDATE) records its change the same way, in the same transaction.
On PostgreSQL the trigger also sends one ``NOTIFY vision_job_events`` per transaction (an
empty payload, which PostgreSQL folds into one), so listening workers claim a new job at once
and live-progress streams learn of a change without polling.
"""

from __future__ import annotations

CHANNEL = "vision_job_events"

_CHANGED = '''OLD.status IS NOT NEW.status OR OLD.progress IS NOT NEW.progress
        OR OLD."errorMessage" IS NOT NEW."errorMessage"'''
_INSERT = """INSERT INTO "visionJobEvents" ("jobId", "userId", status, progress,
            "errorMessage", "createdAt")
        VALUES (NEW.id, NEW."userId", NEW.status, NEW.progress, NEW."errorMessage",
            NEW."updatedAt")"""

SQLITE = [
    f"""CREATE TRIGGER IF NOT EXISTS trg_job_created AFTER INSERT ON "visionJobs"
BEGIN
    {_INSERT};
END""",
    f"""CREATE TRIGGER IF NOT EXISTS trg_job_changed
AFTER UPDATE OF status, progress, "errorMessage" ON "visionJobs"
WHEN {_CHANGED}
BEGIN
    {_INSERT};
END""",
]

POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION vision_job_event() RETURNS trigger AS $$
BEGIN
    {_INSERT};
    PERFORM pg_notify('{CHANNEL}', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE OR REPLACE TRIGGER trg_job_created AFTER INSERT ON "visionJobs"
FOR EACH ROW EXECUTE FUNCTION vision_job_event()""",
    f"""CREATE OR REPLACE TRIGGER trg_job_changed
AFTER UPDATE OF status, progress, "errorMessage" ON "visionJobs"
FOR EACH ROW WHEN ({_CHANGED.replace("IS NOT", "IS DISTINCT FROM")})
EXECUTE FUNCTION vision_job_event()""",
]


def for_dialect(dialect: str) -> list[str]:
    return SQLITE if dialect == "sqlite" else POSTGRES
