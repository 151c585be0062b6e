"""What a failed provider call means for the job: retry later, or fail now with a reason.

Both real providers funnel every failure through here, so the rule is written once:

* **Retryable** (``RetryableError``): HTTP 408, 409, 429 and 5xx, timeouts, refused or dropped
  connections, and answers that are empty, not JSON, or JSON of the wrong shape (a model may
  do better on the next try). ``retry_after`` carries the provider's own hint
  (``retry-after-ms``, ``Retry-After`` in seconds or as an HTTP date, or Gemini's
  ``google.rpc.RetryInfo``), which the worker's backoff honours.
* **Fatal** (``FatalError``): 400, 401, 402, 403, 404, 422 and other 4xx, a per-day quota that
  is used up, a safety block. The message says what a person can do about it ("DeepSeek
  rejected the API key", "Gemini model 'x' was not found").

Messages never contain an API key: every text that came from the network passes through
``_clean``, which removes the secrets it is given, and callers re-raise ``from None`` so the
SDK exception (whose text embeds the raw response body) is not chained into tracebacks.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import httpx2
import openai
from google.genai import errors as genai_errors
from pydantic import BaseModel, ValidationError

from pipeline.errors import FatalError, RetryableError, StageError

M = TypeVar("M", bound=BaseModel)

# Transport faults of either backend. Both SDKs use httpx2 (PROVIDERS.md §0.1), but
# GOOGLE_GENAI_HTTP_CLIENT=httpx switches google-genai to legacy httpx, so catch both.
_TRANSPORT: tuple[type[BaseException], ...] = (httpx2.TransportError, httpx.TransportError)
_TIMEOUTS: tuple[type[BaseException], ...] = (
    httpx2.TimeoutException,
    httpx.TimeoutException,
    TimeoutError,  # the aiohttp backend's timeout (PROVIDERS.md §1.7); asyncio's is the same
)
try:  # aiohttp is not a dependency; if something installs it, its errors are transport faults
    _TRANSPORT += (importlib.import_module("aiohttp").ClientError,)
except ImportError:  # the usual case
    pass

RETRYABLE_STATUSES = frozenset({408, 409, 429})
MAX_DETAIL = 240


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The provider's wait hint in seconds: ``retry-after-ms`` first (OpenAI-style), then
    ``Retry-After`` as delta-seconds or an HTTP date. ``None`` when absent or unusable."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ms = lower.get("retry-after-ms", "").strip()
    if raw_ms:
        try:
            return _usable(float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lower.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        return _usable(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _usable(max(0.0, (when - datetime.now(UTC)).total_seconds()))


def _usable(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _rpc_retry_delay(details: object) -> float | None:
    """Gemini's ``google.rpc.RetryInfo.retryDelay`` ("37s", "1.5s") from an error body."""
    for item in _rpc_details(details):
        delay = item.get("retryDelay")
        if isinstance(delay, str) and (match := re.fullmatch(r"\s*([\d.]+)s\s*", delay)):
            try:
                return _usable(float(match.group(1)))
            except ValueError:
                return None
    return None


def _rpc_details(details: object) -> list[dict[str, Any]]:
    """The ``error.details`` array of a Google RPC error body (absent is an empty list)."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _clean(text: object, secrets: Iterable[str | None]) -> str:
    """One line of provider text, safe to show: secrets removed, whitespace folded, capped."""
    out = " ".join(str(text or "").split())
    for secret in secrets:
        if secret:
            out = out.replace(secret, "[redacted]")
    return out if len(out) <= MAX_DETAIL else out[: MAX_DETAIL - 3] + "..."


def from_status(
    provider: str,
    status: int,
    detail: object,
    *,
    model: str,
    secrets: Iterable[str | None] = (),
    headers: Mapping[str, str] | None = None,
    rpc_status: str | None = None,
    body: object = None,
) -> StageError:
    """Classify an HTTP error answer. ``detail`` is the provider's own message; ``rpc_status``
    and ``body`` are Gemini's ``error.status`` and parsed error JSON (for RetryInfo,
    QuotaFailure and the API_KEY_INVALID reason)."""
    said = _clean(detail, secrets)
    code = f"HTTP {status}" + (f" {rpc_status}" if rpc_status else "")
    tail = f" ({code}: {said})" if said else f" ({code})"
    # Searched, never shown, so not capped: reasons sit deep in long ``details`` arrays.
    body_text = json.dumps(body, default=str) if body is not None else ""
    if status in RETRYABLE_STATUSES or 500 <= status < 600:
        if status == 429 and "PerDay" in body_text:
            # A daily quota stays used up until it resets; retrying within minutes is futile
            # (gke-labs/gemini-for-kubernetes-development#1215, PROVIDERS.md §1.6).
            return FatalError(f"{provider} daily quota is used up; try again tomorrow{tail}")
        hint = retry_after_seconds(headers)
        if hint is None:
            hint = _rpc_retry_delay(body)
        what = {429: "is rate limiting requests", 408: "timed out the request"}.get(
            status, "is unavailable" if status >= 500 else "reported a conflict"
        )
        return RetryableError(f"{provider} {what}{tail}", retry_after=hint)
    if status == 401 or "API_KEY_INVALID" in body_text or "api key not valid" in said.lower():
        # Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
        return FatalError(f"{provider} rejected the API key{tail}")
    if status == 402:
        return FatalError(f"{provider} account has insufficient balance{tail}")
    if status == 403:
        return FatalError(f"{provider} refused access with this API key{tail}")
    if status == 404 or re.search(r"model not exist|model.*not found", said, re.IGNORECASE):
        return FatalError(f"{provider} model '{model}' was not found{tail}")
    if status == 422:
        return FatalError(f"{provider} rejected the request parameters{tail}")
    if 400 <= status < 500:
        if "image" in said.lower():
            return FatalError(f"{provider} could not use the image{tail}")
        return FatalError(f"{provider} rejected the request{tail}")
    return RetryableError(f"{provider} gave an unexpected answer{tail}")


def from_transport(provider: str, exc: BaseException) -> StageError | None:
    """A timeout, a connection fault (refused, reset, dropped mid-body) or a 200 whose body
    is not JSON (a proxy's page) as a retryable error; ``None`` for anything else, which the
    caller re-raises (the worker retries it as an internal error, loudly). Only the
    exception's type goes into the message, to be sure no secret does."""
    if isinstance(exc, _TIMEOUTS):
        return RetryableError(f"{provider} did not answer in time ({type(exc).__name__})")
    if isinstance(exc, (*_TRANSPORT, ConnectionError)):
        return RetryableError(f"could not reach {provider} ({type(exc).__name__})")
    if isinstance(exc, json.JSONDecodeError):
        return RetryableError(f"{provider} sent a response that is not JSON")
    return None


def from_gemini_exception(
    exc: BaseException, *, model: str, secrets: Iterable[str | None]
) -> StageError | None:
    """Map what ``google-genai`` raises. Its ``APIError`` carries ``.code`` (the HTTP
    status), ``.status``/``.message`` from the error body and ``.response`` (for headers);
    transport faults are *not* wrapped in ``APIError`` (PROVIDERS.md §1.7)."""
    if isinstance(exc, genai_errors.APIError):
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        return from_status(
            "Gemini",
            int(exc.code or 0),
            exc.message,
            model=model,
            secrets=secrets,
            headers=dict(headers) if headers is not None else None,
            rpc_status=exc.status,
            body=exc.details,
        )
    return from_transport("Gemini", exc)


def from_openai_exception(
    exc: BaseException, *, provider: str, model: str, secrets: Iterable[str | None]
) -> StageError | None:
    """Map what the ``openai`` SDK raises for an OpenAI-compatible API (DeepSeek). With
    ``max_retries=0`` each of these is the outcome of exactly one request."""
    if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: a subclass
        return RetryableError(f"{provider} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
        return RetryableError(f"could not reach {provider} ({cause})")
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        detail = body.get("message") if isinstance(body, dict) else body
        return from_status(
            provider,
            exc.status_code,
            detail if detail is not None else exc.response.reason_phrase,
            model=model,
            secrets=secrets,
            headers=dict(exc.response.headers),
        )
    return from_transport(provider, exc)


def validated_answer(provider: str, text: str | None, schema: type[M]) -> M:
    """The model's JSON answer, validated against ``schema``. Blank text, text that is not
    JSON and JSON of the wrong shape are all retryable: the next sample may be fine, and
    DeepSeek documents blank content in JSON mode as something to retry (PROVIDERS.md §2.3)."""
    body = (text or "").strip()
    if not body:
        raise RetryableError(f"{provider} returned an empty answer")
    # Models asked for bare JSON still sometimes fence it; a fence is not worth a retry.
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except ValueError:
        raise RetryableError(f"{provider} returned an answer that is not JSON") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        raise RetryableError(
            f"{provider} returned JSON of the wrong shape ({where}: {first['msg']})"
        ) from None
