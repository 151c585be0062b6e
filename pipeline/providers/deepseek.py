"""Stage 2 with DeepSeek (through the ``openai`` SDK): the validated analysis and the job's
wishes in, validated ``GeneratedContent`` out.

Set up for a job queue (PROVIDERS.md §2): no SDK retries (the worker owns them), JSON mode
with the word "json" in the prompt, thinking mode off so that temperature takes effect, and a
per-read timeout that the stage deadline backs up (blank keep-alive lines reset it, §2.5).
The answer is streamed (issue 17): its text so far goes to the request's ``on_text`` as it
is written; a stream that breaks off mid-answer is a retryable provider error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from openai import AsyncOpenAI, AsyncStream
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletionChunk

from pipeline.analysis import GeneratedContent
from pipeline.config import PipelineSettings
from pipeline.errors import FatalError, RetryableError
from pipeline.prompts import content_system_prompt, content_user_prompt
from pipeline.providers.base import ContentRequest, StageResult, TextSink, Usage
from pipeline.providers.failures import from_openai_exception, validated_answer

log = logging.getLogger("pipeline.providers.deepseek")


def temperature_for(creativity: float) -> float:
    """Creativity 0..2 (default 1) to DeepSeek's temperature: 0 -> 0.3, 1 -> 1.0 (the API's
    default), 2 -> 1.5 (its advice for creative writing, PROVIDERS.md §2.4), linear between."""
    c = min(max(creativity, 0.0), 2.0)
    value = 0.3 + 0.7 * c if c <= 1.0 else 1.0 + 0.5 * (c - 1.0)
    return round(value, 3)


class DeepSeekContent:
    """A ``ContentProvider`` backed by DeepSeek's OpenAI-compatible chat completions API."""

    name = "deepseek"

    def __init__(self, settings: PipelineSettings) -> None:
        """Build the client; no request is made. Raises ``ValueError`` without a key."""
        if not settings.deepseek_api_key:
            raise ValueError("DEEPSEEK_API_KEY is not set")
        self._key = settings.deepseek_api_key
        self.model = settings.deepseek_model
        self._max_tokens = settings.deepseek_max_tokens
        self._client = AsyncOpenAI(
            api_key=self._key,
            # Explicit, so OPENAI_BASE_URL in the environment is never used (PROVIDERS.md §2.1).
            base_url=settings.deepseek_base_url,
            # The SDK retries 408/409/429/5xx twice by default; the worker owns retries.
            max_retries=0,
            timeout=settings.provider_timeout_seconds,
        )

    async def generate(self, request: ContentRequest) -> StageResult[GeneratedContent]:
        """One streamed chat completion in JSON mode, validated as ``GeneratedContent``; the
        text so far goes to ``request.on_text`` as it arrives (issue 17).

        Raises ``RetryableError`` for blank, non-JSON or wrongly shaped answers, for answers
        cut short (``length``, ``insufficient_system_resource``) and for a stream that broke
        off or ended before the answer did; ``FatalError`` when the content filter stopped the
        answer or the API refused the request for good."""
        started = time.perf_counter()
        try:
            stream: AsyncStream[ChatCompletionChunk] = await self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": content_system_prompt()},
                    {"role": "user", "content": content_user_prompt(request)},
                ],
                # Not chat.completions.parse(): that sends json_schema, which DeepSeek does not
                # document; only text and json_object are (PROVIDERS.md §2.1, §2.3).
                response_format={"type": "json_object"},
                temperature=temperature_for(request.creativity_level),
                max_tokens=self._max_tokens,
                # The usage comes in a last chunk of its own (PROVIDERS.md, streaming).
                stream=True,
                stream_options={"include_usage": True},
                # V4 thinks by default and then ignores temperature (PROVIDERS.md §2.2).
                extra_body={"thinking": {"type": "disabled"}},
            )
            answer = await _read_stream(stream, request.on_text)
        except Exception as exc:
            error = from_openai_exception(
                exc, provider="DeepSeek", model=self.model, secrets=(self._key,)
            )
            if error is None:
                raise
            # from None: the SDK's exception text embeds the raw response body.
            raise error from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        content = _answer_text(answer)
        generated = validated_answer("DeepSeek", content, GeneratedContent)
        usage = _usage(self.model, answer.usage, latency_ms)
        log.debug("deepseek %s: %d in, %d out, %.0f ms", self.model, usage.input_tokens,
                  usage.output_tokens, latency_ms)  # fmt: skip
        return StageResult(generated, usage)

    async def aclose(self) -> None:
        """Close the connection pool; the worker's owner calls it on shutdown."""
        await self._client.close()


@dataclass
class _Answer:
    """What a stream brought: the first choice's text and why it stopped, and the usage of
    the last chunk (``include_usage``); ``finish`` None: the stream ended before the answer."""

    text: str = ""
    finish: str | None = None
    usage: CompletionUsage | None = None


async def _read_stream(
    stream: AsyncStream[ChatCompletionChunk], on_text: TextSink | None
) -> _Answer:
    """Read the chunks to the end, telling ``on_text`` the text so far as it grows. A
    transport fault mid-way propagates (the caller maps it: retryable)."""
    answer = _Answer()
    async with stream:
        async for chunk in stream:
            # The SDK builds chunks without validating them: a chunk of the wrong shape may
            # lack attributes rather than raise.
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                answer.usage = usage
            for choice in getattr(chunk, "choices", None) or ():
                if choice.index != 0:
                    continue
                piece = choice.delta.content if choice.delta is not None else None
                if piece:
                    answer.text += piece
                    if on_text is not None:
                        on_text(answer.text)
                if choice.finish_reason:
                    # The SDK passes values outside its Literal through as plain strings.
                    answer.finish = str(choice.finish_reason)
    return answer


def _answer_text(answer: _Answer) -> str:
    """The answer's text, after checking why the model stopped (PROVIDERS.md §2.5)."""
    reason = answer.finish
    if reason is None:
        raise RetryableError("DeepSeek's answer stream ended before the answer was finished")
    if reason == "content_filter":
        raise FatalError("DeepSeek's content filter blocked the answer")
    if reason == "length":
        raise RetryableError(
            "DeepSeek's answer was cut off at the token limit (DEEPSEEK_MAX_TOKENS)"
        )
    if reason == "insufficient_system_resource":
        raise RetryableError("DeepSeek ran out of capacity while answering")
    return answer.text


def _usage(model: str, usage: CompletionUsage | None, latency_ms: float) -> Usage:
    """``prompt_tokens`` (cache hits included) in, ``completion_tokens`` (reasoning included)
    out; a stream without a usage chunk counts zero."""
    if usage is None:
        return Usage(model=model, latency_ms=latency_ms)
    return Usage(
        model=model,
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        latency_ms=latency_ms,
    )
