from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage.engine import open_store
from storage.store import JobStore
from tests.support import (
    Server,
    backend_server,
    image_server,
    own_pg_database,
    reset_database,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def images() -> Iterator[str]:
    """Base URL of a local HTTP server with test images (see tests.support.image_server)."""
    with image_server() as base:
        yield base


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:  # fmt: skip
    """A running server (API + worker) with JWT_SECRET set, on a database of its own: a
    SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    with backend_server(request.param, tmp_path_factory.mktemp("server")) as srv:
        yield srv


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, dropped at the end.

    Skips (saying why) when no server answers at TEST_PG_ADMIN_DSN; .ci/run starts it.
    """
    with own_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("pg_url")
    reset_database(url)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JobStore]:
    """A store on a fresh database of each backend (no change feed running)."""
    s = await open_store(database_url, create=True)
    try:
        yield s
    finally:
        await s.driver.close()
