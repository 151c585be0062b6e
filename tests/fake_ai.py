"""Fake Gemini and DeepSeek HTTP APIs, for driving the real SDKs without the internet.

One Starlette app on uvicorn, 127.0.0.1, in a background thread, serves both: Gemini under
``/gemini/{version}/models/{model}:generateContent`` and DeepSeek under
``/deepseek/chat/completions`` (a request with ``"stream": true`` gets its answer as the SSE
stream of ``chat.completion.chunk`` events DeepSeek sends, ``stream_events``). Point
``GEMINI_BASE_URL`` and ``DEEPSEEK_BASE_URL`` at ``FakeAI.gemini_url`` and
``FakeAI.deepseek_url``.

Each API answers from its script (``api.will(Reply(...), ...)``), one reply per request, and
with a valid success once the script is empty; it records every request (path, headers, JSON
body, arrival time). A reply can be any status, body and headers, wait before answering,
trickle blank lines before its body (as DeepSeek does under load), or drop the connection
halfway through the body.

Not aiohttp: importing aiohttp would switch google-genai's async backend (PROVIDERS.md §3.1).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from pipeline.config import PipelineSettings

ANALYSIS: dict[str, Any] = {
    "colors": {"primary": ["#C62828"], "secondary": ["#FFFFFF"], "description": "Bold red."},
    "mood_and_tone": {"mood": "energetic", "tone": "confident"},
    "composition": {"layout": "centred mark on a plain field", "focal_point": "centre"},
    "brand_insights": {
        "brand_personality": "bold, direct",
        "perceived_industry": "sportswear",
        "target_audience": "active adults",
    },
}
CONTENT: dict[str, Any] = {
    "content_pieces": [
        {"title": "Red that moves", "body": "Energy you can see.", "hashtags": ["#Move"]},
        {"title": "Plain and proud", "body": "One mark, no noise."},
    ]
}


@dataclass
class Reply:
    """One scripted answer. ``body``: a dict or list is sent as JSON, a str as is."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    trickle: float = 0.0  # seconds of "\n" lines (200 sent first) before the body
    drop: bool = False  # send half the body (a stream: half its chunks), then break the connection
    # A streamed answer (the request asked stream=True): the content in this many chunks,
    # this many seconds apart; ``finish`` False ends the stream ([DONE]) without a
    # finish_reason; ``usage`` False leaves out the last chunk with the usage.
    pieces: int = 8
    chunk_delay: float = 0.0
    finish: bool = True
    usage: bool = True


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival


class FakeAPI:
    """One provider's script and request log; safe to use from the test's thread."""

    def __init__(self, default: Reply) -> None:
        self._default = default
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self._received: list[Received] = []
        # time.monotonic() and time.time() when each stream's first content chunk was sent.
        self.first_chunks: list[tuple[float, float]] = []

    def will(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._received.clear()
            self.first_chunks.clear()

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def _take(self, request: Received) -> Reply:
        with self._lock:
            self._received.append(request)
            return self._script.pop(0) if self._script else self._default


# --- reply builders ---------------------------------------------------------------------


def gemini_answer(
    text: str | None = None,
    *,
    finish: str = "STOP",
    prompt: int = 265,
    candidates: int = 120,
    thoughts: int = 40,
) -> Reply:
    """A 200 ``generateContent`` answer whose text is ``text`` (default: a valid analysis)."""
    part = {"text": json.dumps(ANALYSIS) if text is None else text}
    return Reply(body={
        "candidates": [{"content": {"role": "model", "parts": [part]},
                        "finishReason": finish, "index": 0}],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                          "thoughtsTokenCount": thoughts,
                          "totalTokenCount": prompt + candidates + thoughts},
        "modelVersion": "gemini-3.8-flash",
    })  # fmt: skip


def gemini_blocked(reason: str = "SAFETY") -> Reply:
    """The prompt (the image) was blocked: HTTP 200 with no candidates (PROVIDERS.md §1.5)."""
    return Reply(body={"promptFeedback": {"blockReason": reason, "safetyRatings": []}})


def gemini_error(
    status: int, rpc_status: str, message: str, *, details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:  # fmt: skip
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if details is not None:
        error["details"] = details
    return Reply(status=status, body={"error": error}, headers=headers or {})


def deepseek_answer(
    content: str | None = None, *, finish: str = "stop", prompt: int = 800, completion: int = 300
) -> Reply:
    """A 200 chat completion whose content is ``content`` (default: valid content pieces)."""
    text = json.dumps(CONTENT) if content is None else content
    return Reply(body={
        "id": "cmpl-1", "object": "chat.completion", "created": 1767225600,
        "model": "deepseek-v4-flash",
        "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion, "prompt_cache_hit_tokens": 0,
                  "prompt_cache_miss_tokens": prompt},
    })  # fmt: skip


def deepseek_error(
    status: int, message: str, *, kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> Reply:  # fmt: skip
    body = {"error": {"message": message, "type": kind, "param": None,
                      "code": "invalid_request_error"}}  # fmt: skip
    return Reply(status=status, body=body, headers=headers or {})


# --- the server -------------------------------------------------------------------------


class _Dropped(Exception):
    """Raised mid-body on purpose: uvicorn then closes the connection without finishing."""


class FakeAI:
    """Both fake APIs behind one local server; ``reset()`` between tests."""

    def __init__(self) -> None:
        self.gemini = FakeAPI(gemini_answer())
        self.deepseek = FakeAPI(deepseek_answer())
        self.port = 0
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["POST"])])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def gemini_url(self) -> str:
        return self.base + "/gemini"

    @property
    def deepseek_url(self) -> str:
        return self.base + "/deepseek"

    def reset(self) -> None:
        self.gemini.reset()
        self.deepseek.reset()

    async def _endpoint(self, request: Request) -> Response:
        path = request.url.path
        if path.startswith("/gemini/") and path.endswith(":generateContent"):
            api = self.gemini
        elif path == "/deepseek/chat/completions":
            api = self.deepseek
        else:
            return JSONResponse({"error": {"message": f"no fake at {path}"}}, status_code=404)
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        received = Received(path, dict(request.headers), body, time.monotonic())
        reply = api._take(received)
        if isinstance(body, dict) and body.get("stream") is True:
            events = stream_events(reply)
            if events is not None:
                return await _stream(reply, events, api)
        return await _respond(reply)


def _chunk(answer: dict[str, Any], choices: list[Any], **extra: Any) -> bytes:
    chunk = {
        "id": answer.get("id", "cmpl-1"),
        "object": "chat.completion.chunk",
        "created": answer.get("created", 1767225600),
        "model": answer.get("model", "deepseek-v4-flash"),
        "choices": choices,
        **extra,
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"  # fmt: skip


def stream_events(reply: Reply) -> list[bytes] | None:
    """A 200 chat completion as DeepSeek streams it (``stream=True``, ``stream_options:
    {"include_usage": true}``): a first chunk with the role, the content in ``reply.pieces``
    chunks, a chunk with the finish_reason, a last chunk with no choices and the usage, then
    ``data: [DONE]``. Returned as the SSE events, each one ``data:`` line. None: the reply is
    not a chat completion (an error, a proxy's page), sent as it is."""
    answer = reply.body
    if reply.status != 200 or not isinstance(answer, dict) or not answer.get("choices"):
        return None
    choice = answer["choices"][0]
    text = str(choice["message"].get("content") or "")
    step = max(1, -(-len(text) // max(1, reply.pieces)))
    delta = lambda d, f=None: [{"index": 0, "delta": d, "logprobs": None, "finish_reason": f}]  # noqa: E731
    events = [_chunk(answer, delta({"role": "assistant", "content": ""}))]
    events += [_chunk(answer, delta({"content": text[i : i + step]}))
               for i in range(0, len(text), step)]  # fmt: skip
    if reply.finish:
        events.append(_chunk(answer, delta({"content": ""}, choice.get("finish_reason"))))
    if reply.usage and answer.get("usage") is not None:
        events.append(_chunk(answer, [], usage=answer["usage"]))
    events.append(b"data: [DONE]\n\n")
    return events


async def _stream(reply: Reply, events: list[bytes], api: FakeAPI) -> Response:
    if reply.delay:
        await asyncio.sleep(reply.delay)

    async def chunks() -> AsyncIterator[bytes]:
        ends = time.monotonic() + reply.trickle
        while time.monotonic() < ends:
            yield b": keep-alive\n\n"  # what DeepSeek streams while the request is queued
            await asyncio.sleep(0.05)
        for index, event in enumerate(events):
            if reply.drop and index >= len(events) // 2:
                raise _Dropped("stream dropped by the script")
            if index and reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            if index == 1:
                with api._lock:
                    api.first_chunks.append((time.monotonic(), time.time()))
            yield event

    headers = {"cache-control": "no-cache", **reply.headers}
    return StreamingResponse(chunks(), reply.status, headers, media_type="text/event-stream")


async def _respond(reply: Reply) -> Response:
    if reply.delay:
        await asyncio.sleep(reply.delay)
    payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
    data = payload.encode()
    if not (reply.trickle or reply.drop):
        return Response(data, reply.status, reply.headers, media_type="application/json")

    async def chunks() -> AsyncIterator[bytes]:
        ends = time.monotonic() + reply.trickle
        while time.monotonic() < ends:
            yield b"\n"
            await asyncio.sleep(0.05)
        if reply.drop:
            yield data[: len(data) // 2]
            raise _Dropped("connection dropped by the script")
        yield data

    return StreamingResponse(chunks(), reply.status, reply.headers, media_type="application/json")


@contextmanager
def serve_fake_ai() -> Iterator[FakeAI]:
    """Run a ``FakeAI`` on a free loopback port for the duration of the block."""
    fake = FakeAI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    fake.port = int(sock.getsockname()[1])
    # log_config=None: uvicorn's loggers propagate to pytest's capture instead of being
    # reconfigured process-wide; the scripted drops log an "Exception in ASGI application".
    config = uvicorn.Config(fake.app, log_config=None, access_log=False,
                            timeout_graceful_shutdown=1, lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake AI server did not start")
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


# --- settings for the real providers against the fakes ----------------------------------

GEMINI_KEY = "gk-test-NEVER-LOG-5f3a9c0d"
DEEPSEEK_KEY = "sk-test-NEVER-LOG-8d2e71b4"
# Variables the SDKs read by themselves (PROVIDERS.md §3.1): a developer's shell must not
# steer the tests to Vertex AI, another API version or a real endpoint.
SDK_ENV = (
    "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION", "GOOGLE_GENAI_HTTP_CLIENT",
    "OPENAI_BASE_URL", "OPENAI_API_KEY", "DEEPSEEK_API_KEY", "PROVIDERS",
)  # fmt: skip


def isolate_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset what the SDKs would read from the environment; keep loopback off any proxy."""
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def provider_settings(fake: FakeAI, **overrides: Any) -> PipelineSettings:
    """Settings with both keys set and both base URLs at ``fake``; no ``.env`` file read."""
    values: dict[str, Any] = {
        "gemini_api_key": GEMINI_KEY, "gemini_base_url": fake.gemini_url,
        "deepseek_api_key": DEEPSEEK_KEY, "deepseek_base_url": fake.deepseek_url,
        "provider_timeout_seconds": 5.0, "providers": "auto", "_env_file": None,
    }  # fmt: skip
    values.update(overrides)
    return PipelineSettings(**values)
