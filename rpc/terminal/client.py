"""A running server's procedures as ``analyze`` calls them: uploadImage, createJob,
getJobStatus, getJobUsage, over plain JSON (uploadImage answers superjson's ``{"json": …}``
shape; both are read). A refusal or an unreachable server is a ``ClientError``: words for a
person and the exit code the command ends with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

EXIT_COMPLETE = 0
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_SERVER = 3
EXIT_INTERRUPTED = 130

# Statuses that mean "what you sent is wrong", as opposed to "you may not" (401, 403, 429)
# or "the server is not well" (5xx): the first exit 2, the others exit 3.
_BAD_INPUT = frozenset({400, 404, 405, 409, 413, 415, 422})
# Larger than any image the server would take (its IMAGE_MAX_BYTES is about 10 MiB): refused
# here rather than read into memory to be refused there.
MAX_UPLOAD_BYTES = 256 * 1024 * 1024


class ClientError(Exception):
    """A refusal or failure in words, and the exit code it means."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _issues(message: str) -> str:
    """A validation message (a JSON list of ``{path, message}`` issues) as one line."""
    try:
        issues = json.loads(message)
    except ValueError:
        return message
    if not isinstance(issues, list) or not all(isinstance(i, dict) for i in issues):
        return message
    parts = []
    for issue in issues:
        where = ".".join(str(p) for p in issue.get("path") or [])
        text = str(issue.get("message", "invalid"))
        parts.append(f"{where}: {text}" if where else text)
    return "; ".join(parts) or message


def error_message(response: httpx.Response) -> str:
    """The server's words for a refusal, whichever envelope carries them: tRPC's (plain or
    superjson's ``{"json": …}``), the plain stream's ``{"error": {message, code}}``, or a
    bare ``{"error": "…"}``; the status line when the body says nothing."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("json"), dict):
        error = error["json"]
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return _issues(error["message"])
    if isinstance(error, str):
        return error
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def refusal(response: httpx.Response, what: str) -> ClientError:
    """A non-2xx answer as a ``ClientError``: bad input (2), or credentials, quota or the
    server's own trouble (3)."""
    status, message = response.status_code, error_message(response)
    if status in _BAD_INPUT:
        return ClientError(f"{what} refused: {message}", EXIT_BAD_INPUT)
    if status == 401:
        hint = "pass a token with --token or VISION_PIPELINE_TOKEN (`vision-pipeline token`)"
        return ClientError(f"the server refused the credentials: {message}; {hint}", EXIT_SERVER)
    if status == 403:
        return ClientError(f"{what} refused: {message}", EXIT_SERVER)
    if status == 429:
        return ClientError(f"{what} refused (over a quota): {message}", EXIT_SERVER)
    return ClientError(f"{what} failed on the server (HTTP {status}): {message}", EXIT_SERVER)


def unreachable(base: str, exc: httpx.HTTPError) -> ClientError:
    reason = str(exc) or type(exc).__name__
    return ClientError(f"could not reach the server at {base}: {reason}", EXIT_SERVER)


def _data(response: httpx.Response) -> Any:
    try:
        data = response.json()["result"]["data"]
    except (ValueError, KeyError, TypeError):
        raise ClientError(
            f"the server's answer is not a tRPC result: {response.text[:200]!r}", EXIT_SERVER
        ) from None
    if isinstance(data, dict) and set(data) <= {"json", "meta"} and "json" in data:
        return data["json"]  # superjson's shape (uploadImage answers so)
    return data


class Api:
    """One server, one caller (a bearer token, or none in the server's local mode)."""

    def __init__(self, server: str, token: str | None, timeout: float = 30.0) -> None:
        self.base = server.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, what: str, method: str, url: str, **kw: Any) -> Any:
        try:
            response = self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise unreachable(self.base, exc) from None
        if not response.is_success:
            raise refusal(response, what)
        return _data(response)

    def query(self, procedure: str, value: dict[str, Any], what: str) -> Any:
        text = quote(json.dumps(value, separators=(",", ":")))
        return self.request(what, "GET", f"/api/trpc/{procedure}?input={text}")

    def upload(self, path: Path) -> str:
        """Send a local file to uploadImage; its ``imageUrl`` (``/api/images/<sha256>``)."""
        try:
            size = path.stat().st_size
            if size > MAX_UPLOAD_BYTES:
                raise ClientError(f"{path} is too large to be an image the server takes "
                                  f"({size:,} bytes)", EXIT_BAD_INPUT)  # fmt: skip
            data = path.read_bytes()
        except OSError as exc:
            raise ClientError(
                f"cannot read {path}: {exc.strerror or exc}", EXIT_BAD_INPUT
            ) from None
        headers = {"content-type": "application/octet-stream"}
        answer = self.request("the upload", "POST", "/api/trpc/visionPipeline.uploadImage",
                              content=data, headers=headers)  # fmt: skip
        return str(answer["imageUrl"])

    def create_job(self, job: dict[str, Any]) -> int:
        answer = self.request("the job", "POST", "/api/trpc/visionPipeline.createJob", json=job)
        return int(answer["jobId"])

    def status(self, job_id: int) -> dict[str, Any]:
        answer: dict[str, Any] = self.query(
            "visionPipeline.getJobStatus", {"jobId": job_id}, f"looking up job {job_id}"
        )
        return answer

    def usage(self, job_id: int) -> dict[str, Any] | None:
        """getJobUsage's answer, or None when the server cannot say (an older server)."""
        try:
            answer: dict[str, Any] = self.query(
                "visionPipeline.getJobUsage", {"jobId": job_id}, "the usage"
            )
        except ClientError:
            return None
        return answer
