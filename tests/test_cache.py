"""The result cache, per stage (issue 17): a job whose stage key matches an answer stored
within CACHE_TTL_HOURS reuses it without a provider call (its attempt row says from which
job, at no cost); the same image for three formats pays for one analysis; TTL, off switch,
``cache: false``, user scope against CACHE_SCOPE=global, prompt versions derived from the
prompt text, one provider call for two jobs of one key at once, the offline providers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from pipeline import cache as result_cache
from pipeline import metrics, prompts
from pipeline.analysis import OutputFormat
from pipeline.cache import Cached, StageCache, content_key, vision_key
from pipeline.config import PipelineSettings
from pipeline.providers.base import ContentRequest, Image, StageResult, Usage, VisionRequest
from pipeline.service import build_stages
from pipeline.stages import Stages
from pipeline.worker import Worker
from rpc.commands.jobs_read import cached_lines
from rpc.config import Settings
from storage.driver import execute
from storage.engine import open_store
from storage.jobstate import Stage
from storage.records import ClaimedJob, NewJob
from storage.store import JobStore
from tests.fakes import ANALYSIS, FakeContent, FakeVision, Step
from tests.inprocess import metric, running_app
from tests.support import adhoc, data_url, rows
from tests.test_worker import finished

pytestmark = pytest.mark.anyio

# $1 per million input tokens, output free: a fresh vision answer costs 100e-6, content 50e-6.
PRICES = {
    "gemini_price_input_per_m": 1.0, "gemini_price_output_per_m": 0.0,
    "deepseek_price_input_per_m": 1.0, "deepseek_price_output_per_m": 0.0,
}  # fmt: skip


class PricedVision(FakeVision):
    """The scripted vision fake, priced as Gemini (so a fresh answer costs something)."""

    name = "gemini"
    model = "fake-vision"


class PricedContent(FakeContent):
    name = "deepseek"
    model = "fake-content"


async def image_of_url(url: str) -> Image:
    """A distinct image per URL (the fakes' loader returns one image for every URL)."""
    return Image(b"\x89PNG" + url.encode(), "image/png", 1, 1)


@asynccontextmanager
async def running(
    database_url: str, vision: Sequence[Step] = (), content: Sequence[Step] = (), **settings: Any
) -> AsyncIterator[tuple[JobStore, PricedVision, PricedContent]]:
    opts: dict[str, Any] = {"retry_delay_ms": 1, "poll_interval_ms": 50, **PRICES, **settings}
    config = PipelineSettings(database_url=database_url, **opts)
    store = await open_store(config.database_url, create=True)
    fv, fc = PricedVision(vision), PricedContent(content)
    stage_cache = StageCache(store.cached_answer, config.cache_ttl_hours, config.cache_scope)
    stages = Stages(fv, fc, image_of_url, config.stage_timeout_seconds, cache=stage_cache)
    worker = Worker(store, stages, config)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            yield store, fv, fc
            worker.stop()
    finally:
        await store.driver.close()


async def job_for(
    store: JobStore, user: str = "u", url: str = "http://img/a.png",
    output: OutputFormat = "social_media_post", bypass: bool = False,
) -> NewJob:  # fmt: skip
    user_id, _ = await store.user_seen(user, None)
    return NewJob(user_id, url, "ctx", "launch", output, 1.0, None, 3, bypass_cache=bypass)


async def run(store: JobStore, job: NewJob) -> int:
    """Create the job and wait until it finished (complete)."""
    job_id = await store.create_job(job)
    assert (await finished(store, job_id))["status"] == "complete"
    return job_id


async def attempt(store: JobStore, job_id: int) -> tuple[Any, ...]:
    [row] = await rows(
        store,
        'SELECT "geminiCachedFrom", "deepseekCachedFrom", "geminiInputTokens", '
        '"deepseekInputTokens", "costUsd", "geminiModel" FROM "visionJobSessions" '
        'WHERE "jobId" = $1',
        job_id,
    )
    return row


async def test_the_same_image_for_three_formats_pays_for_one_analysis(database_url: str) -> None:
    async with running(database_url) as (store, vision, content):
        formats: list[OutputFormat] = ["social_media_post", "bullet_points", "detailed_analysis"]
        ids = [await run(store, await job_for(store, output=f)) for f in formats]
        assert (vision.calls, content.calls) == (1, 3)
        first, *others = ids
        assert (await attempt(store, first))[:2] == (None, None)
        for job_id in others:
            assert await attempt(store, job_id) == (first, None, 0, 50, pytest.approx(50e-6),
                                                    "fake-vision")  # fmt: skip


async def test_an_identical_job_reuses_both_answers_at_no_cost(database_url: str) -> None:
    async with running(database_url) as (store, vision, content):
        first = await run(store, await job_for(store))
        second = await run(store, await job_for(store))
        assert (vision.calls, content.calls) == (1, 1)
        assert await attempt(store, second) == (first, first, 0, 0, 0.0, "fake-vision")
        assert (await attempt(store, first))[4] == pytest.approx(150e-6)  # 100 + 50 tokens
        a, b = [await store.get_job_status(i) for i in (first, second)]
        assert a is not None and b is not None
        assert (b.gemin_output, b.deepseek_output) == (a.gemin_output, a.deepseek_output)
        assert b.cost_usd == 0
        # A hit is no source itself: the next one names the job that paid, not the hit.
        keys = await rows(store, 'SELECT "visionCacheKey", "contentCacheKey" FROM "visionJobs" '
                                 "WHERE id = $1", second)  # fmt: skip
        assert keys == [(None, None)]
        overview = await store.overview()
        assert overview.cache_hits_today == 2
        detail = await store.job_detail(second)
        assert detail is not None
        assert cached_lines(detail.attempts) == [
            f"attempt 1: vision stage cached from job {first} (no provider call, no cost)",
            f"attempt 1: content stage cached from job {first} (no provider call, no cost)",
        ]


async def test_a_different_image_or_input_is_no_hit_of_the_stages_it_reaches(
    database_url: str,
) -> None:
    async with running(database_url) as (store, vision, content):
        await run(store, await job_for(store))
        await run(store, await job_for(store, url="http://img/b.png"))
        other_purpose = replace(await job_for(store), analysis_purpose="rebrand")
        await run(store, other_purpose)
        # Another image is analysed again; its analysis being the same (the fake answers one
        # for every image), stage 2's key is too: the content is reused. The other purpose
        # reaches both prompts: two calls.
        assert (vision.calls, content.calls) == (3, 2)


async def test_an_answer_older_than_the_ttl_is_not_reused(database_url: str) -> None:
    async with running(database_url, cache_ttl_hours=1) as (store, vision, content):
        first = await run(store, await job_for(store))
        await run(store, await job_for(store))
        assert (vision.calls, content.calls) == (1, 1)
        long_ago = datetime.now(UTC) - timedelta(hours=2)
        await store.driver.write(execute(adhoc(
            'UPDATE "visionJobs" SET "geminAnalyzedAt" = $1, "completedAt" = $1 WHERE id = $2'
        ), long_ago, first))  # fmt: skip
        third = await run(store, await job_for(store))
        assert (vision.calls, content.calls) == (2, 2)
        assert (await attempt(store, third))[:2] == (None, None)


async def test_a_ttl_of_zero_turns_the_cache_off(database_url: str) -> None:
    async with running(database_url, cache_ttl_hours=0) as (store, vision, content):
        first = await run(store, await job_for(store))
        await run(store, await job_for(store))
        assert (vision.calls, content.calls) == (2, 2)
        keys = await rows(store, 'SELECT "visionCacheKey", "contentCacheKey" FROM "visionJobs" '
                                 "WHERE id = $1", first)  # fmt: skip
        assert keys == [(None, None)]


async def test_cache_false_holds_for_a_job_created_with_an_idempotency_key(
    database_url: str,
) -> None:
    """A keyed createJob takes its own insert (storage.budgets): it keeps bypassCache too."""
    async with running(database_url) as (store, vision, content):
        await run(store, await job_for(store))
        keyed = await store.create_keyed_job(await job_for(store, bypass=True), None, "k1", "f")
        assert keyed is not None and keyed.created
        assert (await finished(store, keyed.id))["status"] == "complete"
        assert (vision.calls, content.calls) == (2, 2)
        assert (await attempt(store, keyed.id))[:2] == (None, None)


async def test_cache_false_asks_the_providers_and_its_answer_serves_the_next_job(
    database_url: str,
) -> None:
    async with running(database_url) as (store, vision, content):
        await run(store, await job_for(store))
        fresh = await run(store, await job_for(store, bypass=True))
        assert (vision.calls, content.calls) == (2, 2)
        assert (await attempt(store, fresh))[:2] == (None, None)
        after = await run(store, await job_for(store))
        assert (vision.calls, content.calls) == (2, 2)
        assert (await attempt(store, after))[:2] == (fresh, fresh)  # the newest answer


async def test_a_cached_answer_stays_with_its_user_unless_the_scope_is_global(
    database_url: str,
) -> None:
    async with running(database_url) as (store, vision, content):
        await run(store, await job_for(store, user="alice"))
        bobs = await run(store, await job_for(store, user="bob"))
        assert (vision.calls, content.calls) == (2, 2)
        assert (await attempt(store, bobs))[:2] == (None, None)
    async with running(database_url, cache_scope="global") as (store, vision, content):
        carols = await run(store, await job_for(store, user="carol"))
        assert (vision.calls, content.calls) == (0, 0)
        assert (await attempt(store, carols))[:2] == (bobs, bobs)


async def test_two_jobs_of_one_key_at_once_call_the_provider_once(database_url: str) -> None:
    # The first call takes a while: the second job, claimed with it, waits for its answer.
    async with running(database_url, vision=[0.3], worker_concurrency=4) as (
        store, vision, _content,
    ):  # fmt: skip
        ids = [await store.create_job(await job_for(store)) for _ in range(2)]
        for job_id in ids:
            assert (await finished(store, job_id))["status"] == "complete"
        assert vision.calls == 1
        froms = [(await attempt(store, i))[0] for i in ids]
        assert froms.count(None) == 1  # one job asked the provider, the other took its answer
        leader = ids[froms.index(None)]
        assert [f for f in froms if f is not None] == [leader]


async def test_single_flight_shares_one_call_among_jobs_of_one_key() -> None:
    """Without any stored answer (the lookup finds none), four jobs of one key at once make
    one call; a job of another user (scope user) or one asking for fresh answers makes its
    own."""

    async def nothing_stored(*_: Any) -> None:
        return None

    cache = StageCache(nothing_stored, 1, "user")
    calls = 0
    release = anyio.Event()

    async def call() -> StageResult[str]:
        nonlocal calls
        calls += 1
        await release.wait()
        return StageResult("answer", Usage("m"))

    def job(job_id: int, user: int = 1, bypass: bool = False) -> ClaimedJob:
        from storage.jobstate import JobStatus

        return ClaimedJob(job_id, user, "u", None, "p", "bullet_points", 1.0, None,
                          JobStatus.ANALYZING, None, 0, 3, 1, "w", datetime.now(UTC),
                          bypass)  # fmt: skip

    results: dict[int, Any] = {}

    async def one(claimed: ClaimedJob) -> None:
        results[claimed.id] = await cache.run(Stage.VISION, claimed, "k", call, str)

    hits_before = metrics.CACHE_HITS.values.get((Stage.VISION.value,), 0.0)
    async with anyio.create_task_group() as tg:
        for claimed in (job(1), job(2), job(3), job(4), job(5, user=2), job(6, bypass=True)):
            tg.start_soon(one, claimed)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert calls == 3  # one for user 1's four jobs, job 5 (another user), job 6 (bypass)
    [leader] = [i for i in (1, 2, 3, 4) if isinstance(results[i], StageResult)]
    assert all(results[i] == Cached("answer", leader) for i in (1, 2, 3, 4) if i != leader)
    assert all(isinstance(results[i], StageResult) for i in (5, 6))
    assert metrics.CACHE_HITS.values[(Stage.VISION.value,)] == hits_before + 3


async def test_a_failed_leader_lets_the_next_job_of_the_key_call_again() -> None:
    async def nothing_stored(*_: Any) -> None:
        return None

    cache = StageCache(nothing_stored, 1, "global")
    calls = 0

    async def failing() -> StageResult[str]:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        raise RuntimeError("provider down")

    async def working() -> StageResult[str]:
        nonlocal calls
        calls += 1
        return StageResult("answer", Usage("m"))

    from storage.jobstate import JobStatus

    def job(job_id: int) -> ClaimedJob:
        return ClaimedJob(job_id, 1, "u", None, "p", "bullet_points", 1.0, None,
                          JobStatus.ANALYZING, None, 0, 3, 1, "w", datetime.now(UTC))  # fmt: skip

    outcomes: dict[int, Any] = {}

    async def leader() -> None:
        try:
            await cache.run(Stage.VISION, job(1), "k", failing, str)
        except RuntimeError as exc:
            outcomes[1] = exc

    async def follower() -> None:
        outcomes[2] = await cache.run(Stage.VISION, job(2), "k", working, str)

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await anyio.wait_all_tasks_blocked()  # the leader's call is under way
        tg.start_soon(follower)
    assert calls == 2
    assert isinstance(outcomes[1], RuntimeError)
    assert isinstance(outcomes[2], StageResult)  # it called the provider itself


# -- the keys ---------------------------------------------------------------------------------

IMAGE = Image(b"\x89PNG-bytes", "image/png", 1, 1)
VISION = VisionRequest(IMAGE, "launch", "ctx", 1.0)


def content_request(output: OutputFormat, instructions: str | None = "be brief") -> ContentRequest:
    return ContentRequest(ANALYSIS, "launch", "ctx", output, 1.0, instructions)


def all_keys() -> list[str]:
    """Stage 1's key and stage 2's for every format, with and without instructions, at three
    creativity levels (every branch of the prompt builders)."""
    keys = []
    for level in (0.2, 1.0, 1.8):
        keys.append(vision_key(PricedVision(), replace(VISION, creativity_level=level)))
        for output in prompts.FORMATS:
            for extra in ("be brief", None):
                request = replace(content_request(output, extra), creativity_level=level)
                keys.append(content_key(PricedContent(), request))
    return keys


def _texts(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every string inside a prompts constant (str, dict, list)."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _texts(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _texts(v, (*path, i))]
    return []


def _changed(value: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return value + " (reworded)"
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _changed(value[head], tuple(rest))
    return copy


def test_changing_any_prompt_text_changes_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text constant of pipeline.prompts, reworded, changes a key: the version is the
    text's own hash, so a prompt cannot change while its cached answers stay valid."""
    before = all_keys()
    assert len(set(before)) == len(before)
    constants = [n for n in vars(prompts) if n.isupper()]
    assert {"VISION_SYSTEM", "VISION_EXAMPLE", "FORMATS", "CONTENT_SYSTEM"} <= set(constants)
    checked = 0
    for name in constants:
        value = getattr(prompts, name)
        for path in _texts(value):
            with monkeypatch.context() as patch:
                patch.setattr(prompts, name, _changed(value, path))
                assert all_keys() != before, f"rewording prompts.{name}{list(path)} kept the keys"
            checked += 1
    assert checked > 10
    assert all_keys() == before


def test_changing_the_user_prompt_builders_changes_the_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = all_keys()
    for name in ("vision_user_prompt", "content_user_prompt", "vision_system_prompt",
                 "content_system_prompt", "vision_response_schema"):  # fmt: skip
        original = getattr(prompts, name)
        with monkeypatch.context() as patch:
            patch.setattr(result_cache, name, lambda *a, f=original: _reworded(f(*a)))
            assert all_keys() != before, name


def _reworded(value: Any) -> Any:
    return {**value, "x": 1} if isinstance(value, dict) else value + " (reworded)"


def test_the_keys_name_the_image_model_and_every_input() -> None:
    base_v = vision_key(PricedVision(), VISION)
    other_image = replace(VISION, image=replace(IMAGE, data=b"other"))
    assert vision_key(PricedVision(), other_image) != base_v
    assert vision_key(FakeVision(), VISION) != base_v  # another provider and model
    for change in ({"analysis_purpose": "x"}, {"image_context": "x"}, {"creativity_level": 1.1}):
        assert vision_key(PricedVision(), replace(VISION, **change)) != base_v
    base_c = content_key(PricedContent(), content_request("bullet_points"))
    for change in ({"output_format": "detailed_analysis"}, {"additional_instructions": None},
                   {"creativity_level": 1.1}, {"analysis_purpose": "x"}, {"image_context": "x"},
                   {"analysis": ANALYSIS.model_copy(update={"mood_and_tone": None})}):  # fmt: skip
        assert content_key(PricedContent(), replace(content_request("bullet_points"), **change)) \
            != base_c  # fmt: skip
    assert len(base_v) == 64 and int(base_v, 16) >= 0


# -- the offline providers, through the service's own assembly ---------------------------------


async def test_the_offline_providers_are_cached_the_same_way(database_url: str) -> None:
    config = PipelineSettings(database_url=database_url, providers="offline", poll_interval_ms=50)
    store = await open_store(config.database_url, create=True)
    stages = build_stages(config, store)
    assert stages.cache is not None and stages.cache.enabled
    worker = Worker(store, stages, config)
    image = data_url((200, 30, 30))
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            first = await run(store, await job_for(store, url=image))
            second = await run(store, await job_for(store, url=image, output="bullet_points"))
            third = await run(store, await job_for(store, url=image, output="bullet_points"))
            worker.stop()
        assert (await attempt(store, first))[:2] == (None, None)
        assert (await attempt(store, second))[:2] == (first, None)
        assert (await attempt(store, third))[:2] == (first, second)
        assert (await attempt(store, third))[5] == "offline-vision"
        [(key,)] = await rows(store, 'SELECT "visionCacheKey" FROM "visionJobs" WHERE id = $1',
                              first)  # fmt: skip
        assert key is not None and len(key) == 64
        assert key != hashlib.sha256(image.encode()).hexdigest()
    finally:
        await store.driver.close()


# -- over the API: createJob's cache input, getJobUsage, the dashboard, /metrics --------------

TRPC = "/api/trpc/visionPipeline."


async def _create(client: Any, body: dict[str, Any]) -> Any:
    return await client.post(TRPC + "createJob", json=body)


async def _data(client: Any, procedure: str, **query: Any) -> Any:
    params = {"input": json.dumps(query)} if query else None
    r = await client.get(TRPC + procedure, params=params)
    assert r.status_code == 200, r.text
    return r.json()["result"]["data"]


async def _done(client: Any, job_id: int) -> Any:
    with anyio.fail_after(30):
        while (status := await _data(client, "getJobStatus", jobId=job_id))["status"] not in (
            "complete", "error",
        ):  # fmt: skip
            await anyio.sleep(0.05)
    return status


async def test_create_job_takes_cache_false_and_get_job_usage_names_the_source(
    database_url: str,
) -> None:
    settings = Settings(database_url=database_url, providers="offline", poll_interval_ms=50)
    body = {"imageUrl": data_url((10, 90, 200)), "analysisPurpose": "api",
            "outputFormat": "bullet_points"}  # fmt: skip
    async with running_app(settings, run_worker=True) as (_, client):
        ids = []
        for extra in ({}, {}, {"cache": False}):
            r = await _create(client, {**body, **extra})
            assert r.status_code == 200, r.text
            ids.append(r.json()["result"]["data"]["jobId"])
            assert (await _done(client, ids[-1]))["status"] == "complete"
        first, second, fresh = ids
        usage = await _data(client, "getJobUsage", jobId=second)
        assert (usage["visionCachedFrom"], usage["contentCachedFrom"]) == (first, first)
        assert usage["costUsd"] == 0
        for job_id in (first, fresh):
            usage = await _data(client, "getJobUsage", jobId=job_id)
            assert (usage["visionCachedFrom"], usage["contentCachedFrom"]) == (None, None)
        # Not a boolean: refused, nothing created.
        r = await _create(client, {**body, "cache": "false"})
        assert r.status_code == 400 and r.json()["error"]["data"]["code"] == "BAD_REQUEST"
        history = await _data(client, "getJobHistory", limit=100)
        assert len(history["jobs"] if isinstance(history, dict) else history) == 3
        overview = await _data(client, "admin.overview")
        assert overview["cacheHitsToday"] == 2
        scraped = (await client.get("/metrics")).text
        assert metric(scraped, "vision_cache_hits_total", stage="gemini") >= 1
        assert metric(scraped, "vision_cache_hits_total", stage="deepseek") >= 1
