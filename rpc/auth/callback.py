"""The template's login: ``GET /api/oauth/callback`` (TEMPLATE_FLOWS §1.3–§1.7).

What this module promises:

- ``oauth_callback`` answers as the template's Express handler does, for both template
  generations: 400 ``{"error":"code and state are required"}``; with the
  ``__Host-oauth_state`` cookie (Gen-2) the nonce inside ``state`` must equal it, else 403
  ``{"error":"invalid oauth state"}``, and the cookie is cleared either way; then
  ExchangeToken and GetUserInfo (``rpc.auth.oauth``); 400 ``{"error":"openId missing from
  user info"}``; the login upsert (owner → admin); the one-year session cookie; ``302
  Location: /``. Any other failure is 500 ``{"error":"OAuth callback failed"}``. An openId
  that cannot name a user here (over 64 characters, a NUL, a lone surrogate) is 400, saying
  so, with no session cookie.
- Nothing secret reaches the log: not the code, the state, an access token or a session JWT.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rpc import security
from rpc.auth.cookies import read_cookie
from rpc.auth.oauth import OAuthError, OAuthServer, decode_state
from rpc.auth.tokens import COOKIE_NAME, ONE_YEAR_SECONDS, mint_token, open_id_problem

if TYPE_CHECKING:
    from rpc.context import Services

log = logging.getLogger("rpc.oauth")

OAUTH_STATE_COOKIE = "__Host-oauth_state"  # Gen-2 only (TEMPLATE_FLOWS §1.1)


def _one(request: Request, name: str) -> str | None:
    """A query parameter given exactly once (Express hands a repeated one over as an array,
    which the template rejects as missing)."""
    values = request.query_params.getlist(name)
    return values[0] if len(values) == 1 else None


def _clear_state_cookie() -> str:
    # Express' res.clearCookie(OAUTH_STATE_COOKIE, {path:"/", secure:true, sameSite:"none"}).
    return (
        f"{OAUTH_STATE_COOKIE}=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure; "
        "SameSite=None"
    )


def same_site_flags(secure: bool) -> str:
    """The session cookie's ``SameSite``: ``None; Secure`` over https, as the template sets it
    (§1.6); ``Lax`` over plain http, where browsers drop a ``SameSite=None`` cookie without
    ``Secure`` (Chromium does): the template's own apps switched to this (TEMPLATE_FLOWS §1.6),
    and a laptop's http://localhost sign-in would otherwise never stick."""
    return "; Secure; SameSite=None" if secure else "; SameSite=Lax"


def session_cookie(token: str, secure: bool) -> str:
    """``res.cookie(COOKIE_NAME, token, {httpOnly, path:"/", sameSite, secure,
    maxAge: ONE_YEAR_MS})`` as Express writes it (§1.6): no Domain (host-only)."""
    expires = formatdate(time.time() + ONE_YEAR_SECONDS, usegmt=True)
    flags = same_site_flags(secure)
    return (
        f"{COOKIE_NAME}={token}; Max-Age={ONE_YEAR_SECONDS}; Path=/; Expires={expires}; "
        f"HttpOnly{flags}"
    )


async def oauth_callback(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    code, state = _one(request, "code"), _one(request, "state")
    if not code or not state:
        return JSONResponse({"error": "code and state are required"}, status_code=400)

    # Gen-2 CSRF guard (§1.3): the nonce in `state` must equal the cookie startLogin set.
    # Gen-1 clients set no cookie and put bare base64(redirectUri) in `state`.
    decoded = decode_state(state)
    expected = read_cookie(request.scope, OAUTH_STATE_COOKIE)
    if expected is not None or decoded is None:
        nonce = decoded[1] if decoded else None
        if expected is None or not nonce or nonce != expected:
            denied = JSONResponse({"error": "invalid oauth state"}, status_code=403)
            if expected is not None:
                denied.headers.append("set-cookie", _clear_state_cookie())
            return denied
    assert decoded is not None
    redirect_uri = decoded[0]

    try:
        async with OAuthServer.from_settings(settings) as oauth:
            access_token = await oauth.exchange_token(code, redirect_uri)
            info = await oauth.get_user_info(access_token)
        if not info.open_id:
            return JSONResponse({"error": "openId missing from user info"}, status_code=400)
        problem = open_id_problem(info.open_id)
        if problem is not None:  # its session would be refused: a login loop, or a 500
            log.warning("login refused: the account's openId cannot be used (%s)", problem)
            message = f"this account's id cannot be used here: {problem}"
            return JSONResponse({"error": message}, status_code=400)
        owner = info.open_id == settings.owner_open_id
        await services.store.upsert_user_login(
            info.open_id, info.name, info.email, info.login_method, "admin" if owner else None
        )
        services.auth.forget_user(info.open_id)  # a cached session's role may have changed
        cookie = None
        if settings.jwt_secret:
            # `name` is never empty: the template's verifier rejects an empty one (§1.5).
            token = mint_token(
                settings.jwt_secret, info.open_id, name=info.name, app_id=settings.app_id
            )
            cookie = session_cookie(token, security.is_https(request.scope))
        else:
            log.warning("login of %s accepted in local mode: no session cookie", info.open_id)
    except OAuthError as exc:
        log.error("OAuth callback failed: %s", exc)
        return JSONResponse({"error": "OAuth callback failed"}, status_code=500)
    except Exception as exc:  # the store; never the OAuth calls (they raise OAuthError)
        log.error("OAuth callback failed: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"error": "OAuth callback failed"}, status_code=500)

    response = RedirectResponse("/", status_code=302)  # always "/" (§1.3 step 8)
    if expected is not None:
        response.headers.append("set-cookie", _clear_state_cookie())
    if cookie is not None:
        response.headers.append("set-cookie", cookie)
    log.info("login of %s (%s)", info.open_id, "owner" if owner else "user")
    return response


def routes() -> list[BaseRoute]:
    return [Route("/api/oauth/callback", oauth_callback, methods=["GET"])]
