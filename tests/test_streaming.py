"""Content streamed as it is written (issue 17, part 5), the pieces: ``PartialWriter``'s pacing
on a fake clock, ``partial_pieces`` on JSON cut anywhere, the DeepSeek provider reading a
streamed answer from the fake server (text so far, usage from the last chunk, a dropped or
unfinished stream is retryable), the offline provider's pieces, and the fenced store write
on both backends (written only by the attempt at the content stage, cleared at its end)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise
from typing import Any

import anyio
import pytest

from pipeline.analysis import GeneratedContent, VisionAnalysis
from pipeline.config import PipelineSettings
from pipeline.errors import FatalError, RetryableError, StageError
from pipeline.providers.base import ContentRequest, StageResult, Usage
from pipeline.providers.deepseek import DeepSeekContent
from pipeline.providers.offline import STREAM_PIECES, OfflineContent
from pipeline.service import build_stages
from pipeline.streaming import PartialWriter, partial_pieces
from pipeline.worker import Worker
from storage.changes import EventsOf
from storage.engine import open_store
from storage.jobstate import Outcome, Stage
from storage.records import AttemptRecord, NewJob, Outputs
from storage.store import JobStore
from tests.fake_ai import (
    ANALYSIS,
    CONTENT,
    FakeAI,
    Reply,
    deepseek_answer,
    isolate_sdk_env,
    provider_settings,
    serve_fake_ai,
)
from tests.fakes import FakeVision, fake_image
from tests.support import rows

pytestmark = pytest.mark.anyio


# --- PartialWriter: the pace ------------------------------------------------------------


class FakeClock:
    """A clock only the test moves; ``sleep`` moves it by the time asked and records it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def settle() -> None:
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def test_the_first_piece_is_written_at_once_then_at_most_every_interval() -> None:
    clock = FakeClock()
    written: list[tuple[float, str]] = []

    async def write(text: str) -> bool:
        written.append((round(clock.now, 6), text))
        return True

    writer = PartialWriter(write, 0.1, clock=clock.time, sleep=clock.sleep)
    async with writer as update:
        update('{"c')
        await settle()
        assert written == [(0.0, '{"c')]  # at once, no sleep
        clock.now = 0.03
        update('{"co')
        update('{"con')  # two pieces within the interval: only the newer is written
        await settle()
        clock.now = 0.5  # a piece long after the last write goes at once
        update('{"cont')
        await settle()
        clock.now = 0.52
        update('{"conte')  # due at 0.6, but the writer ends first: no final write
    assert written == [(0.0, '{"c'), (0.1, '{"con'), (0.5, '{"cont')]
    # It waited out the interval once (0.03 -> 0.1); the last wait was cut by the end.
    assert clock.slept[0] == 0.07
    assert writer.writes == 3


async def test_a_failed_write_is_logged_and_the_next_text_is_still_written() -> None:
    clock = FakeClock()
    attempts: list[str] = []

    async def write(text: str) -> bool:
        attempts.append(text)
        if len(attempts) == 1:
            raise OSError("database away")
        return True

    writer = PartialWriter(write, 0.1, clock=clock.time, sleep=clock.sleep)
    async with writer as update:
        update("a")
        await settle()
        clock.now = 1.0
        update("ab")
        await settle()
    assert attempts == ["a", "ab"]
    assert writer.writes == 1


# --- partial_pieces: JSON cut anywhere --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("", []),
        ("   ", []),
        ("{", []),
        ('{"content_pie', []),
        ('{"content_pieces": [', []),
        ('{"content_pieces": [{"title": "Roo', [{"title": "Roo"}]),
        (
            '{"content_pieces": [{"title": "A", "body": "b"}, {"title": "Sec',
            [{"title": "A", "body": "b"}, {"title": "Sec"}],
        ),
        ('{"content_pieces": [{"title": "A", "hashtags": ["#x", "#y', None),
        ('```json\n{"content_pieces": [{"title": "F', [{"title": "F"}]),
        (json.dumps(CONTENT), CONTENT["content_pieces"]),
        ("not json at all", []),
        ('{"content_pieces": "nope"}', []),
        ("[1, 2", []),
    ],
)
def test_partial_pieces_reads_the_pieces_written_so_far(text: str, pieces: Any) -> None:
    if pieces is None:  # hashtags cut mid-string: the list holds what was written
        pieces = [{"title": "A", "hashtags": ["#x", "#y"]}]
    assert partial_pieces(text) == pieces


# --- the DeepSeek provider reading a stream ---------------------------------------------


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAI]:
    with serve_fake_ai() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeAI, monkeypatch: pytest.MonkeyPatch) -> FakeAI:
    isolate_sdk_env(monkeypatch)
    fake_server.reset()
    return fake_server


def request(texts: list[str] | None = None) -> ContentRequest:
    return ContentRequest(
        analysis=VisionAnalysis.model_validate(ANALYSIS),
        analysis_purpose="launch",
        image_context="",
        output_format="social_media_post",
        creativity_level=1.0,
        additional_instructions=None,
        on_text=None if texts is None else texts.append,
    )


async def generate(fake: FakeAI, texts: list[str] | None = None) -> Any:
    provider = DeepSeekContent(provider_settings(fake))
    try:
        return await provider.generate(request(texts))
    finally:
        await provider.aclose()


async def test_deepseek_streams_and_tells_the_text_so_far_as_it_grows(fake: FakeAI) -> None:
    fake.deepseek.will(deepseek_answer(prompt=120, completion=45))
    texts: list[str] = []
    result = await generate(fake, texts)
    [sent] = fake.deepseek.received
    assert (sent.body["stream"], sent.body["stream_options"]) == (True, {"include_usage": True})
    assert sent.body["response_format"] == {"type": "json_object"}
    whole = json.dumps(CONTENT)
    assert len(texts) == 8  # the fake's eight content chunks, each told with all before it
    assert texts[-1] == whole
    assert all(b.startswith(a) and len(b) > len(a) for a, b in pairwise(texts))
    assert [p.title for p in result.value.content_pieces] == ["Red that moves", "Plain and proud"]
    # The usage comes from the last chunk (include_usage), and the cost from it.
    assert (result.usage.input_tokens, result.usage.output_tokens) == (120, 45)


async def test_a_stream_without_its_usage_chunk_counts_zero_tokens(fake: FakeAI) -> None:
    answer = deepseek_answer()
    answer.usage = False
    fake.deepseek.will(answer)
    result = await generate(fake)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (0, 0)


async def test_a_stream_dropped_mid_answer_is_a_retryable_provider_error(fake: FakeAI) -> None:
    answer = deepseek_answer()
    answer.drop = True
    fake.deepseek.will(answer)
    texts: list[str] = []
    with pytest.raises(RetryableError, match="could not reach DeepSeek"):
        await generate(fake, texts)
    # Some of the answer was told before the drop; nothing partial became the result.
    assert texts and len(texts[-1]) < len(json.dumps(CONTENT))


async def test_a_stream_that_ends_without_a_finish_reason_is_retryable(fake: FakeAI) -> None:
    answer = deepseek_answer()
    answer.finish = False
    fake.deepseek.will(answer)
    with pytest.raises(RetryableError, match="stream ended before the answer was finished"):
        await generate(fake)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (deepseek_answer('{"content_pie', finish="length"), RetryableError),
        (deepseek_answer(finish="insufficient_system_resource"), RetryableError),
        (deepseek_answer(finish="content_filter"), FatalError),
        (deepseek_answer("not json"), RetryableError),
    ],
)
async def test_a_streamed_answer_is_judged_by_its_finish_reason_and_its_json(
    fake: FakeAI, reply: Reply, kind: type[StageError]
) -> None:
    fake.deepseek.will(reply)
    with pytest.raises(StageError) as caught:
        await generate(fake)
    assert type(caught.value) is kind


async def test_the_offline_provider_tells_its_answer_in_pieces() -> None:
    texts: list[str] = []
    result = await OfflineContent().generate(request(texts))
    assert len(texts) == STREAM_PIECES
    assert texts[-1] == result.value.model_dump_json(exclude_none=True)
    assert all(b.startswith(a) and len(b) > len(a) for a, b in pairwise(texts))
    # Without a listener it tells nothing and returns the same content.
    assert (await OfflineContent().generate(request())).value == result.value


# --- the store: fenced, cleared at the attempt's end ------------------------------------


async def claimed_at_content_stage(store: JobStore) -> Any:
    user_id, _ = await store.user_seen("s", None)
    job = NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
    job_id = await store.create_job(job)
    [claimed] = await store.claim_jobs("w1", 1, timedelta(seconds=30))
    assert claimed.id == job_id
    assert await store.store_vision_output(claimed, json.dumps(ANALYSIS)) is False
    return claimed


async def partial_column(store: JobStore, job_id: int) -> Any:
    [(value,)] = await rows(
        store, 'SELECT "partialContent" FROM "visionJobs" WHERE id = $1', job_id
    )
    return value


async def test_the_partial_text_is_fenced_becomes_events_and_is_cleared_at_completion(
    database_url: str,
) -> None:
    store = await open_store(database_url, create=True)
    try:
        job = await claimed_at_content_stage(store)
        assert await store.store_partial_content(job, '{"content_pieces": [') is True
        assert await store.store_partial_content(job, '{"content_pieces": [{"ti') is True
        # A stale attempt (another attempt number, another worker) writes nothing.
        assert await store.store_partial_content(replace(job, attempt=9), "stale") is False
        assert await store.store_partial_content(replace(job, worker_id="w2"), "stale") is False
        assert await partial_column(store, job.id) == '{"content_pieces": [{"ti'
        record = AttemptRecord(Outcome.COMPLETE, Stage.CONTENT, None)
        outputs = Outputs(*([None] * 9), content_pieces="[]")
        assert await store.complete_job(job, "[]", outputs, record) is True
        assert await partial_column(store, job.id) is None
        # Too late: the attempt ended, the write is refused.
        assert await store.store_partial_content(job, "late") is False
        events = await rows(
            store,
            'SELECT status, "partialContent" FROM "visionJobEvents" WHERE "jobId" = $1 ORDER BY id',
            job.id,
        )
        assert events == [
            ("pending", None), ("gemini_analyzing", None), ("deepseek_generating", None),
            ("deepseek_generating", '{"content_pieces": ['),
            ("deepseek_generating", '{"content_pieces": [{"ti'),
            ("complete", None),
        ]  # fmt: skip
        read = await store.feed.read_after(EventsOf.JOB, job.id, 0, 10)
        assert [e.partial_content for e in read][3:5] == [
            '{"content_pieces": [',
            '{"content_pieces": [{"ti',
        ]
    finally:
        await store.driver.close()


@pytest.mark.parametrize("outcome", [Outcome.RETRY, Outcome.ERROR, Outcome.RELEASED])
async def test_every_other_end_of_the_attempt_clears_the_partial_text(
    database_url: str, outcome: Outcome
) -> None:
    store = await open_store(database_url, create=True)
    try:
        job = await claimed_at_content_stage(store)
        assert await store.store_partial_content(job, '{"content_pieces": [{"ti') is True
        record = AttemptRecord(outcome, Stage.CONTENT, "it broke off")
        assert await store.end_attempt(job, record) is True
        assert await partial_column(store, job.id) is None
    finally:
        await store.driver.close()


async def test_the_streams_own_exception_leaves_the_writer_as_it_is() -> None:
    async def write(text: str) -> bool:
        return True

    # Not wrapped in an ExceptionGroup: the worker judges a StageError by its type.
    with pytest.raises(FatalError, match="refused"):
        async with PartialWriter(write, 0.1) as update:
            update("{")
            raise FatalError("refused")


# --- the worker: a stream that fails after some text ------------------------------------


class HalfThenFails:
    """Tells half an answer, then fails as a provider would (``error``); then succeeds."""

    name = "half"

    def __init__(self, *errors: StageError) -> None:
        self.errors = list(errors)
        self.told: list[str] = []

    async def generate(self, request: ContentRequest) -> Any:
        text = json.dumps(CONTENT)
        assert request.on_text is not None  # the worker listens: PARTIAL_CONTENT_MS > 0
        for end in (10, 30, len(text) // 2):
            request.on_text(text[:end])
            self.told.append(text[:end])
            await anyio.sleep(0.03)
        if self.errors:
            raise self.errors.pop(0)
        request.on_text(text)
        return StageResult(GeneratedContent.model_validate_json(text), Usage("half", 1, 2))


async def run_job(database_url: str, content: HalfThenFails) -> tuple[JobStore, int]:
    settings = PipelineSettings(database_url=database_url, retry_delay_ms=1, poll_interval_ms=50,
                                partial_content_ms=20, _env_file=None)  # fmt: skip
    store = await open_store(database_url, create=True)
    stages = replace(build_stages(settings, store), vision=FakeVision(), content=content,
                     load_image=fake_image)  # fmt: skip
    worker = Worker(store, stages, settings)
    user_id, _ = await store.user_seen("h", None)
    job_id = await store.create_job(
        NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
    )
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        with anyio.fail_after(20):
            while (s := await store.get_job_status(job_id)) is None or s.status not in (
                "complete",
                "error",
            ):
                await anyio.sleep(0.02)
        worker.stop()
    return store, job_id


async def test_a_stream_failing_for_good_fails_the_job_and_clears_the_text(
    database_url: str,
) -> None:
    content = HalfThenFails(FatalError("DeepSeek's content filter blocked the answer"))
    store, job_id = await run_job(database_url, content)
    try:
        status = await store.get_job_status(job_id)
        assert status is not None
        assert (status.status, status.error_message, status.deepseek_output) == (
            "error", "deepseek: DeepSeek's content filter blocked the answer", None
        )  # fmt: skip
        assert await partial_column(store, job_id) is None
        written = await rows(
            store,
            'SELECT "partialContent" FROM "visionJobEvents" WHERE "jobId" = $1 '
            'AND "partialContent" IS NOT NULL ORDER BY id',
            job_id,
        )
        assert written and all(t in content.told for (t,) in written)
    finally:
        await store.driver.close()


async def test_a_dropped_stream_is_retried_and_the_next_attempt_completes(
    database_url: str,
) -> None:
    content = HalfThenFails(RetryableError("could not reach DeepSeek (RemoteProtocolError)"))
    store, job_id = await run_job(database_url, content)
    try:
        status = await store.get_job_status(job_id)
        assert status is not None
        assert (status.status, status.retry_count) == ("complete", 1)
        assert json.loads(status.deepseek_output or "") == CONTENT["content_pieces"]
        assert await partial_column(store, job_id) is None
        events = await rows(
            store,
            'SELECT status, "partialContent" IS NOT NULL FROM "visionJobEvents" '
            'WHERE "jobId" = $1 ORDER BY id',
            job_id,
        )
        statuses = [s for s, _ in events]
        # The retry's pending event has no partial text; the first attempt's partial events
        # come before it, the second attempt's after it, and the complete event has none.
        retry_at = statuses.index("pending", 1)
        assert any(p for _, p in events[:retry_at]) and any(p for _, p in events[retry_at:])
        assert not events[retry_at][1] and events[-1] == ("complete", False)
    finally:
        await store.driver.close()
