"""What every bench section shares: databases of its own, real processes, the API client,
percentiles, RSS, and the result rows the entry point prints and writes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx

from rpc.auth.tokens import mint_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-for-vision-pipeline-0123456789"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
# An 8×8 PNG: the real image loader accepts it and the offline providers read it quickly.
TINY_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGPUqIhiwAaYsIoO"
    "WgkAyDIBCvZzErUAAAAASUVORK5CYII="
)
JOB_INPUT: dict[str, Any] = {
    "imageUrl": TINY_PNG,
    "analysisPurpose": "Brand analysis for wellness product",
    "outputFormat": "detailed_analysis",
    "creativityLevel": 1.0,
}


# -- results -----------------------------------------------------------------------------------


@dataclass
class Section:
    """One section's figures: rows (a case and its metrics) and the targets it checks."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, case: str, **metrics: Any) -> dict[str, Any]:
        entry = {"case": case, **metrics}
        self.rows.append(entry)
        return entry

    def target(self, what: str, measured: str, goal: str, met: bool | None) -> None:
        self.targets.append({"target": what, "measured": measured, "goal": goal, "met": met})


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- databases ---------------------------------------------------------------------------------


class Db:
    """The bench's own connection to a database under test: reads and bulk loads.

    SQL is written with ``$1`` parameters (PostgreSQL's form); SQLite runs ``?1``."""

    def __init__(self, url: str, conn: Any) -> None:
        self.url = url
        self.conn = conn
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"

    @classmethod
    async def open(cls, url: str) -> Db:
        if url.startswith("sqlite"):
            conn = sqlite3.connect(url.split(":///", 1)[1], timeout=60, isolation_level=None)
            return cls(url, conn)
        return cls(url, await asyncpg.connect(url))

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.dialect == "sqlite":
            return self.conn.execute(re.sub(r"\$(\d+)", r"?\1", sql), args).fetchall()  # type: ignore[no-any-return]
        return [tuple(r) for r in await self.conn.fetch(sql, *args)]

    async def scalar(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def close(self) -> None:
        if self.dialect == "sqlite":
            self.conn.close()
        else:
            await self.conn.close()


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def wait_for_postgres(within: float = 120) -> None:
    """PostgreSQL is shared with other people's tests, some of which restart it: wait for it."""
    deadline = time.monotonic() + within
    while True:
        try:
            await _pg_admin("SELECT 1")
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(1)


async def create_pg(prefix: str) -> str:
    name = f"vpbench_{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def drop_pg(url: str) -> None:
    await _pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def database(
    backend: str, tmp: Path, name: str, *, schema: bool = True
) -> AsyncIterator[str]:
    """A fresh database of this bench's own (SQLite file or PostgreSQL database), with the
    project's tables when ``schema``; dropped afterwards."""
    if backend == "sqlite":
        path = tmp / f"{name}_{uuid.uuid4().hex[:6]}.db"
        url = f"sqlite:///{path}"
    else:
        url = await create_pg(name)
    try:
        if schema:
            from storage.schema import push
            from storage.urls import parse_database_url

            await push(parse_database_url(url))
        yield url
    finally:
        if backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                await anyio.Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            with anyio.CancelScope(shield=True):
                await drop_pg(url)


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(open_id: str = "bench") -> str:
    return mint_token(SECRET, open_id, name=open_id)


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log_path: Path
    base: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def process_env(database_url: str, **overrides: str) -> dict[str, str]:
    """Our processes' environment: offline providers, a session secret, the createJob quotas
    off (the bench creates thousands of jobs as one user; it measures the queue), and the
    result cache off (its jobs are identical: cached, they would not measure the queue)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "DEEPSEEK"))}
    env.update(
        DATABASE_URL=database_url,
        JWT_SECRET=SECRET,
        PROVIDERS="offline",
        LOG_LEVEL="info",
        PYTHONUNBUFFERED="1",
        JOBS_PER_MINUTE_PER_USER="0",
        MAX_WAITING_JOBS_PER_USER="0",
        MAX_WAITING_JOBS="0",
        CACHE_TTL_HOURS="0",
    )
    env.update(overrides)
    return env


def spawn(argv: list[str], log_path: Path, env: dict[str, str], cwd: Path = ROOT) -> Proc:
    """Start ``argv`` in ``cwd`` (``python -m`` imports the project from there: a baseline
    checkout's server runs that checkout's code on this venv)."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Proc(process, log_path)


async def wait_for_log(proc: Proc, needle: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while needle not in proc.log():
        if proc.process.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"{proc.process.args!r} did not start:\n{proc.log()[-3000:]}")
        await anyio.sleep(0.05)


async def start_serve(
    database_url: str, log_path: Path, *extra: str, cwd: Path = ROOT, **env: str
) -> Proc:
    """``python -m rpc.cli serve`` on a free port, ready when /healthz answers; ``cwd`` is the
    checkout whose code it runs."""
    port = free_port()
    argv = [sys.executable, "-m", "rpc.cli", "serve", "--port", str(port), *extra]
    proc = spawn(argv, log_path, process_env(database_url, **env), cwd)
    proc.base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            if proc.process.poll() is not None or time.monotonic() > deadline:
                proc.stop()
                raise RuntimeError(f"serve did not start:\n{proc.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(proc.base + "/healthz", timeout=1)).status_code == 200:
                    return proc
            await anyio.sleep(0.05)


async def start_worker(
    database_url: str,
    log_path: Path,
    *,
    instant: bool = False,
    vision_seconds: float = 0.0,
    content_seconds: float = 0.0,
    cwd: Path = ROOT,
    **env: str,
) -> Proc:
    """A worker process: ``rpc.cli worker`` (offline providers), or ``bench.instant_worker``
    (the real Worker with providers answering at once or after fixed delays)."""
    if instant:
        argv = [
            sys.executable,
            "-m",
            "bench.instant_worker",
            "--vision-seconds",
            str(vision_seconds),
            "--content-seconds",
            str(content_seconds),
        ]
    else:
        argv = [sys.executable, "-m", "rpc.cli", "worker"]
    proc = spawn(argv, log_path, process_env(database_url, **env), cwd)
    await wait_for_log(proc, "started (concurrency")
    return proc


# -- the API client ----------------------------------------------------------------------------


def api_client(base: str, open_id: str = "bench") -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token(open_id)}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    return httpx.AsyncClient(
        base_url=base + "/api/trpc", headers=headers, timeout=120, limits=limits
    )


async def create_job(client: httpx.AsyncClient) -> int:
    r = await client.post("/visionPipeline.createJob", json=JOB_INPUT)
    r.raise_for_status()
    return int(r.json()["result"]["data"]["jobId"])


async def create_jobs(
    client: httpx.AsyncClient,
    count: int,
    *,
    batch: int = 50,
    parallel: int = 4,
    job: dict[str, Any] | None = None,
) -> list[int]:
    """``count`` jobs through createJob in tRPC batches (``?batch=1``), ``parallel`` batches in
    flight at once. Returns the job ids."""
    job = job or JOB_INPUT
    ids: list[int] = []
    sizes = [min(batch, count - start) for start in range(0, count, batch)]
    limiter = anyio.Semaphore(parallel)

    async def send(size: int) -> None:
        async with limiter:
            path = ",".join(["visionPipeline.createJob"] * size)
            body = {str(i): job for i in range(size)}
            r = await client.post(f"/{path}", params={"batch": "1"}, json=body)
            r.raise_for_status()
            ids.extend(int(e["result"]["data"]["jobId"]) for e in r.json())

    async with anyio.create_task_group() as tg:
        for size in sizes:
            tg.start_soon(send, size)
    return ids


async def wait_until(db: Db, sql: str, done: int, *, within: float, interval: float = 0.05) -> bool:
    """Poll ``sql`` (a count) until it reaches ``done``; False if ``within`` s passed first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if int(await db.scalar(sql) or 0) >= done:
            return True
        await anyio.sleep(interval)
    return False


def seconds_between(a: Any, b: Any) -> float:
    """b - a in seconds, for timestamps as either backend returns them."""
    from storage.timeutil import as_datetime

    start, end = as_datetime(a), as_datetime(b)
    assert start is not None and end is not None
    return (end - start).total_seconds()
