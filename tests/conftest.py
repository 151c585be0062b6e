from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.support import Server, image_server, start_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def images() -> Iterator[str]:
    """Base URL of a local HTTP server with test images (see tests.support.image_server)."""
    with image_server() as base:
        yield base


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A running server (API + worker) on its own SQLite file, with JWT_SECRET set."""
    tmp: Path = tmp_path_factory.mktemp("server")
    srv = start_server(tmp / "jobs.db", tmp / "server.log")
    try:
        yield srv
    finally:
        srv.stop()


PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, dropped at the end.

    Skips (saying why) when no server answers at TEST_PG_ADMIN_DSN; .ci/run starts it.
    """
    import asyncpg

    name = f"vp_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        anyio.run(admin, f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        anyio.run(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("pg_url")
    anyio.run(_truncate_all, url)
    return url


async def _truncate_all(url: str) -> None:
    from storage.schema import push
    from storage.urls import parse_database_url

    await push(parse_database_url(url))
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute('TRUNCATE users, "visionJobs", "visionJobOutputs", '
                           '"visionJobSessions" RESTART IDENTITY')  # fmt: skip
    finally:
        await conn.close()
