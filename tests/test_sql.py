"""The statements in storage/sql/: each one compiles as written on a fresh database of its
dialect, both files name the same statements (but a listed few), the code asks only for
statements that exist, and every status, stage and progress value in them is
storage.jobstate's."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import anyio
import asyncpg
import pytest

from storage import tables, triggers
from storage.jobstate import PROGRESS, JobStatus, Stage
from storage.queries import QUERIES, parse
from storage.schema import push
from storage.urls import parse_database_url
from tests.support import reset_database

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "storage" / "sql"
# PostgreSQL writes a completion's outputs and attempt rows, and can claim the next jobs, in
# the completing statement (data-modifying CTEs); SQLite writes those rows with two more.
# Housekeeping's lock is an advisory lock on PostgreSQL, a file lock on SQLite. Retention's
# VACUUM (Driver.reclaim_space) is PostgreSQL's only: SQLite reuses freed pages by itself. It
# cannot run inside a transaction block (the driver runs it alone, outside one); it does
# prepare (Parse/Describe, below), so the compile check holds for it too.
ONLY_POSTGRES = {"complete_and_claim", "try_exclusive_lock", "vacuum_pruned_tables"}
ONLY_SQLITE = {"insert_outputs", "insert_attempts"}
# Quoted words the statements may hold besides statuses and stages: a user's default role.
OTHER_WORDS = {"user"}


def _texts(dialect: str) -> dict[str, str]:
    return {name: sql for name, (_, sql) in parse((SQL / f"{dialect}.sql").read_text()).items()}


def test_both_dialects_name_the_same_statements_but_a_listed_few() -> None:
    postgres, sqlite = set(_texts("postgres")), set(_texts("sqlite"))
    assert postgres - sqlite == ONLY_POSTGRES
    assert sqlite - postgres == ONLY_SQLITE
    assert all(q.description and not q.description.startswith("-") for q in QUERIES.values())


def test_the_code_asks_only_for_statements_that_exist() -> None:
    used: set[str] = set()
    for module in (ROOT / "storage").glob("*.py"):
        used |= set(re.findall(r'QUERIES\["([a-z_]+)"\]', module.read_text()))
    from storage.changes import EventsOf

    used |= {str(of) for of in EventsOf}
    assert used <= set(QUERIES), used - set(QUERIES)
    assert set(QUERIES) - used == set(), "a statement nothing runs"


def test_every_status_stage_and_progress_in_the_statements_is_the_job_states() -> None:
    statuses = {str(s) for s in JobStatus}
    for dialect in ("postgres", "sqlite"):
        for name, sql in _texts(dialect).items():
            where = f"{dialect}:{name}"
            for listed in re.findall(r"status\s+IN\s*\(([^)]*)\)", sql):
                assert set(re.findall(r"'(\w+)'", listed)) <= statuses, where
            for value in re.findall(r"status\s*=\s*'(\w+)'", sql):
                assert value in statuses, where
            for value in re.findall(r'"errorStage"\s*=\s*\'(\w+)\'', sql):
                assert value in {str(s) for s in Stage}, where
            for status, progress in re.findall(r"status = '(\w+)', progress = (\d+)", sql):
                assert PROGRESS[JobStatus(status)] == int(progress), where
            case = re.search(r"THEN '(\w+)'\s+ELSE '(\w+)' END,\s*progress = CASE WHEN "
                             r"\S+ IS NULL THEN (\d+) ELSE (\d+) END", sql)  # fmt: skip
            if case:  # the claim: the stage a job resumes at, and its progress
                first, resumed, first_progress, resumed_progress = case.groups()
                assert (first, resumed) == (JobStatus.ANALYZING, JobStatus.GENERATING), where
                assert PROGRESS[JobStatus.ANALYZING] == int(first_progress), where
                assert PROGRESS[JobStatus.GENERATING] == int(resumed_progress), where
            words = set(re.findall(r"'([a-z_]+)'", sql))
            assert words <= statuses | {str(s) for s in Stage} | OTHER_WORDS, where


def test_the_ddl_names_only_job_statuses_too() -> None:
    statuses = {str(s) for s in JobStatus}
    conditions = [
        str(index.dialect_options[dialect]["where"])
        for table in tables.metadata().sorted_tables
        for index in table.indexes
        for dialect in ("sqlite", "postgresql")
        if index.dialect_options[dialect]["where"] is not None
    ]
    for text in [*conditions, *triggers.SQLITE, *triggers.POSTGRES]:
        words = set(re.findall(r"'([a-z_]+)'", text)) - {triggers.CHANNEL}
        assert words <= statuses, text


def test_statements_on_partial_indexes_name_their_condition_word_for_word() -> None:
    for dialect in ("postgres", "sqlite"):
        for name in ("next_inline_image_job", "set_inline_image_url"):
            assert tables.INLINE_IMAGE_JOB in _texts(dialect)[name]


def test_a_statement_needs_its_description_and_its_semicolon() -> None:
    with pytest.raises(ValueError, match="description"):
        parse("-- name: bare --\nSELECT 1;\n")
    with pytest.raises(ValueError, match="';'"):
        parse("-- name: two --\n-- two statements\nSELECT 1; SELECT 2;\n")
    assert parse("-- name: one --\n-- one\n--   why\nSELECT 1;\n\n-- === next ===\n") == {
        "one": ("one", "SELECT 1")
    }


def test_every_sqlite_statement_compiles_on_a_fresh_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    anyio.run(push, parse_database_url(f"sqlite:///{path}"))
    conn = sqlite3.connect(path)
    try:
        for name, sql in _texts("sqlite").items():
            count = max((int(n) for n in re.findall(r"\?(\d+)", sql)), default=0)
            try:
                conn.execute("EXPLAIN " + sql, [None] * count).fetchall()
            except sqlite3.Error as exc:
                pytest.fail(f"{name}: {exc}")
    finally:
        conn.close()


@pytest.mark.postgres
def test_every_postgresql_statement_prepares_on_a_fresh_database(pg_url: str) -> None:
    reset_database(pg_url)

    async def prepare_all() -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            for name, sql in _texts("postgres").items():
                try:
                    await conn.prepare(sql)
                except asyncpg.PostgresError as exc:
                    pytest.fail(f"{name}: {exc}")
        finally:
            await conn.close()

    anyio.run(prepare_all)


# The result cache's lookups name `key = $1`, which implies the partial indexes' `key IS NOT
# NULL`: each backend must see that, or a lookup would read the whole table.
CACHE_LOOKUPS = {"cache_vision_answer": "idx_visionCacheKey",
                 "cache_content_answer": "idx_contentCacheKey"}  # fmt: skip


def test_the_cache_lookups_use_their_partial_index_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    anyio.run(push, parse_database_url(f"sqlite:///{path}"))
    conn = sqlite3.connect(path)
    try:
        for name, index in CACHE_LOOKUPS.items():
            sql = _texts("sqlite")[name]
            plan = conn.execute("EXPLAIN QUERY PLAN " + sql, ["k" * 64, "2026-01-01", 1]).fetchall()
            assert any(f"INDEX {index} " in str(row[-1]) for row in plan), (name, plan)
    finally:
        conn.close()


@pytest.mark.postgres
def test_the_cache_lookups_use_their_partial_index_on_postgresql(pg_url: str) -> None:
    reset_database(pg_url)

    async def plans() -> dict[str, str]:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("SET enable_seqscan = off")  # an empty table: force the question
            found = {}
            for name in CACHE_LOOKUPS:
                sql = _texts("postgres")[name].replace("$1", "'k'").replace("$2", "now()")
                sql = sql.replace("$3::integer", "1")
                rows = await conn.fetch("EXPLAIN " + sql)
                found[name] = "\n".join(r[0] for r in rows)
            return found
        finally:
            await conn.close()

    for name, plan in anyio.run(plans).items():
        assert CACHE_LOOKUPS[name] in plan, (name, plan)


_USERS = """INSERT INTO users ("openId", name, role, "createdAt", "updatedAt", "lastSignedIn")
    SELECT 'fair-' || g, 'u', 'user', now(), now(), now() FROM generate_series(1, $1) AS g"""
_JOBS = """INSERT INTO "visionJobs" ("userId", "imageUrl", "analysisPurpose", "outputFormat",
    "creativityLevel", status, progress, "retryCount", "maxRetries", "createdAt", "updatedAt",
    "runAfter", attempt, "cancelRequested", "costUsd")
    SELECT u.id, 'https://example.test/x.png', 'p', 'bullet_points', 1, $2, 0, 0, 3, now(),
        now(), now(), 0, FALSE, 0
    FROM generate_series(1, $1) AS g JOIN users AS u ON u."openId" = 'fair-' || (1 + g % $3)"""


async def _claim_plans(
    pg_url: str, users: int, complete: int, analyze: bool, pending: int
) -> dict[str, str]:
    """The generic plans of both claim statements once ``complete`` finished jobs of ``users``
    users exist (and were analysed, if ``analyze``), then ``pending`` waiting jobs arrived."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(_USERS, users)
        await conn.execute(_JOBS, complete, "complete", users)
        if analyze:
            await conn.execute('ANALYZE "visionJobs"')
        await conn.execute(_JOBS, pending, "pending", users)
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        now = await conn.fetchval("SELECT now()")
        found = {}
        for name, args in (("claim_jobs", ("w", now, now, 16, 0)),
                           ("complete_and_claim", (now, "[]", "w", now, 16, 0))):  # fmt: skip
            statement = await conn.prepare("EXPLAIN " + _texts("postgres")[name])
            found[name] = "\n".join(r[0] for r in await statement.fetch(*args))
        return found
    finally:
        await conn.close()


def _assert_fair_plan(name: str, plan: str) -> None:
    """The walk and the candidates on idx_fair, the pick by ctid; no scan that reads every
    waiting job (or every waiting job of a user) through another index, and none of the whole
    table."""
    assert "idx_fair" in plan and "Tid Scan" in plan, (name, plan)
    lines = plan.splitlines()
    scan = ""  # the scan node the Index Cond and Filter lines that follow belong to
    for i, line in enumerate(lines):
        assert "Seq Scan" not in line, (name, plan)
        if " Scan " in line:
            scan = line
        if "Index Cond" in line and "'pending'" in line:
            raise AssertionError((name, lines[i - 1], plan))
        reads_jobs = 'on "visionJobs"' in scan and "idx_fair" not in scan
        if "Filter" in line and "'pending'" in line and reads_jobs:
            raise AssertionError((name, scan, line, plan))


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("users", "complete", "analyze", "pending"),
    [(100, 3000, True, 2000), (100, 0, False, 20), (1, 0, False, 300)],
    ids=["analysed-drained-then-a-backlog", "never-analysed-and-small", "never-analysed-one-user"],
)
def test_the_fair_claims_plans_hold_whatever_the_statistics(
    pg_url: str, users: int, complete: int, analyze: bool, pending: int
) -> None:
    """States a generic plan is made in: ANALYZE saw the queue drained (the usual state), then
    a backlog arrives; a new, small table, as a worker first claims; a new table where one
    user's backlog arrives before the worker's plan is made. With the obvious wording, the
    first probed idx_status for every user walked, the second read the whole table to lock the
    chosen rows, and the third probed idx_userId_status and sorted all of the user's waiting
    jobs, twice per claim (bench/RESULTS.md §21, §29)."""
    reset_database(pg_url)
    plans = anyio.run(_claim_plans, pg_url, users, complete, analyze, pending)
    for name, plan in plans.items():
        _assert_fair_plan(name, plan)
