"""The real providers' promises, with the real SDKs against local fake APIs (no internet):
what goes on the wire, how every failure is classified (retry later or fail now, with a
reason a person can act on), usage and cost, and that an API key never leaks."""

from __future__ import annotations

import base64
import json
import logging
import re
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

import anyio
import pytest
from google.genai import _api_client

from pipeline.analysis import GeneratedContent, OutputFormat, VisionAnalysis
from pipeline.config import PipelineSettings
from pipeline.cost import stage_cost
from pipeline.errors import FatalError, RetryableError, StageError
from pipeline.prompts import (
    CONTENT_EXAMPLE,
    VISION_EXAMPLE,
    content_system_prompt,
    content_user_prompt,
    vision_user_prompt,
)
from pipeline.providers.base import ContentRequest, Image, StageResult, Usage, VisionRequest
from pipeline.providers.deepseek import DeepSeekContent, temperature_for
from pipeline.providers.failures import retry_after_seconds
from pipeline.providers.gemini import GeminiVision
from pipeline.providers.offline import OfflineContent, OfflineVision
from pipeline.service import build_providers
from tests.fake_ai import (
    ANALYSIS,
    DEEPSEEK_KEY,
    GEMINI_KEY,
    FakeAI,
    FakeAPI,
    Reply,
    deepseek_answer,
    deepseek_error,
    gemini_answer,
    gemini_blocked,
    gemini_error,
    isolate_sdk_env,
    provider_settings,
    serve_fake_ai,
)
from tests.support import free_port, png_bytes

pytestmark = pytest.mark.anyio

IMAGE = Image(png_bytes((198, 40, 40), (2, 2)), "image/png", 2, 2)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAI]:
    with serve_fake_ai() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAI, monkeypatch: pytest.MonkeyPatch) -> FakeAI:
    """The fake APIs with empty scripts, and an environment the SDKs cannot be steered by."""
    isolate_sdk_env(monkeypatch)
    server.reset()
    return server


def vision_request(creativity: float = 1.0) -> VisionRequest:
    return VisionRequest(IMAGE, "launch campaign", "a running-shoe brand", creativity)


def content_request(
    fmt: OutputFormat = "social_media_post", extra: str | None = None
) -> ContentRequest:
    analysis = VisionAnalysis.model_validate(ANALYSIS)
    return ContentRequest(analysis, "launch campaign", "a running-shoe brand", fmt, 1.0, extra)


P = TypeVar("P", GeminiVision, DeepSeekContent)


@asynccontextmanager
async def opened(provider: P) -> AsyncIterator[P]:
    try:
        yield provider
    finally:
        await provider.aclose()


async def call(kind: str, settings: PipelineSettings) -> StageResult[Any]:
    """One call of the ``kind`` provider ("gemini" or "deepseek"), closing its client."""
    if kind == "gemini":
        async with opened(GeminiVision(settings)) as g:
            return await g.analyze(vision_request())
    async with opened(DeepSeekContent(settings)) as d:
        return await d.generate(content_request())


async def failure(kind: str, settings: PipelineSettings) -> StageError:
    with pytest.raises(StageError) as caught:
        await call(kind, settings)
    return caught.value


def api(fake: FakeAI, kind: str) -> FakeAPI:
    return fake.gemini if kind == "gemini" else fake.deepseek


BOTH = pytest.mark.parametrize("kind", ["gemini", "deepseek"])


# --- what goes on the wire --------------------------------------------------------------


async def test_gemini_sends_the_image_inline_in_json_mode_to_the_configured_model(
    fake: FakeAI,
) -> None:
    async with opened(GeminiVision(provider_settings(fake))) as g:
        result = await g.analyze(vision_request())
    [request] = fake.gemini.received
    assert request.path == "/gemini/v1beta/models/gemini-3.8-flash:generateContent"
    assert request.headers["x-goog-api-key"] == GEMINI_KEY
    [content] = request.body["contents"]
    image, text = content["parts"]
    # The SDK encodes inline data with the URL-safe base64 alphabet (google/genai/_common.py).
    assert base64.urlsafe_b64decode(image["inlineData"]["data"]) == IMAGE.data
    assert image["inlineData"]["mime_type"] == "image/png"
    assert "launch campaign" in text["text"] and "running-shoe brand" in text["text"]
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config["responseJsonSchema"]
    assert schema["required"] == ["colors", "mood_and_tone", "composition", "brand_insights"]
    assert "temperature" not in config  # deprecated for Gemini 3.6+: off unless configured
    assert config["thinkingConfig"] == {"thinking_level": "LOW"}  # snake_case: what the SDK sends
    assert "JSON" in request.body["systemInstruction"]["parts"][0]["text"]
    # The answer is validated, extra fields kept; usage: output = candidates + thoughts.
    assert result.value == VisionAnalysis.model_validate(ANALYSIS)
    assert result.value.composition.model_extra == {"focal_point": "centre"}
    assert (result.usage.model, result.usage.input_tokens, result.usage.output_tokens) == (
        "gemini-3.8-flash", 265, 160)  # fmt: skip


async def test_gemini_sends_temperature_and_thinking_only_as_configured(fake: FakeAI) -> None:
    settings = provider_settings(fake, gemini_send_temperature=True, gemini_thinking_level="",
                                 gemini_model="gemini-3.5-flash-lite")  # fmt: skip
    async with opened(GeminiVision(settings)) as g:
        await g.analyze(vision_request(creativity=2.0))
        await g.analyze(vision_request(creativity=0.0))
    high, low = (r.body["generationConfig"] for r in fake.gemini.received)
    assert (high["temperature"], low["temperature"]) == (1.0, 0.2)
    assert "thinkingConfig" not in high
    assert fake.gemini.received[0].path.endswith("/models/gemini-3.5-flash-lite:generateContent")


@pytest.mark.parametrize("aiohttp_installed", [False, True])
async def test_gemini_never_uses_the_aiohttp_backend(
    fake: FakeAI, monkeypatch: pytest.MonkeyPatch, aiohttp_installed: bool
) -> None:
    # aiohttp is not installed here; pretend it is, as a dependency might make it one day.
    monkeypatch.setattr(_api_client, "has_aiohttp", aiohttp_installed)
    async with opened(GeminiVision(provider_settings(fake))) as g:
        assert g._client._api_client._use_aiohttp() is False
        await g.analyze(vision_request())
    assert len(fake.gemini.received) == 1


async def test_deepseek_sends_json_mode_the_model_and_thinking_disabled(fake: FakeAI) -> None:
    async with opened(DeepSeekContent(provider_settings(fake))) as d:
        result = await d.generate(content_request(extra="mention the spring sale"))
    [request] = fake.deepseek.received
    assert request.path == "/deepseek/chat/completions"
    assert request.headers["authorization"] == f"Bearer {DEEPSEEK_KEY}"
    body = request.body
    assert body["model"] == "deepseek-v4-flash"
    assert body["response_format"] == {"type": "json_object"}
    assert body["thinking"] == {"type": "disabled"}
    assert (body["stream"], body["temperature"], body["max_tokens"]) == (True, 1.0, 4096)
    assert body["stream_options"] == {"include_usage": True}
    system, user = body["messages"]
    assert (system["role"], user["role"]) == ("system", "user")
    assert "json" in (system["content"] + user["content"]).lower()
    assert "mention the spring sale" in user["content"]
    assert result.value.content_pieces[0].hashtags == ["#Move"]
    assert (result.usage.model, result.usage.input_tokens, result.usage.output_tokens) == (
        "deepseek-v4-flash", 800, 300)  # fmt: skip


def test_creativity_sets_deepseeks_temperature_within_its_advice() -> None:
    assert [temperature_for(c) for c in (0.0, 0.5, 1.0, 1.5, 2.0)] == [0.3, 0.65, 1.0, 1.25, 1.5]
    assert temperature_for(-1) == 0.3 and temperature_for(9) == 1.5


def test_the_content_prompt_carries_the_validated_analysis_as_json() -> None:
    request = content_request("bullet_points", extra="Keep it formal")
    user = content_user_prompt(request)
    block = re.search(r"<image_analysis_json>\n(.*)\n</image_analysis_json>", user, re.DOTALL)
    assert block is not None and json.loads(block.group(1)) == ANALYSIS
    assert "one piece per bullet" in user and "Keep it formal" in user
    assert "json" in content_system_prompt().lower()
    assert "one piece per post" in content_user_prompt(content_request("social_media_post"))
    assert "one piece per section" in content_user_prompt(content_request("detailed_analysis"))
    assert "<additional_instructions>" not in content_user_prompt(content_request())
    assert "(none given)" in vision_user_prompt(VisionRequest(IMAGE, "audit", "  ", 0.0))
    # The examples shown to the models are valid answers.
    VisionAnalysis.model_validate(VISION_EXAMPLE)
    GeneratedContent.model_validate(CONTENT_EXAMPLE)


# --- failures: retry later --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "reply", "hint"),
    [
        ("gemini", gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded",
                                headers={"retry-after": "2"}), 2.0),
        ("gemini", gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", details=[
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]), 7.0),
        ("deepseek", deepseek_error(429, "Rate Limit Reached",
                                    headers={"retry-after-ms": "300"}), 0.3),
        ("deepseek", deepseek_error(429, "Rate Limit Reached", headers={"retry-after": "4"}), 4),
        ("deepseek", deepseek_error(429, "Rate Limit Reached"), None),
    ],
)  # fmt: skip
async def test_a_rate_limit_is_retryable_with_the_providers_hint(
    fake: FakeAI, kind: str, reply: Reply, hint: float | None
) -> None:
    api(fake, kind).will(reply)
    error = await failure(kind, provider_settings(fake))
    assert isinstance(error, RetryableError) and "rate limiting" in error.message
    if hint is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(hint)
    assert len(api(fake, kind).received) == 1  # the SDK did not retry on its own


@BOTH
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable_after_one_request(
    fake: FakeAI, kind: str, status: int
) -> None:
    if status == 502:  # a proxy's HTML page, not the API's JSON
        api(fake, kind).will(Reply(status=status, body="<html>Bad Gateway</html>"))
    else:
        body = {"code": status, "message": "The model is overloaded", "status": "UNAVAILABLE"}
        api(fake, kind).will(Reply(status=status, body={"error": body}))
    error = await failure(kind, provider_settings(fake))
    assert isinstance(error, RetryableError) and f"HTTP {status}" in error.message
    assert len(api(fake, kind).received) == 1


@pytest.mark.parametrize(
    ("kind", "reply"),
    [
        ("gemini", gemini_answer("not json at all")),
        ("gemini", gemini_answer('{"colors": 1}')),
        ("gemini", gemini_answer("")),
        ("gemini", gemini_answer('{"colors": {"prim', finish="MAX_TOKENS")),
        ("gemini", Reply(body={"candidates": []})),
        ("gemini", Reply(body="<html>captive portal</html>")),
        ("deepseek", Reply(body="<html>captive portal</html>")),
        ("deepseek", Reply(body=[])),
        ("deepseek", deepseek_answer("   \n ")),
        ("deepseek", deepseek_answer("not json")),
        ("deepseek", deepseek_answer('{"content_pieces": []}')),
        ("deepseek", deepseek_answer('{"content_pie', finish="length")),
        ("deepseek", deepseek_answer(finish="insufficient_system_resource")),
    ],
)
async def test_unusable_answers_are_retryable(fake: FakeAI, kind: str, reply: Reply) -> None:
    api(fake, kind).will(reply)
    error = await failure(kind, provider_settings(fake))
    assert isinstance(error, RetryableError), error.message


async def test_a_fenced_json_answer_is_accepted(fake: FakeAI) -> None:
    fake.deepseek.will(
        deepseek_answer('```json\n{"content_pieces": [{"title": "t", "body": "b"}]}\n```')
    )
    result = await call("deepseek", provider_settings(fake))
    assert result.value.content_pieces[0].title == "t"


@BOTH
async def test_dropped_and_refused_connections_are_retryable(fake: FakeAI, kind: str) -> None:
    api(fake, kind).will(Reply(body=json.dumps({"padding": "x" * 2000}), drop=True))
    dropped = await failure(kind, provider_settings(fake))
    assert isinstance(dropped, RetryableError) and "could not reach" in dropped.message
    closed = f"http://127.0.0.1:{free_port()}"
    elsewhere = provider_settings(fake, gemini_base_url=closed, deepseek_base_url=closed)
    refused = await failure(kind, elsewhere)
    assert isinstance(refused, RetryableError) and "could not reach" in refused.message


@BOTH
async def test_a_slow_answer_hits_the_sdk_timeout_and_is_retryable(fake: FakeAI, kind: str) -> None:
    api(fake, kind).will(Reply(delay=1.5))
    error = await failure(kind, provider_settings(fake, provider_timeout_seconds=0.3))
    assert isinstance(error, RetryableError) and "did not answer in time" in error.message


@BOTH
@pytest.mark.parametrize("hang", ["trickle", "delay"])
async def test_a_hung_answer_is_cut_by_the_outer_deadline(
    fake: FakeAI, kind: str, hang: str
) -> None:
    # Blank lines every 50 ms reset the SDK's per-read timeout (0.3 s here), so only the
    # stage's own deadline ends the call (PROVIDERS.md §0.5, §2.5).
    api(fake, kind).will(Reply(trickle=3.0) if hang == "trickle" else Reply(delay=3.0))
    settings = provider_settings(fake, provider_timeout_seconds=0.3 if hang == "trickle" else 10)
    started = anyio.current_time()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.8):
            await call(kind, settings)
    assert 0.7 < anyio.current_time() - started < 2.0


# --- failures: fail now -----------------------------------------------------------------

# What Gemini really answers for a bad key: 400, not 401.
GEMINI_BAD_KEY = gemini_error(
    400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
    details=[{"@type": "type.googleapis.com/google.rpc.Help", "links": [{"url": "x" * 300}]},
             {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "reply", "expected"),
    [
        ("gemini", GEMINI_BAD_KEY, "Gemini rejected the API key"),
        ("gemini", gemini_error(401, "UNAUTHENTICATED", "no key"), "Gemini rejected the API key"),
        ("gemini", gemini_error(403, "PERMISSION_DENIED", "API not enabled"),
         "Gemini refused access with this API key"),
        ("gemini", gemini_error(404, "NOT_FOUND", "models/gemini-3.8-flash is not found"),
         "Gemini model 'gemini-3.8-flash' was not found"),
        ("gemini", gemini_error(400, "INVALID_ARGUMENT", "Unable to process input image."),
         "Gemini could not use the image"),
        ("gemini", gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", details=[
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]),
         "Gemini daily quota is used up"),
        ("deepseek", deepseek_error(401, "Authentication Fails (no such user)",
                                    kind="authentication_error"), "DeepSeek rejected the API key"),
        ("deepseek", deepseek_error(402, "Insufficient Balance"),
         "DeepSeek account has insufficient balance"),
        ("deepseek", deepseek_error(400, "Model Not Exist"),
         "DeepSeek model 'deepseek-v4-flash' was not found"),
        ("deepseek", deepseek_error(422, "Invalid temperature"),
         "DeepSeek rejected the request parameters"),
        ("deepseek", deepseek_answer(finish="content_filter"),
         "DeepSeek's content filter blocked the answer"),
    ],
)  # fmt: skip
async def test_errors_no_retry_can_fix_fail_at_once_after_one_request(
    fake: FakeAI, kind: str, reply: Reply, expected: str
) -> None:
    api(fake, kind).will(reply)
    error = await failure(kind, provider_settings(fake))
    assert isinstance(error, FatalError) and error.message.startswith(expected), error.message
    assert len(api(fake, kind).received) == 1


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (gemini_blocked("SAFETY"), "SAFETY"),
        (gemini_blocked("PROHIBITED_CONTENT"), "PROHIBITED_CONTENT"),
        (Reply(body={"candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}]}),
         "IMAGE_SAFETY"),
        (gemini_answer("{}", finish="SAFETY"), "SAFETY"),
    ],
)  # fmt: skip
async def test_a_gemini_safety_block_fails_at_once(fake: FakeAI, reply: Reply, reason: str) -> None:
    fake.gemini.will(reply)
    error = await failure("gemini", provider_settings(fake))
    assert isinstance(error, FatalError)
    assert error.message == f"Gemini blocked the image: {reason}"


# --- keys, selection, cost --------------------------------------------------------------


async def test_the_keys_never_appear_in_errors_or_logs(
    fake: FakeAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Servers that echo the key back (as OpenAI's "Incorrect API key provided: sk-..." does).
    fake.gemini.will(
        gemini_error(400, "INVALID_ARGUMENT", f"API key not valid: {GEMINI_KEY}"),
        gemini_error(500, "INTERNAL", f"oops {GEMINI_KEY}"),
        Reply(status=502, body=f"<html>{GEMINI_KEY}</html>"),
        gemini_answer(f"not json {GEMINI_KEY}"),
        gemini_blocked(),
        Reply(delay=1.0),
    )
    fake.deepseek.will(
        deepseek_error(401, f"Incorrect API key provided: {DEEPSEEK_KEY}"),
        deepseek_error(402, f"Insufficient Balance for {DEEPSEEK_KEY}"),
        deepseek_error(429, f"slow down {DEEPSEEK_KEY}", headers={"retry-after": "1"}),
        deepseek_answer(f"{{ {DEEPSEEK_KEY}"),
        Reply(body=json.dumps({"padding": DEEPSEEK_KEY * 50}), drop=True),
        Reply(delay=1.0),
    )
    settings = provider_settings(fake, provider_timeout_seconds=0.3)
    texts: list[str] = []
    build_providers(settings)
    for kind in ["gemini"] * 6 + ["deepseek"] * 6:
        error = await failure(kind, settings)
        texts += [error.message, str(error), repr(error), *traceback.format_exception(error)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    assert len(fake.gemini.received) == 6 and len(fake.deepseek.received) == 6
    leaked = [t for t in texts if GEMINI_KEY in t or DEEPSEEK_KEY in t]
    assert leaked == []
    assert any("[redacted]" in t for t in texts)


def test_build_providers_follows_PROVIDERS_and_the_keys(
    fake: FakeAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline")
    vision, content = build_providers(provider_settings(fake))
    assert (type(vision), type(content)) == (GeminiVision, DeepSeekContent)
    vision, content = build_providers(provider_settings(fake, deepseek_api_key=None))
    assert (type(vision), type(content)) == (GeminiVision, OfflineContent)
    vision, content = build_providers(provider_settings(fake, gemini_api_key=None))
    assert (type(vision), type(content)) == (OfflineVision, DeepSeekContent)
    vision, content = build_providers(provider_settings(fake, providers="offline"))
    assert (type(vision), type(content)) == (OfflineVision, OfflineContent)
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline"]
    assert "providers: vision=gemini (gemini-3.8-flash), content=deepseek (deepseek-v4-flash)" in (
        lines[0])  # fmt: skip
    assert "vision=offline, content=offline (PROVIDERS=offline)" in lines[-1]
    assert not any(GEMINI_KEY in line or DEEPSEEK_KEY in line for line in lines)
    with pytest.raises(ValueError, match="GEMINI_THINKING_LEVEL"):
        build_providers(provider_settings(fake, gemini_thinking_level="extreme"))


def test_stage_cost_uses_the_configured_prices() -> None:
    no_env_file: dict[str, Any] = {"_env_file": None}
    settings = PipelineSettings(**no_env_file)
    million = Usage("m", input_tokens=1_000_000, output_tokens=1_000_000)
    assert stage_cost("gemini", million, settings) == pytest.approx(0.75 + 3.75)
    assert stage_cost("deepseek", million, settings) == pytest.approx(0.30 + 1.20)
    assert stage_cost("offline", million, settings) == 0.0
    assert stage_cost("gemini", None, settings) == 0.0
    cheap = PipelineSettings(**no_env_file, gemini_price_input_per_m=0.30,
                             gemini_price_output_per_m=2.50)  # fmt: skip
    assert stage_cost("gemini", Usage("m", 265, 160), cheap) == pytest.approx(
        (265 * 0.30 + 160 * 2.50) / 1e6)  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "12"}, 12.0), ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
     ({"retry-after": "soon"}, None), ({"retry-after": "-3"}, None), ({}, None),
     ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0)],
)  # fmt: skip
def test_retry_after_headers_are_read_in_seconds(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after_seconds(headers) == seconds


def test_a_retry_after_date_is_read_as_seconds_from_now() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds({"Retry-After": soon}) == pytest.approx(30, abs=2)
