"""Stage 1 with Google Gemini (``google-genai``): the image and the prompt in, a validated
``VisionAnalysis`` out.

The client is set up for a job queue (PROVIDERS.md §1): one attempt per call (the worker owns
retries and honours ``Retry-After``), a per-request timeout (the SDK has none by default; the
stage deadline bounds the whole call), a pinned API version, and the httpx2 backend.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx2
from google import genai
from google.genai import _api_client, types

from pipeline.analysis import VisionAnalysis
from pipeline.config import PipelineSettings
from pipeline.errors import FatalError, RetryableError
from pipeline.prompts import vision_response_schema, vision_system_prompt, vision_user_prompt
from pipeline.providers.base import StageResult, Usage, VisionRequest
from pipeline.providers.failures import from_gemini_exception, validated_answer

log = logging.getLogger("pipeline.providers.gemini")

API_VERSION = "v1beta"
"""Pinned: google-genai 3.x defaults to ``v1`` where 2.x used ``v1beta`` (PROVIDERS.md §1.2)."""

# An answer that ended for one of these reasons was withheld for its content: retrying the
# same image gets the same verdict, so the job fails at once with the reason named.
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "MODEL_ARMOR",
    }
)


class GeminiVision:
    """A ``VisionProvider`` backed by the Gemini Developer API (API key, not Vertex AI)."""

    name = "gemini"

    def __init__(self, settings: PipelineSettings) -> None:
        """Build the client; no request is made. Raises ``ValueError`` when GEMINI_API_KEY is
        unset or GEMINI_THINKING_LEVEL is not a level the SDK knows, so a misconfigured
        service fails at start rather than on every job."""
        if not settings.gemini_api_key:
            raise ValueError("GEMINI_API_KEY is not set")
        self._key = settings.gemini_api_key
        self.model = settings.gemini_model
        self._settings = settings
        level = settings.gemini_thinking_level.strip().upper()
        # The SDK only warns about an unknown level and sends it; refuse it here instead.
        if level and level not in types.ThinkingLevel.__members__:
            known = ", ".join(m.lower() for m in types.ThinkingLevel.__members__)
            raise ValueError(f"GEMINI_THINKING_LEVEL must be empty or one of: {known}")
        # Gemini 3.x thinks at MEDIUM by default; thinking is billed as output (§1.8, §4.1).
        self._thinking = (
            types.ThinkingConfig(thinking_level=types.ThinkingLevel(level)) if level else None
        )
        self._client = genai.Client(
            api_key=self._key,
            # Explicit, so GOOGLE_GENAI_USE_VERTEXAI/_ENTERPRISE in the environment cannot
            # flip the client to Vertex AI (PROVIDERS.md §1.1).
            vertexai=False,
            http_options=_http_options(settings),
        )
        _refuse_aiohttp(self._client)

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]:
        """One ``generateContent`` call: the image inline (base64, with its sniffed MIME type)
        and the prompt, JSON mode with a response schema. The answer is validated against
        ``VisionAnalysis`` here, never taken from ``resp.parsed`` (which is silently ``None``
        for invalid JSON, PROVIDERS.md §1.3). Raises ``RetryableError`` or ``FatalError``."""
        image = types.Part.from_bytes(data=request.image.data, mime_type=request.image.mime_type)
        prompt = types.Part.from_text(text=vision_user_prompt(request))
        started = time.perf_counter()
        try:
            resp = await self._client.aio.models.generate_content(
                model=self.model,
                contents=[types.Content(role="user", parts=[image, prompt])],
                config=self._config(request.creativity_level),
            )
        except Exception as exc:
            error = from_gemini_exception(exc, model=self.model, secrets=(self._key,))
            if error is None:
                raise
            # from None: the SDK's exception text embeds the raw response body.
            raise error from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        _refuse_blocked(resp)
        try:
            analysis = validated_answer("Gemini", resp.text, VisionAnalysis)
        except RetryableError:
            if _name(resp.candidates[0].finish_reason if resp.candidates else None) == "MAX_TOKENS":
                raise RetryableError(
                    "Gemini's answer was cut off at the token limit (GEMINI_MAX_OUTPUT_TOKENS)"
                ) from None
            raise
        usage = _usage(self.model, resp.usage_metadata, latency_ms)
        log.debug("gemini %s: %d in, %d out, %.0f ms", self.model, usage.input_tokens,
                  usage.output_tokens, latency_ms)  # fmt: skip
        return StageResult(analysis, usage)

    def _config(self, creativity: float) -> types.GenerateContentConfig:
        s = self._settings
        options: dict[str, Any] = {}
        if s.gemini_send_temperature:
            # Deprecated for Gemini 3.6+ (changelog 2026-07-21, PROVIDERS.md §1.8): sent only
            # when configured. A vision reading wants little randomness: 0..2 -> 0.2..1.0.
            options["temperature"] = round(0.2 + 0.4 * creativity, 3)
        if self._thinking is not None:
            options["thinking_config"] = self._thinking
        return types.GenerateContentConfig(
            system_instruction=vision_system_prompt(),
            response_mime_type="application/json",
            response_json_schema=vision_response_schema(),
            max_output_tokens=s.gemini_max_output_tokens,
            **options,
        )

    async def aclose(self) -> None:
        """Close the connection pool; the worker's owner calls it on shutdown."""
        await self._client.aio.aclose()


def _http_options(settings: PipelineSettings) -> types.HttpOptions:
    timeout_ms = int(settings.provider_timeout_seconds * 1000)  # MILLISECONDS (§1.7)
    async_args: dict[str, Any] | None = None
    if _api_client.has_aiohttp:
        # With aiohttp importable the SDK silently switches its async backend to it, with
        # other timeouts, exceptions and a hidden reconnect sleep (PROVIDERS.md §0.2, §1.7).
        # A transport of our own is the SDK's documented signal for "httpx, not aiohttp"
        # (``_use_aiohttp``). Not passed otherwise: it would lose the SDK's per-event-loop
        # pool and the proxy settings read from the environment.
        async_args = {"transport": httpx2.AsyncHTTPTransport()}
    return types.HttpOptions(
        base_url=settings.gemini_base_url or None,
        api_version=API_VERSION,
        timeout=timeout_ms,
        # One attempt: the job layer retries with backoff and Retry-After, which the SDK's
        # tenacity loop ignores; attempts=1 also turns off the aiohttp backend's hidden
        # 1-10 s sleep-and-retry on connection errors (PROVIDERS.md §1.7).
        retry_options=types.HttpRetryOptions(attempts=1),
        async_client_args=async_args,
    )


def _refuse_aiohttp(client: genai.Client) -> None:
    """Fail at start if the SDK would still use aiohttp (a private check, cheap insurance
    against an SDK change; PROVIDERS.md §1.7 suggests exactly this guard)."""
    api = getattr(client, "_api_client", None)
    use_aiohttp = getattr(api, "_use_aiohttp", None)
    if callable(use_aiohttp) and use_aiohttp():
        raise RuntimeError("google-genai would use aiohttp; the Gemini provider needs httpx2")


def _refuse_blocked(resp: types.GenerateContentResponse) -> None:
    """A blocked prompt comes back as HTTP 200 with ``promptFeedback.blockReason`` and no
    candidates; a blocked answer as a candidate with a safety ``finishReason`` (§1.5)."""
    feedback = resp.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise FatalError(f"Gemini blocked the image: {_name(feedback.block_reason)}")
    if not resp.candidates:
        raise RetryableError("Gemini returned no answer")
    reason = _name(resp.candidates[0].finish_reason)
    if reason in BLOCKING_FINISH_REASONS:
        raise FatalError(f"Gemini blocked the image: {reason}")


def _name(value: object) -> str:
    """An SDK enum's wire name ("SAFETY"); unknown values arrive as plain strings."""
    return str(getattr(value, "value", value) or "")


def _usage(model: str, meta: types.GenerateContentResponseUsageMetadata | None,
           latency_ms: float) -> Usage:  # fmt: skip
    """Billing view of ``usageMetadata`` (PROVIDERS.md §4.1): input = prompt (image included)
    + tool-use prompt; output = visible candidates + thinking, which is billed as output."""
    if meta is None:
        return Usage(model=model, latency_ms=latency_ms)
    given = (meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)
    produced = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return Usage(model=model, input_tokens=given, output_tokens=produced, latency_ms=latency_ms)
