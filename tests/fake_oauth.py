"""A fake of the platform services the template's server calls (no internet):

- the OAuth server's ``/webdev.v1.WebDevAuthPublicService/{ExchangeToken, GetUserInfo,
  GetUserInfoWithJwt}`` (TEMPLATE_FLOWS §1.4), scriptable per authorization code and per
  session openId;
- the notification service under ``/forge/webdevtoken.v1.WebDevService/SendNotification``
  (§3.1), so ``BUILT_IN_FORGE_API_URL`` is ``<url>/forge`` and its path is kept.

It is a Starlette app served by uvicorn on 127.0.0.1 in a background thread. Every request is
recorded (path, headers, raw body, parsed JSON). ``fail[call]`` scripts a failure of one call:
an HTTP status, or ``"not-json"`` for a 200 whose body is not JSON.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support import free_port

SERVICE = "/webdev.v1.WebDevAuthPublicService/"
NOTIFY_PATH = "/forge/webdevtoken.v1.WebDevService/SendNotification"


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII written as ``\\u`` escapes, as Go and protobuf servers may send it:
    a profile can then hold a lone surrogate (``"\\ud800"``), which UTF-8 cannot."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakePlatform:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    # authorization code → the GetUserInfo answer for the access token it is exchanged for
    by_code: dict[str, dict[str, Any]] = field(default_factory=dict)
    # openId of a session JWT → the GetUserInfoWithJwt answer
    by_open_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    # call name ("ExchangeToken", "GetUserInfo", "GetUserInfoWithJwt", "SendNotification")
    # → an HTTP status to answer with, or "not-json"
    fail: dict[str, int | str] = field(default_factory=dict)
    access_tokens: dict[str, str] = field(default_factory=dict)  # access token → code
    lock: threading.Lock = field(default_factory=threading.Lock)

    def user(self, code: str, **info: Any) -> str:
        """Script a login: ``code`` becomes this GetUserInfo answer. Returns the code."""
        self.by_code[code] = info
        return code

    def calls(self, name: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path.rsplit("/", 1)[-1] == name]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
        self.fail.clear()

    # -- the app -------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            body = await request.body()
            with self.lock:
                self.requests.append(Recorded(request.url.path, dict(request.headers), body))
            call = request.url.path.rsplit("/", 1)[-1]
            failure = self.fail.get(call)
            if failure == "not-json":
                return PlainTextResponse("<html>upstream proxy error</html>")
            if isinstance(failure, int):
                return JSONResponse({"code": "internal", "message": "scripted"}, failure)
            try:
                payload = json.loads(body)
            except ValueError:
                return JSONResponse({"code": "invalid_argument"}, 400)
            return self._answer(call, payload)

        return Starlette(
            routes=[
                Route(SERVICE + "{call}", handle, methods=["POST"]),
                Route(NOTIFY_PATH, handle, methods=["POST"]),
            ]
        )

    def _answer(self, call: str, payload: dict[str, Any]) -> Response:
        if call == "ExchangeToken":
            code = payload.get("code")
            if code not in self.by_code:
                return JSONResponse({"code": "invalid_argument", "message": "bad code"}, 400)
            token = f"access-{uuid.uuid4().hex}"
            self.access_tokens[token] = code
            return JSONResponse(
                {"accessToken": token, "tokenType": "Bearer", "expiresIn": 3600, "scope": "",
                 "idToken": ""}
            )  # fmt: skip
        if call == "GetUserInfo":
            code = self.access_tokens.get(payload.get("accessToken", ""))
            if code is None:
                return JSONResponse({"code": "unauthenticated"}, 401)
            return AsciiJSONResponse({"projectId": "", **self.by_code[code]})
        if call == "GetUserInfoWithJwt":
            open_id = _unverified_open_id(str(payload.get("jwtToken", "")))
            if open_id not in self.by_open_id:
                return JSONResponse({"code": "not_found"}, 404)
            return AsciiJSONResponse({"openId": open_id, **self.by_open_id[open_id]})
        if call == "SendNotification":
            return JSONResponse({})
        return JSONResponse({"code": "unimplemented"}, 404)


def _unverified_open_id(token: str) -> str | None:
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None
    open_id = claims.get("openId") if isinstance(claims, dict) else None
    return open_id if isinstance(open_id, str) else None


@contextmanager
def fake_platform() -> Iterator[FakePlatform]:
    """A running FakePlatform on 127.0.0.1; stopped on exit."""
    fake = FakePlatform()
    port = free_port()
    config = uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake platform did not start")
        time.sleep(0.01)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(10)
