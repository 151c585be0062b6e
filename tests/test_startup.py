"""Starting up (issue 15, items 2 and 3): no command but serve, worker and db upgrade creates a
database; bad configuration, a missing or unreachable database, a port in use and a schema of
another version are one line on stderr and exit 2, never a traceback (but with
LOG_LEVEL=debug); serve and worker say at start what they run against."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.migrate import HEAD
from tests.schemas import create_previous_release
from tests.support import (
    ROOT,
    free_port,
    own_pg_database,
    server_env,
    sql,
    start_server,
)

ADMIN_COMMANDS = [
    ["users", "set-role", "nobody", "admin"],
    ["jobs", "retry", "1"],
    ["jobs", "cancel", "1"],
    ["db", "current"],
    ["db", "check"],
    ["db", "convert-images"],
]


def run(args: list[str], cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    full = server_env(Path("unused.db"), **env)
    return subprocess.run([sys.executable, "-m", "rpc.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one line a refusal prints (asserting exit 2, no traceback, nothing else)."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vision-pipeline: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def pg_database() -> Iterator[str]:
    with own_pg_database("vp_start") as url:
        yield url


@pytest.mark.parametrize("args", ADMIN_COMMANDS, ids=" ".join)
def test_admin_commands_on_a_missing_sqlite_file_create_nothing(
    args: list[str], tmp_path: Path
) -> None:
    done = run(args, cwd=tmp_path, DATABASE_URL="sqlite:///vision-pipeline.db")
    refused(done, "DATABASE_URL=sqlite:///vision-pipeline.db", str(tmp_path), "db upgrade")
    assert list(tmp_path.iterdir()) == []


def test_token_needs_no_database_and_creates_none(tmp_path: Path) -> None:
    done = run(["token", "--open-id", "ann"], cwd=tmp_path, DATABASE_URL="sqlite:///x.db")
    assert done.returncode == 0 and done.stdout.count(".") == 2  # a JWT
    assert list(tmp_path.iterdir()) == []


def test_admin_commands_on_a_database_without_tables_say_so(pg_database: str) -> None:
    for args in ADMIN_COMMANDS[:4]:
        refused(run(args, DATABASE_URL=pg_database), "has no tables", "db upgrade")
    assert sql(pg_database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"WORKER_CONCURRENCY": "abc"}, ["WORKER_CONCURRENCY='abc'", "valid integer"]),
        ({"LOG_LEVEL": "verbose"}, ["LOG_LEVEL='verbose'", "'debug', 'info'"]),
        ({"SSE_PING_MS": "40000"}, ["SSE_PING_MS (40000) must be less than"]),
        ({"DATABASE_URL": "mysql://u@h/db"}, ["unsupported database"]),
        ({"JWT_SECRET": "", "MAX_BODY_BYTES": "12"}, ["MAX_BODY_BYTES='12'"]),
    ],
)
def test_bad_configuration_is_one_line(env: dict[str, str], words: list[str], tmp_path: Path
                                       ) -> None:  # fmt: skip
    env.setdefault("DATABASE_URL", f"sqlite:///{tmp_path / 'jobs.db'}")
    for args in (["worker"], ["db", "upgrade"]):
        refused(run(args, **env), *words)


def test_a_secret_setting_is_never_echoed() -> None:
    line = refused(run(["db", "current"], GEMINI_REQUESTS_PER_MINUTE="x", JWT_SECRET="s" * 40,
                       GEMINI_API_KEY="sk-hidden", GEMINI_MAX_OUTPUT_TOKENS="no"))  # fmt: skip
    assert "GEMINI_MAX_OUTPUT_TOKENS:" in line and "sk-hidden" not in line


def test_a_missing_postgresql_database_and_a_refused_connection(pg_database: str) -> None:
    missing = pg_database + "_missing"
    for args in (["worker"], ["users", "set-role", "x", "admin"], ["db", "upgrade"]):
        refused(run(args, DATABASE_URL=missing), missing, "does not exist")
    closed = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/x"
    line = refused(run(["worker"], DATABASE_URL=closed), "cannot connect", "postgres:***@")
    assert "hunter2" not in line
    # LOG_LEVEL=debug: the same line, after the traceback behind it.
    debug = run(["worker"], DATABASE_URL=closed, LOG_LEVEL="debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == line


def test_a_sqlite_file_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'jobs.db'}"
    for args in (["db", "upgrade"], ["worker"]):
        refused(run(args, DATABASE_URL=url), url, "cannot open the SQLite file")


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run(["serve", "--port", str(port)], DATABASE_URL=f"sqlite:///{tmp_path / 'j.db'}")
    refused(done, f"port {port} on 127.0.0.1 is in use")
    assert not (tmp_path / "j.db").exists()  # refused before touching the database


def test_a_newer_schema_is_refused_by_every_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    assert run(["db", "upgrade"], DATABASE_URL=url).returncode == 0
    sql(url, "UPDATE alembic_version SET version_num = '9999'")
    for args in (["worker"], ["db", "upgrade"], ["users", "set-role", "x", "admin"],
                 ["serve", "--port", str(free_port())]):  # fmt: skip
        refused(run(args, DATABASE_URL=url), "revision 9999, newer than", HEAD)
    assert sql(url, "SELECT version_num FROM alembic_version") == [("9999",)]


def test_migrate_on_start_false_refuses_an_older_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    create_previous_release(url)
    for args in (["worker"], ["serve", "--port", str(free_port())]):
        refused(run(args, DATABASE_URL=url, MIGRATE_ON_START="false"), "0.1.0", "db upgrade")
    assert sql(url, "SELECT name FROM sqlite_master WHERE name = 'alembic_version'") == []
    refused(run(["worker"], DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}",
                MIGRATE_ON_START="false"), "there is no file")  # fmt: skip
    assert not (tmp_path / "new.db").exists()


def test_serve_says_what_it_runs_against_and_upgrades_an_older_schema(
    tmp_path: Path, pg_database: str
) -> None:
    create_previous_release(pg_database)
    url = pg_database.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    server = start_server(tmp_path / "unused.db", tmp_path / "serve.log", DATABASE_URL=url,
                          WORKER_CONCURRENCY="3")  # fmt: skip
    try:
        server.stop()
    finally:
        server.stop()
    [banner] = [line for line in server.log().splitlines() if "vision-pipeline 0.1" in line]
    assert "serve on 127.0.0.1:" in banner
    assert f"database {url.replace('hunter2', '***')}" in banner and "hunter2" not in banner
    assert f"schema {HEAD} (upgraded from 0.1.0)" in banner
    assert "auth JWT" in banner and "vision=offline content=offline" in banner
    assert "worker concurrency 3" in banner


def test_worker_says_what_it_runs_against_and_creates_its_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = server_env(tmp_path / "jobs.db", JWT_SECRET="")
    process = subprocess.Popen(
        [sys.executable, "-m", "rpc.cli", "worker"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "vision-pipeline 0.1" in line:
                break
    finally:
        process.terminate()
        process.wait(30)
    assert f"worker: database {url}, schema {HEAD} (created)" in line
    assert "auth local (no JWT_SECRET)" in line and "concurrency 16" in line
