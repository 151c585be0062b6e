"""Versioned migrations (issue 15, item 5): a database upgraded to head is what the models,
triggers and partial indexes describe; 0.1.0's databases upgrade with their rows; a dropped
index or trigger is reported by `db check` and restored by `db upgrade`; processes starting
together on a fresh database end with one schema; `db current`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from alembic.script import ScriptDirectory

from storage import migrate
from storage.migrate import HEAD, inspect_schema, upgrade
from storage.urls import parse_database_url
from tests.schemas import create_previous_release, describe
from tests.support import (
    ROOT,
    free_port,
    own_pg_database,
    server_env,
    sql,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of each backend (PostgreSQL: dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    with own_pg_database("vp_mig") as url:
        yield url


def _second(fresh: str, tmp_path: Path) -> Iterator[str]:
    if fresh.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    with own_pg_database("vp_mig") as url:
        yield url


def cli(url: str, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    full = server_env(Path("unused.db"), DATABASE_URL=url, **env)
    return subprocess.run([sys.executable, "-m", "rpc.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _upgrade(url: str) -> migrate.Upgrade:
    return anyio.run(upgrade, parse_database_url(url))


def _differences(url: str) -> list[str]:
    state = anyio.run(lambda: inspect_schema(parse_database_url(url), check=True))
    return [str(d) for d in state.differences]


def test_head_is_alembics_head_and_the_only_one() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert scripts.get_heads() == [HEAD]


def test_a_database_upgraded_to_head_is_what_the_models_describe(fresh: str) -> None:
    done = _upgrade(fresh)
    # Nothing to restore after the revisions: they alone built what the models describe (a
    # table, index or trigger added to the code without a revision would be "repaired").
    assert (done.before, done.after, done.stamped, done.added, done.repaired) == (
        None, HEAD, False, (), ()
    )  # fmt: skip
    assert _differences(fresh) == []
    assert sql(fresh, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    # The comparison can fail: a column or index the models do not have is reported, as a
    # model change without its migration would be.
    sql(fresh, 'ALTER TABLE "visionJobs" ADD COLUMN "notInTheModels" INTEGER')
    sql(fresh, 'CREATE INDEX idx_not_in_the_models ON "visionJobs" ("notInTheModels")')
    assert _differences(fresh) == [
        "extra column visionJobs.notInTheModels",
        "extra index visionJobs.idx_not_in_the_models",
    ]


def test_a_database_at_0002_gains_the_fair_claims_index_by_its_revision(fresh: str) -> None:
    _upgrade(fresh)
    sql(fresh, "DROP INDEX idx_fair")
    sql(fresh, "UPDATE alembic_version SET version_num = '0002'")
    assert _differences(fresh) == ["missing index visionJobs.idx_fair"]
    done = _upgrade(fresh)
    # Revision 0003 made it (not the repair after the revisions), partial as the models say.
    assert (done.before, done.after, done.repaired) == ("0002", HEAD, ())
    assert _differences(fresh) == []


def test_a_partial_index_made_whole_is_a_difference(fresh: str) -> None:
    _upgrade(fresh)
    sql(fresh, "DROP INDEX idx_claim")
    sql(fresh, 'CREATE INDEX idx_claim ON "visionJobs" ("runAfter", id)')
    assert _differences(fresh) == ["differs partial index idx_claim (it has no WHERE condition)"]


def test_a_changed_trigger_is_a_difference(fresh: str) -> None:
    _upgrade(fresh)
    if fresh.startswith("sqlite"):
        sql(fresh, "DROP TRIGGER trg_job_created")
        sql(
            fresh, 'CREATE TRIGGER trg_job_created AFTER INSERT ON "visionJobs" BEGIN SELECT 1; END'
        )
    else:
        sql(fresh, "CREATE OR REPLACE FUNCTION vision_jobs_inserted() RETURNS trigger AS $$ "
            "BEGIN RETURN NULL; END $$ LANGUAGE plpgsql")  # fmt: skip
    assert _differences(fresh) == [
        "differs trigger trg_job_created (not this version's definition)"
    ]


def _fill_previous_release(url: str) -> None:
    """Rows as 0.1.0 wrote them: a user, a finished job with its output, attempt and image
    (the insert trigger writes its event)."""
    now = "'2026-01-02 03:04:05+00:00'"  # a literal both databases read as their timestamp
    sql(
        url,
        f"""INSERT INTO users ("openId", name, role, "createdAt", "updatedAt",
        "lastSignedIn") VALUES ('ann', 'Ann', 'admin', {now}, {now}, {now})""",
    )
    sql(
        url,
        f"""INSERT INTO "visionImages" ("userId", sha256, "mimeType", "byteSize", data,
        "createdAt") VALUES (1, ?, 'image/png', 3, ?, {now})""",
        "ab" * 32,
        b"PNG",
    )
    sql(
        url,
        f"""INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose",
        "outputFormat", "creativityLevel", status, progress, "retryCount", "maxRetries",
        "createdAt", "updatedAt", "runAfter", attempt, "cancelRequested", "costUsd",
        "geminOutput") VALUES (1, ?, 'brand', 'bullet_points', 1.0, 'complete', 100, 0, 3,
        {now}, {now}, {now}, 1, FALSE, 0.25, '{{"mood": "calm"}}')""",
        "/api/images/" + "ab" * 32,
    )
    sql(
        url,
        f"""INSERT INTO "visionJobOutputs" ("jobId", "userId", mood, "isTrainingData",
        "createdAt") VALUES (1, 1, 'calm', TRUE, {now})""",
    )
    sql(
        url,
        f"""INSERT INTO "visionJobSessions" ("jobId", attempt, outcome, "endedAt",
        "geminiInputTokens", "geminiOutputTokens", "geminiLatencyMs", "deepseekInputTokens",
        "deepseekOutputTokens", "deepseekLatencyMs", "costUsd")
        VALUES (1, 1, 'complete', {now}, 120, 30, 900, 0, 0, 0, 0.25)""",
    )


def _rows(url: str) -> list[object]:
    return [
        sql(url, 'SELECT "openId", name, role FROM users'),
        sql(url, 'SELECT sha256, "byteSize" FROM "visionImages"'),
        sql(url, 'SELECT id, status, progress, "costUsd", "geminOutput" FROM "visionJobs"'),
        sql(url, 'SELECT "jobId", mood FROM "visionJobOutputs"'),
        sql(url, 'SELECT "jobId", outcome, "geminiInputTokens" FROM "visionJobSessions"'),
        sql(url, 'SELECT "jobId", status, progress FROM "visionJobEvents"'),
    ]


def test_a_previous_release_database_upgrades_with_its_rows_to_the_fresh_schema(
    fresh: str, tmp_path: Path
) -> None:
    create_previous_release(fresh)
    _fill_previous_release(fresh)
    before = _rows(fresh)
    assert before[2] == [(1, "complete", 100, 0.25, '{"mood": "calm"}')]
    assert before[5] == [(1, "complete", 100)]  # the 0.1.0 trigger wrote it
    done = _upgrade(fresh)
    assert (done.before, done.after, done.stamped, done.added) == (None, HEAD, True, ())
    assert _rows(fresh) == before
    assert _differences(fresh) == []
    for other in _second(fresh, tmp_path):
        _upgrade(other)
        assert describe(fresh) == describe(other)
    # Upgrading again changes nothing.
    assert not _upgrade(fresh).changed


def test_a_dropped_index_and_trigger_are_reported_by_db_check_and_restored_by_upgrade(
    fresh: str,
) -> None:
    assert cli(fresh, "db", "upgrade").stdout == f"created the schema at revision {HEAD}\n"
    sql(fresh, "DROP INDEX idx_claim")
    on = "" if fresh.startswith("sqlite") else ' ON "visionJobs"'
    sql(fresh, f"DROP TRIGGER trg_job_deleted{on}")
    check = cli(fresh, "db", "check")
    assert check.returncode == 1, check.stderr
    assert "missing index visionJobs.idx_claim\n" in check.stdout
    assert "missing trigger trg_job_deleted\n" in check.stdout
    done = cli(fresh, "db", "push")  # 0.1.0's name: an alias of upgrade
    assert done.returncode == 0, done.stderr
    assert "restored: missing index visionJobs.idx_claim, missing trigger trg_job_deleted" in (
        done.stdout
    )
    check = cli(fresh, "db", "check")
    assert (check.returncode, check.stdout) == (0, f"schema matches revision {HEAD}\n")


def test_db_current_says_the_revision(fresh: str) -> None:
    create_previous_release(fresh)
    older = cli(fresh, "db", "current")
    assert (older.returncode, older.stdout) == (1, f"0.1.0 (no revision) (this version's head: "
                                                   f"{HEAD})\n")  # fmt: skip
    assert (
        cli(fresh, "db", "upgrade").stdout
        == f"upgraded the schema from 0.1.0 (no revision) to {HEAD}\n"
    )
    current = cli(fresh, "db", "current")
    assert (current.returncode, current.stdout) == (0, f"{HEAD} (head)\n")


def test_six_processes_upgrading_a_fresh_database_at_once_end_with_one_schema(
    fresh: str, tmp_path: Path
) -> None:
    env = server_env(Path("unused.db"), DATABASE_URL=fresh)
    processes = [
        subprocess.Popen([sys.executable, "-m", "rpc.cli", "db", "upgrade"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=180) for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, outputs
    said = sorted(out for out, _ in outputs)
    assert (
        said
        == [f"created the schema at revision {HEAD}\n"]
        + [f"the schema is up to date (revision {HEAD})\n"] * 5
    )
    assert sql(fresh, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert _differences(fresh) == []
    assert not any("Traceback" in err for _, err in outputs)
    assert os.environ.get("DATABASE_URL") != fresh  # the test's own database, not the user's


def test_six_api_processes_starting_at_once_on_a_fresh_database_all_serve(
    fresh: str, tmp_path: Path
) -> None:
    """The fleet rollout of the issue: six `serve --no-worker` at the same moment on an empty
    database (0.1.0: one died on a duplicate pg_type row)."""
    ports = [free_port() for _ in range(6)]
    env = server_env(Path("unused.db"), DATABASE_URL=fresh)
    logs = [tmp_path / f"serve{i}.log" for i in range(6)]
    processes = []
    for port, log in zip(ports, logs, strict=True):
        with open(log, "wb") as out:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "rpc.cli", "serve", "--no-worker", "--port", str(port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            ))  # fmt: skip
    try:
        for port, process, log in zip(ports, processes, logs, strict=True):
            assert _healthy(port, process), log.read_text()
    finally:
        for process in processes:
            process.terminate()
        codes = [process.wait(60) for process in processes]
    assert codes == [0] * 6, [log.read_text() for log in logs]
    banners = [line for log in logs for line in log.read_text().splitlines() if "schema" in line]
    assert sum(f"schema {HEAD} (created)" in line for line in banners) == 1, banners
    assert _differences(fresh) == []


def _healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


async def _alembic_to(url: str, action: str, revision: str) -> None:
    engine = migrate.engine_for(parse_database_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: migrate._alembic(c, action, revision))
    finally:
        await engine.dispose()


def test_revision_0005_adds_the_result_cache_to_a_database_at_0002_with_its_rows(
    fresh: str,
) -> None:
    """The result cache's revision (issue 17) on a database at 0002 holding a job and its
    attempt: the job is not bypassing the cache and has no keys, the attempt no cached-from;
    the schema is the models' (at the head, past 0005); down to 0002 and up again gives
    the same."""
    anyio.run(_alembic_to, fresh, "upgrade", "0002")
    _fill_previous_release(fresh)
    anyio.run(_alembic_to, fresh, "upgrade", HEAD)
    assert _differences(fresh) == []
    assert sql(fresh, 'SELECT "bypassCache", "visionCacheKey", "contentCacheKey" '
                      'FROM "visionJobs"') == [(False, None, None)]  # fmt: skip
    assert sql(fresh, 'SELECT "geminiCachedFrom", "deepseekCachedFrom" '
                      'FROM "visionJobSessions"') == [(None, None)]  # fmt: skip
    anyio.run(_alembic_to, fresh, "downgrade", "0002")
    assert sql(fresh, "SELECT version_num FROM alembic_version") == [("0002",)]
    anyio.run(_alembic_to, fresh, "upgrade", HEAD)
    assert _differences(fresh) == []
    assert _rows(fresh)[2] == [(1, "complete", 100, 0.25, '{"mood": "calm"}')]


def _upgrade_to(url: str, revision: str) -> None:
    """Alembic alone, to ``revision`` (what an older release's ``db upgrade`` left)."""


def _upgrade_to(url: str, revision: str) -> None:
    async def run() -> None:
        engine = migrate.engine_for(parse_database_url(url))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(lambda c: migrate._alembic(c, "upgrade", revision))
        finally:
            await engine.dispose()

    anyio.run(run)


def test_a_0002_database_upgrades_to_0004_with_its_rows(fresh: str) -> None:
    """Revision 0004 (issue 17: idempotencyKey, budgets) on a database 0002 made: the columns
    and indexes added, the rows kept, the keys NULL, the unique index in force."""
    _upgrade_to(fresh, "0002")
    assert "idempotencyKey" not in str(describe(fresh))
    _fill_previous_release(fresh)
    before = _rows(fresh)
    done = _upgrade(fresh)
    assert (done.before, done.after, done.added, done.repaired) == ("0002", HEAD, (), ())
    assert _rows(fresh) == before
    assert _differences(fresh) == []
    assert sql(fresh, 'SELECT "idempotencyKey", "idempotencyFingerprint" FROM "visionJobs"') == [
        (None, None)
    ]
    assert sql(fresh, 'SELECT "dailyBudgetUsd" FROM users') == [(None,)]
    copy = """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose", "outputFormat",
        "creativityLevel", status, progress, "retryCount", "maxRetries", "createdAt",
        "updatedAt", "runAfter", attempt, "cancelRequested", "costUsd", "idempotencyKey")
        SELECT "userId", "imageUrl", "analysisPurpose", "outputFormat", "creativityLevel",
        status, progress, "retryCount", "maxRetries", "createdAt", "updatedAt", "runAfter",
        attempt, "cancelRequested", "costUsd", ? FROM "visionJobs" WHERE id = 1"""
    sql(fresh, copy, None)  # jobs without a key: as many as wanted
    sql(fresh, copy, "k")
    with pytest.raises(Exception, match=r"(?i)unique"):
        sql(fresh, copy, "k")


def test_revision_0006_adds_partial_content_and_the_triggers_copy_it(fresh: str) -> None:
    """Issue 17 part 5: a database at 0002 with a job gets partialContent on the jobs and the
    events, and the event triggers that copy it (a change of it alone is an event)."""
    _upgrade_to(fresh, "0002")
    _fill_previous_release(fresh)
    sql(fresh, """UPDATE "visionJobs" SET status = 'deepseek_generating', progress = 60""")
    done = _upgrade(fresh)
    assert (done.before, done.after, done.repaired) == ("0002", HEAD, ())
    assert _differences(fresh) == []
    sql(fresh, """UPDATE "visionJobs" SET "partialContent" = '{"content_pieces": ['""")
    sql(fresh, """UPDATE "visionJobs" SET status = 'complete', "partialContent" = NULL""")
    assert sql(fresh, 'SELECT status, "partialContent" FROM "visionJobEvents" ORDER BY id') == [
        ("complete", None), ("deepseek_generating", None),
        ("deepseek_generating", '{"content_pieces": ['), ("complete", None),
    ]  # fmt: skip
