"""What every HTTP request passes before any route sees it (issue 13 items 1 and 2): one pass
over its headers in ``rpc.app.App``, on the tRPC hot path and the cold routes alike.

What this module promises:

- ``Cookie`` headers longer than ``MAX_COOKIE_BYTES`` (8 KiB) in all are refused with 431
  ``Request Header Fields Too Large`` (a short plain-text body), before anything parses a
  cookie: reading cookies then costs a bounded time on any Python patch level.
- In local mode (no JWT_SECRET, where every request acts as the local admin) only requests
  whose ``Host`` is a loopback name are answered: ``localhost``, ``127.0.0.1`` (any
  ``127.x.y.z``) or ``[::1]``, with or without a port, in any letter case; a request with no
  Host at all passes (browsers always send one). Any other Host is refused with 403 so a
  web page cannot drive a developer's server through DNS rebinding: on ``/api/trpc/…`` a
  FORBIDDEN tRPC envelope, elsewhere plain text, both saying how to expose the server.
- A refusal carries the headers every answer carries (``rpc.security``: security headers,
  CORS when configured).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from rpc import security
from rpc.auth.cookies import MAX_COOKIE_BYTES
from rpc.config import Settings
from rpc.wire import superjson
from rpc.wire.dispatch import BASE_PATH
from rpc.wire.encoding import dumps
from rpc.wire.errors import TRPCError
from rpc.wire.request import query_params

COOKIE_TOO_LARGE = "cookie"
FOREIGN_HOST = "host"
COOKIE_MESSAGE = (
    f"Request Header Fields Too Large: the Cookie header holds more than {MAX_COOKIE_BYTES} "
    "bytes. Clear this site's cookies and try again."
)
LOCAL_MODE_MESSAGE = (
    "This server is in local mode (JWT_SECRET is not set) and answers only requests to "
    "localhost, 127.0.0.1 or [::1]. To serve it under another host name, set JWT_SECRET "
    "(sessions then come from signed tokens)."
)


def check(headers: Iterable[tuple[bytes, bytes]], loopback_only: bool) -> str | None:
    """Why a request with these (ASGI, lowercase-named) headers is refused, or None."""
    cookie_bytes = 0
    for name, value in headers:
        if name == b"cookie":
            cookie_bytes += len(value)
        elif loopback_only and name == b"host" and not is_loopback_host(value):
            return FOREIGN_HOST
    return COOKIE_TOO_LARGE if cookie_bytes > MAX_COOKIE_BYTES else None


@functools.lru_cache(maxsize=64)  # a browser sends the same few Host values again and again
def is_loopback_host(value: bytes) -> bool:
    """Whether a Host header names this machine: localhost, 127.x.y.z or [::1], any port."""
    host = value.decode("latin-1").strip().lower()
    if host.startswith("["):  # an IPv6 literal
        name, bracket, port = host[1:].partition("]")
        if not bracket:
            return False
    else:
        name, colon, digits = host.partition(":")
        port = colon + digits
    if port and not (port[0] == ":" and port[1:].isascii() and port[1:].isdigit()):
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def refusal_app(reason: str, settings: Settings | None) -> ASGIApp:
    """The answer to a refused request, inside the middleware every other answer passes."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await _response(reason, scope, settings)(scope, receive, send)

    app: ASGIApp = answer
    if settings is None:  # an App built without settings (tests): the headers alone
        return security.SecurityHeaders(app)
    for cls, args, kwargs in reversed(security.middleware(settings)):
        app = cls(app, *args, **kwargs)
    return app


def _response(reason: str, scope: Scope, settings: Settings | None) -> Response:
    if reason == COOKIE_TOO_LARGE:
        return PlainTextResponse(COOKIE_MESSAGE, status_code=431)
    if not scope["path"].startswith(BASE_PATH):
        return PlainTextResponse(LOCAL_MODE_MESSAGE, status_code=403)
    shape = TRPCError("FORBIDDEN", LOCAL_MODE_MESSAGE).shape(None)
    transformer = settings.trpc_transformer if settings is not None else "auto"
    text = query_params(scope).get("input") or ""  # as rpc.wire.dispatch guesses for its own errors
    sj = transformer == "superjson" or (transformer == "auto" and '"json"' in text[:4096])
    body = {"error": superjson.serialize(shape) if sj else shape}
    return Response(dumps(body), status_code=403, media_type="application/json")
