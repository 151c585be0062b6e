"""Signing in with a pasted token: ``POST /api/auth/session`` (issue 16 item 2).

What this module promises:

- The body is JSON, ``{"token": "<a session JWT>"}`` as ``vision-pipeline token`` prints it,
  sent with ``Content-Type: application/json`` (anything else is 415): a type a browser
  cannot send cross-site without a CORS preflight.
- A request from another site is 403 before anything else is read: an ``Origin`` that is
  neither this server's (its ``Host``) nor one of CORS_ALLOW_ORIGINS (``null`` included), or
  ``Sec-Fetch-Site: cross-site``. A request without ``Origin`` (curl, the CLI) passes.
- In local mode (no JWT_SECRET) there is nothing to sign in to: 400
  ``{"error":"local mode: no sign-in needed"}``.
- A token ``rpc.auth.tokens.verify_token`` accepts is answered 204 with the very
  ``app_session_id`` cookie the OAuth login sets (``rpc.auth.callback.session_cookie``: the
  token itself, HttpOnly, a year); any other token is 401 ``{"error": "..."}``; a body that
  is not such an object is 400, one over ``MAX_BODY_BYTES`` 413. Nothing else changes: the
  user row is made by the first request the cookie carries, as for any session.
- The token never reaches the log.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rpc import security
from rpc.auth.callback import session_cookie
from rpc.auth.tokens import verify_token

if TYPE_CHECKING:
    from rpc.context import Services

log = logging.getLogger("rpc.auth")

PATH = "/api/auth/session"
# A session token is refused over 8 KiB (rpc.auth.sessions): its JSON body cannot be larger.
MAX_BODY_BYTES = 16 * 1024
MAX_TOKEN_CHARS = 8192  # rpc.auth.sessions ignores a longer one: its cookie would be no session
LOCAL_MODE = "local mode: no sign-in needed"
CROSS_SITE = "cross-site sign-in refused: send it from this server's own pages"
INVALID_TOKEN = "invalid or expired token: make a new one with `vision-pipeline token`"


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> bytes | None:
    """The body, or None once it exceeds MAX_BODY_BYTES (read no further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _token_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


async def sign_in(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    if security.cross_site(request.scope, settings) is not None:
        return _error(CROSS_SITE, 403)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return _error('send the token as application/json: {"token": "..."}', 415)
    if not settings.jwt_secret:
        return _error(LOCAL_MODE, 400)
    try:
        body = await _body(request)
    except ClientDisconnect:
        return Response(status_code=400)
    if body is None:
        return _error(f"the body is larger than {MAX_BODY_BYTES} bytes", 413)
    token = _token_of(body)
    if token is None:
        return _error('expected a JSON object {"token": "<session token>"}', 400)
    claims = None if len(token) > MAX_TOKEN_CHARS else verify_token(settings.jwt_secret, token)
    if claims is None:
        return _error(INVALID_TOKEN, 401)
    response = Response(status_code=204)
    response.headers.append("set-cookie", session_cookie(token, security.is_https(request.scope)))
    log.info("sign-in of %s with a pasted token", claims["openId"])
    return response


def routes() -> list[BaseRoute]:
    return [Route(PATH, sign_in, methods=["POST"])]
