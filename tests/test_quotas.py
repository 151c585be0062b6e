"""Quotas (issue 8 item 2): per-user jobs per minute and jobs waiting, the global cap on
waiting jobs, and the per-provider request-rate limiter.

The HTTP tests run real servers (no worker, so jobs stay where the test puts them) on both
backends; a test moves a job through time or to "complete" with one SQL statement.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from pipeline.analysis import VisionAnalysis
from pipeline.config import PipelineSettings
from pipeline.providers.base import StageResult, VisionRequest
from pipeline.ratelimit import RateLimitedVision, RateLimiter, limit_vision
from pipeline.service import build_providers
from rpc.config import Settings
from storage.timeutil import to_sqlite
from tests.support import Server, backend_server

CREATE = "/visionPipeline.createJob"
PER_MINUTE = re.compile(r"^Too many jobs: at most 3 per minute\. Try again in (\d+) s\.$")
WAITING = "Too many jobs waiting: at most 2 at once. Try again when one of them has finished."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _start(request: pytest.FixtureRequest, tmp: Path, **env: str) -> Iterator[Server]:
    with backend_server(request.param, tmp, "--no-worker", prefix="vp_quota", **env) as srv:
        yield srv


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def limits(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:  # fmt: skip
    """3 jobs per minute and 2 waiting per user; no global cap."""
    yield from _start(request, tmp_path_factory.mktemp("limits"), JOBS_PER_MINUTE_PER_USER="3",
                      MAX_WAITING_JOBS_PER_USER="2", MAX_WAITING_JOBS="0")  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def full(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Server]:  # fmt: skip
    """No per-user limits; at most 3 waiting jobs in all."""
    yield from _start(request, tmp_path_factory.mktemp("full"), JOBS_PER_MINUTE_PER_USER="0",
                      MAX_WAITING_JOBS_PER_USER="0", MAX_WAITING_JOBS="3")  # fmt: skip


def job(**overrides: Any) -> dict[str, Any]:
    return {"imageUrl": "https://images.example.com/logo.png", "analysisPurpose": "quota test",
            "outputFormat": "bullet_points", **overrides}  # fmt: skip


def new_user(server: Server) -> tuple[httpx.Client, int]:
    """A fresh signed-in user and its id."""
    client = server.client(f"quota-{uuid.uuid4().hex[:12]}")
    me = client.get("/auth.me").json()["result"]["data"]
    return client, int(me["id"])


def create(client: httpx.Client) -> httpx.Response:
    return client.post(CREATE, json=job())


def jobs_of(server: Server, user_id: int) -> list[int]:
    rows = server.sql('SELECT id FROM "visionJobs" WHERE "userId" = ? ORDER BY id', user_id)
    return [int(r[0]) for r in rows]


def set_status(server: Server, job_id: int, status: str) -> None:
    server.sql('UPDATE "visionJobs" SET status = ? WHERE id = ?', status, job_id)


def age(server: Server, job_id: int, seconds: float) -> None:
    """Make a job look created ``seconds`` ago."""
    when = datetime.now(UTC) - timedelta(seconds=seconds)
    value: Any = to_sqlite(when) if server.database_url.startswith("sqlite") else when
    server.sql('UPDATE "visionJobs" SET "createdAt" = ? WHERE id = ?', value, job_id)


def refusal(r: httpx.Response, code: str, status: int) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == (-32029 if code == "TOO_MANY_REQUESTS" else -32603)
    assert error["data"] == {"code": code, "httpStatus": status, "path": CREATE[1:]}
    return str(error["message"])


# --- per user ---------------------------------------------------------------------------------


def test_jobs_per_minute_per_user(limits: Server) -> None:
    client, user_id = new_user(limits)
    other, _ = new_user(limits)
    with closing(client), closing(other):
        for _ in range(3):
            assert create(client).status_code == 200
            for job_id in jobs_of(limits, user_id):  # keep the waiting limit out of the way
                set_status(limits, job_id, "complete")
        first = jobs_of(limits, user_id)[0]
        age(limits, first, 50)  # the oldest leaves the window in ~10 s
        r = create(client)
        message = refusal(r, "TOO_MANY_REQUESTS", 429)
        match = PER_MINUTE.match(message)
        assert match is not None, message
        assert 9 <= int(match.group(1)) <= 11
        assert r.headers["retry-after"] == match.group(1)
        assert len(jobs_of(limits, user_id)) == 3  # nothing created
        assert create(other).status_code == 200  # another user is not affected
        age(limits, first, 61)  # the oldest left the window
        assert create(client).status_code == 200
        refusal(create(client), "TOO_MANY_REQUESTS", 429)
        assert len(jobs_of(limits, user_id)) == 4


def test_jobs_waiting_per_user(limits: Server) -> None:
    client, user_id = new_user(limits)
    with closing(client):
        assert create(client).status_code == 200
        assert create(client).status_code == 200
        r = create(client)
        assert refusal(r, "TOO_MANY_REQUESTS", 429) == WAITING
        assert int(r.headers["retry-after"]) > 0
        ids = jobs_of(limits, user_id)
        assert len(ids) == 2
        set_status(limits, ids[0], "gemini_analyzing")  # running still counts as waiting
        refusal(create(client), "TOO_MANY_REQUESTS", 429)
        set_status(limits, ids[0], "error")  # finished: room for one more
        assert create(client).status_code == 200
        assert len(jobs_of(limits, user_id)) == 3


def test_a_batch_of_creates_is_admitted_one_call_at_a_time(limits: Server) -> None:
    client, user_id = new_user(limits)
    with closing(client):
        body = {str(i): job(analysisPurpose=f"batch {i}") for i in range(4)}
        r = client.post("/" + ",".join([CREATE[1:]] * 4) + "?batch=1", json=body)
        assert r.status_code == 207, r.text
        items = r.json()
        assert ["result" in item for item in items].count(True) == 2
        refused = [item["error"] for item in items if "error" in item]
        assert [e["message"] for e in refused] == [WAITING, WAITING]
        assert r.headers["retry-after"] == "30"
        assert len(jobs_of(limits, user_id)) == 2


def test_a_superjson_client_gets_the_refusal_in_superjson(limits: Server) -> None:
    client, _ = new_user(limits)
    with closing(client):
        for _ in range(2):
            assert create(client).status_code == 200
        r = client.post(CREATE, json={"json": job()})
        assert r.status_code == 429
        assert r.json()["error"]["json"]["message"] == WAITING


# --- everyone ---------------------------------------------------------------------------------


def test_the_global_cap_on_waiting_jobs(full: Server) -> None:
    clients = [new_user(full)[0] for _ in range(4)]
    try:
        for client in clients[:3]:
            assert create(client).status_code == 200
        before = full.sql('SELECT COUNT(*) FROM "visionJobs"')
        r = create(clients[3])
        message = refusal(r, "SERVICE_UNAVAILABLE", 503)
        assert message == "The queue is full (3 jobs waiting). Try again in a few minutes."
        assert r.headers["retry-after"] == "120"
        assert full.sql('SELECT COUNT(*) FROM "visionJobs"') == before
        full.sql("UPDATE \"visionJobs\" SET status = 'complete'")
        time.sleep(1.2)  # the cached count (GLOBAL_COUNT_TTL) is taken again
        assert create(clients[3]).status_code == 200
    finally:
        for client in clients:
            client.close()


def test_quota_defaults() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.jobs_per_minute_per_user == 60
    assert settings.max_waiting_jobs_per_user == 100
    assert settings.max_waiting_jobs == 100_000
    assert settings.gemini_requests_per_minute == settings.deepseek_requests_per_minute == 0


# --- provider request rates -------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_limiter_allows_n_per_window_then_waits() -> None:
    limiter = RateLimiter(3, window=0.4)
    started = time.monotonic()
    for _ in range(3):
        assert await limiter.acquire() == 0
    assert time.monotonic() - started < 0.1
    waited = await limiter.acquire()
    assert 0.3 < waited and 0.3 < time.monotonic() - started < 1.0


@pytest.mark.anyio
async def test_no_window_ever_holds_more_than_n_starts() -> None:
    limiter = RateLimiter(2, window=0.3)
    starts: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        starts.append(time.monotonic())

    async with anyio.create_task_group() as tasks:
        for _ in range(6):
            tasks.start_soon(call)
    starts.sort()
    for i in range(len(starts) - 2):
        assert starts[i + 2] - starts[i] >= 0.29  # any 3 starts span a whole window


@pytest.mark.anyio
async def test_a_cancelled_waiter_takes_nothing_from_the_budget() -> None:
    limiter = RateLimiter(1, window=0.3)
    await limiter.acquire()
    with anyio.move_on_after(0.05):
        await limiter.acquire()  # gives up while waiting
    await anyio.sleep(0.3)
    assert limiter.delay() == 0  # the window is empty again: the waiter took no slot
    assert await limiter.acquire() == 0


def test_a_fractional_rate_spreads_calls_out() -> None:
    limiter = RateLimiter(0.5)
    assert (limiter.capacity, limiter.window) == (1, 120.0)


class CountingVision:
    name = "gemini"

    def __init__(self) -> None:
        self.calls = 0

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]:
        self.calls += 1
        raise RuntimeError("not needed")


@pytest.mark.anyio
async def test_a_limited_provider_waits_then_delegates() -> None:
    inner = CountingVision()
    limited = RateLimitedVision(inner, RateLimiter(2, window=0.3))
    assert limited.name == "gemini"
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await limited.analyze(None)  # type: ignore[arg-type]
    assert inner.calls == 3 and time.monotonic() - started >= 0.25
    assert limit_vision(inner, 0) is inner


def test_real_providers_are_wrapped_when_a_rate_is_set() -> None:
    settings = PipelineSettings(
        _env_file=None,  # type: ignore[call-arg]
        providers="auto",
        gemini_api_key="test-key",
        deepseek_api_key="test-key",
        gemini_requests_per_minute=15,
    )
    vision, content = build_providers(settings)
    assert isinstance(vision, RateLimitedVision) and vision.name == "gemini"
    assert vision.limiter.capacity == 15
    assert not isinstance(content, RateLimitedVision) and content.name == "deepseek"
