"""Whole jobs through the worker with the real providers (the real SDKs) against the fake
Gemini and DeepSeek APIs: the queue's retry, resume and fail-now promises hold end to end."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from pipeline.providers.base import Image
from pipeline.service import build_providers
from pipeline.stages import Stages
from pipeline.worker import Worker
from storage.engine import open_store
from storage.records import JobStatusRecord, NewJob
from storage.store import JobStore
from tests.fake_ai import (
    ANALYSIS,
    CONTENT,
    FakeAI,
    Reply,
    deepseek_error,
    gemini_answer,
    gemini_blocked,
    gemini_error,
    isolate_sdk_env,
    provider_settings,
    serve_fake_ai,
)
from tests.support import png_bytes, rows

pytestmark = pytest.mark.anyio

IMAGE = Image(png_bytes((20, 90, 200), (3, 2)), "image/png", 3, 2)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAI]:
    with serve_fake_ai() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAI, monkeypatch: pytest.MonkeyPatch) -> FakeAI:
    isolate_sdk_env(monkeypatch)
    server.reset()
    return server


async def load_image(url: str) -> Image:
    """Stands in for the URL loader: these tests are about the providers, not fetching."""
    return IMAGE


@asynccontextmanager
async def running(fake: FakeAI, tmp_path: Path, **overrides: Any) -> AsyncIterator[JobStore]:
    """A worker with the real providers (as ``build_providers`` picks them from the keys) on
    a fresh SQLite file, running until the block ends."""
    opts: dict[str, Any] = {"database_url": f"sqlite:///{tmp_path / 'jobs.db'}",
                            "retry_delay_ms": 1, "poll_interval_ms": 50,
                            "stage_timeout_seconds": 5.0}  # fmt: skip
    opts.update(overrides)
    settings = provider_settings(fake, **opts)
    store = await open_store(settings.database_url, create=True)
    vision, content = build_providers(settings)
    assert (vision.name, content.name) == ("gemini", "deepseek")
    worker = Worker(store, Stages(vision, content, load_image, settings.stage_timeout_seconds),
                    settings)  # fmt: skip
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            yield store
            worker.stop()
    finally:
        for provider in (vision, content):
            close = getattr(provider, "aclose", None)  # optional: offline providers have none
            if close is not None:
                await close()
        await store.driver.close()


async def submit(store: JobStore, fmt: str = "social_media_post") -> int:
    user_id, _ = await store.user_seen("u", None)
    return await store.create_job(NewJob(user_id, "https://example.test/logo.png", "a bank",
                                         "launch", fmt, 1.0, None, 3))  # fmt: skip


async def finished(store: JobStore, job_id: int, timeout: float = 15) -> JobStatusRecord:
    with anyio.fail_after(timeout):
        while True:
            status = await store.get_job_status(job_id)
            assert status is not None
            if status.status in ("complete", "error"):
                return status
            await anyio.sleep(0.02)


async def attempts(store: JobStore, job_id: int) -> list[tuple[Any, ...]]:
    return await rows(
        store,
        'SELECT outcome, "stageReached", "errorMessage", "geminiModel", "geminiInputTokens", '
        '"geminiOutputTokens", "deepseekModel", "deepseekInputTokens", "deepseekOutputTokens" '
        'FROM "visionJobSessions" WHERE "jobId" = $1 ORDER BY attempt',
        job_id,
    )


async def test_a_job_completes_through_both_real_providers(fake: FakeAI, tmp_path: Path) -> None:
    async with running(fake, tmp_path) as store:
        job_id = await submit(store)
        status = await finished(store, job_id)
        assert (status.status, status.retry_count, status.error_message) == ("complete", 0, None)
        assert status.gemin_output is not None and json.loads(status.gemin_output) == ANALYSIS
        assert status.deepseek_output is not None
        assert json.loads(status.deepseek_output) == CONTENT["content_pieces"]
        assert await attempts(store, job_id) == [
            ("complete", "deepseek", None, "gemini-3.8-flash", 265, 160, "deepseek-v4-flash",
             800, 300)]  # fmt: skip
    [seen] = fake.gemini.received
    assert seen.path.endswith("/v1beta/models/gemini-3.8-flash:generateContent")
    inline = seen.body["contents"][0]["parts"][0]["inlineData"]
    assert (base64.urlsafe_b64decode(inline["data"]), inline["mime_type"]) == (
        IMAGE.data,
        "image/png",
    )
    assert seen.body["generationConfig"]["responseMimeType"] == "application/json"
    [written] = fake.deepseek.received
    assert (written.body["model"], written.body["response_format"]) == (
        "deepseek-v4-flash", {"type": "json_object"})  # fmt: skip
    assert '"perceived_industry": "sportswear"' in written.body["messages"][1]["content"]


async def test_rate_limited_twice_the_job_completes_after_the_retry_after_it_was_given(
    fake: FakeAI, tmp_path: Path
) -> None:
    limited = gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded",
                           headers={"retry-after": "0.3"})  # fmt: skip
    fake.gemini.will(limited, limited)
    async with running(fake, tmp_path) as store:
        status = await finished(store, await submit(store))
    assert (status.status, status.retry_count) == ("complete", 2)
    times = [r.at for r in fake.gemini.received]
    assert len(times) == 3
    assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(times))


async def test_a_deepseek_retry_does_not_call_gemini_again(fake: FakeAI, tmp_path: Path) -> None:
    fake.deepseek.will(deepseek_error(500, "Server Error"))
    async with running(fake, tmp_path) as store:
        job_id = await submit(store)
        status = await finished(store, job_id)
        outcomes = [(a[0], a[1]) for a in await attempts(store, job_id)]
    assert (status.status, status.retry_count) == ("complete", 1)
    assert (len(fake.gemini.received), len(fake.deepseek.received)) == (1, 2)
    assert outcomes == [("retry", "deepseek"), ("complete", "deepseek")]


async def test_a_rejected_key_fails_the_job_at_once(fake: FakeAI, tmp_path: Path) -> None:
    fake.deepseek.will(deepseek_error(401, "Authentication Fails (no such user)",
                                      kind="authentication_error"))  # fmt: skip
    async with running(fake, tmp_path) as store:
        status = await finished(store, await submit(store))
    # retryCount counts failed attempts (SEED_API §4): one, and no second.
    assert (status.status, status.retry_count, status.error_stage) == ("error", 1, "deepseek")
    assert status.error_message is not None
    assert "DeepSeek rejected the API key" in status.error_message
    assert len(fake.deepseek.received) == 1


async def test_an_answer_that_is_not_json_is_retried(fake: FakeAI, tmp_path: Path) -> None:
    fake.gemini.will(gemini_answer("Sure! Here is the analysis you asked for."))
    async with running(fake, tmp_path) as store:
        job_id = await submit(store)
        status = await finished(store, job_id)
        [first, _] = await attempts(store, job_id)
    assert (status.status, status.retry_count) == ("complete", 1)
    assert "not JSON" in first[2] and len(fake.gemini.received) == 2


async def test_a_hung_answer_hits_the_stage_deadline_and_the_job_retries(
    fake: FakeAI, tmp_path: Path
) -> None:
    # Blank lines keep the SDK's 0.3 s read timeout from firing; the 0.5 s stage deadline
    # ends the attempt instead.
    fake.deepseek.will(Reply(trickle=3.0))
    async with running(fake, tmp_path, stage_timeout_seconds=0.5,
                       provider_timeout_seconds=0.3) as store:  # fmt: skip
        job_id = await submit(store)
        status = await finished(store, job_id)
        [first, _] = await attempts(store, job_id)
    assert (status.status, status.retry_count) == ("complete", 1)
    assert "deepseek stage timed out after 0.5 s" in first[2]
    assert (len(fake.gemini.received), len(fake.deepseek.received)) == (1, 2)


async def test_a_safety_block_fails_the_job_at_once(fake: FakeAI, tmp_path: Path) -> None:
    fake.gemini.will(gemini_blocked("SAFETY"))
    async with running(fake, tmp_path) as store:
        status = await finished(store, await submit(store))
    assert (status.status, status.retry_count, status.error_stage) == ("error", 1, "gemini")
    assert status.error_message == "gemini: Gemini blocked the image: SAFETY"
    assert (len(fake.gemini.received), len(fake.deepseek.received)) == (1, 0)
