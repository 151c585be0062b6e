"""Test support: real servers in subprocesses and a local image server (no internet)."""

from __future__ import annotations

import base64
import http.server
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from PIL import Image

from rpc.auth.tokens import mint_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-for-vision-pipeline-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def data_url(color: tuple[int, int, int]) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(color)).decode()


@dataclass
class Server:
    """A ``vision-pipeline`` process (serve or worker) on a fresh or shared database."""

    base: str
    db_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def trpc(self) -> str:
        return self.base + "/api/trpc"

    def token(self, open_id: str, name: str | None = None, **kw: Any) -> str:
        return mint_token(SECRET, open_id, name=name, **kw)

    def client(self, open_id: str | None = None, **kw: Any) -> httpx.Client:
        headers = {}
        if open_id is not None:
            headers["authorization"] = f"Bearer {self.token(open_id)}"
        return httpx.Client(base_url=self.trpc, headers=headers, timeout=30, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement on the server's database, whichever backend it is (``?`` params)."""
        return sql(self.database_url, statement, *args)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def sql(database_url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """One statement on a database by URL, from sync test code (``?`` placeholders)."""
    if database_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(database_url.split(":///", 1)[1], timeout=30)
        try:
            found = conn.execute(statement, args).fetchall()
            conn.commit()
            return found
        finally:
            conn.close()
    import anyio
    import asyncpg

    parts = statement.split("?")
    numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [tuple(r) for r in await conn.fetch(numbered, *args)]
        finally:
            await conn.close()

    return anyio.run(run)


PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_pg_database(prefix: str = "vp_test") -> str:
    """A new, empty PostgreSQL database; returns its URL. Raises OSError when unreachable."""
    import uuid

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    sql(PG_ADMIN_DSN, f'CREATE DATABASE "{name}"')
    return PG_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    sql(PG_ADMIN_DSN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def own_pg_database(prefix: str = "vp_test") -> Iterator[str]:
    """A new, empty PostgreSQL database for the block, dropped after it; the test skips,
    saying why, when no server answers at TEST_PG_ADMIN_DSN (.ci/run starts it)."""
    import pytest

    try:
        url = create_pg_database(prefix)
    except Exception as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    try:
        yield url
    finally:
        drop_pg_database(url)


def server_env(db_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "DEEPSEEK"))}
    env.update(
        DATABASE_URL=f"sqlite:///{db_path}",
        JWT_SECRET=SECRET,
        IMAGE_FETCH_ALLOW_PRIVATE="true",
        # Load tests make hundreds of jobs a minute; tests/test_quotas.py sets its own.
        JOBS_PER_MINUTE_PER_USER="0",
        MAX_WAITING_JOBS_PER_USER="0",
        RETRY_DELAY_MS="20",
        POLL_INTERVAL_MS="200",
        PROVIDERS="offline",
        LOG_LEVEL="info",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def start_process(
    args: list[str], db_path: Path, log_path: Path, *, port: int | None = None, **env: str
) -> Server:
    full_env = server_env(db_path, **env)
    log = open(log_path, "ab")  # kept open for the child's lifetime
    process = subprocess.Popen(
        [sys.executable, "-m", "rpc.cli", *args], cwd=ROOT, env=full_env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}" if port else ""
    server = Server(base, db_path, process, log_path, full_env)
    if port:
        _wait_ready(server)
    return server


def start_server(db_path: Path, log_path: Path, *extra: str, **env: str) -> Server:
    port = free_port()
    args = ["serve", "--port", str(port), *extra]
    return start_process(args, db_path, log_path, port=port, **env)


def _wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(server.base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log()}")


def wait_for_status(
    client: httpx.Client, job_id: int, statuses: tuple[str, ...] = ("complete", "error"),
    timeout: float = 30,
) -> dict[str, Any]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/visionPipeline.getJobStatus", params={"input": f'{{"jobId":{job_id}}}'})
        data: dict[str, Any] = r.json()["result"]["data"]
        if data["status"] in statuses:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {data['status']}: {data}")
        time.sleep(0.05)


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, str, bytes]]] = {}
    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        path = self.path
        if path.startswith("/slow/"):  # /slow/<seconds>/<image>: answers after a delay
            _, _, seconds, path = path.split("/", 3)
            time.sleep(float(seconds))
            path = "/" + path
        status, ctype, body = self.routes.get(path, (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def image_server() -> Iterator[str]:
    """Serves /red.png, /blue.png, /green.png, /page.html, /fake.png, /fail (500), and
    /slow/<seconds>/<any of those> after a delay; anything else is 404."""
    _ImageHandler.routes = {
        "/red.png": (200, "image/png", png_bytes((230, 20, 20))),
        "/blue.png": (200, "image/png", png_bytes((20, 40, 220))),
        "/green.png": (200, "image/png", png_bytes((20, 200, 40))),
        "/page.html": (200, "text/html", b"<html><body>not an image</body></html>"),
        "/fake.png": (200, "image/png", b"this is text pretending to be a png"),
        "/fail": (500, "text/plain", b"boom"),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def adhoc(sql: str, name: str = "test") -> Any:
    """A test's own statement for both drivers: write ``$1``-style parameters; SQLite runs
    them as ``?1`` (the product's statements are written out per dialect in storage/sql/)."""
    from storage.queries import Query

    return Query(name, "a test's own statement", sql, re.sub(r"\$(\d+)", r"?\1", sql))


async def scalar(store: Any, sql: str, *args: Any) -> Any:
    """One value read through the store's own driver (works on every backend).

    Write ``$1``-style parameters; SQLite runs them as ``?1``."""
    from storage.driver import fetch_one

    row = await store.driver.read(fetch_one(adhoc(sql), *args))
    return None if row is None else row[0]


async def rows(store: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    from storage.driver import fetch_all

    found = await store.driver.read(fetch_all(adhoc(sql), *args))
    return [tuple(r) for r in found]


def reset_database(url: str) -> None:
    """Create the tables if needed and empty them (a PostgreSQL database shared by tests)."""
    import anyio

    from storage.schema import push
    from storage.urls import parse_database_url

    anyio.run(push, parse_database_url(url))
    sql(url, 'TRUNCATE users, "visionJobs", "visionJobOutputs", "visionJobSessions", '
        '"visionJobEvents", "visionImages" RESTART IDENTITY')  # fmt: skip


@contextmanager
def backend_server(backend: str, tmp: Path, *args: str, prefix: str = "vp_srv", **env: str
                   ) -> Iterator[Server]:  # fmt: skip
    """A server on a database of its own: a SQLite file in ``tmp``, or a fresh PostgreSQL
    database (dropped afterwards; the test is skipped, saying why, when none answers)."""
    import pytest

    pg_url = None
    if backend == "postgresql":
        try:
            pg_url = create_pg_database(prefix)
        except Exception as exc:
            pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
        env["DATABASE_URL"] = pg_url
    srv = start_server(tmp / "jobs.db", tmp / "server.log", *args, **env)
    try:
        yield srv
    finally:
        srv.stop()
        if pg_url is not None:
            drop_pg_database(pg_url)


CLIENT_DIR = Path(__file__).resolve().parent / "client"


def install_client() -> None:
    """tests/client's node_modules (the genuine @trpc/client and superjson), installed with
    ``npm ci`` when missing or older than the lockfile; skips the test without Node.js/npm."""
    import pytest

    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js/npm are not installed: this test runs the genuine JS libraries")
    marker = CLIENT_DIR / "node_modules" / ".package-lock.json"
    lock = CLIENT_DIR / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENT_DIR, check=True,
                   capture_output=True, timeout=600)  # fmt: skip
