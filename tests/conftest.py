from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
