"""The template's login: ``GET /api/oauth/callback`` and the OAuth-server client it uses.

What this module promises (TEMPLATE_FLOWS §1.3–§1.7):

- ``oauth_callback`` answers as the template's Express handler does, for both template
  generations: 400 ``{"error":"code and state are required"}``; with the
  ``__Host-oauth_state`` cookie (Gen-2) the nonce inside ``state`` must equal it, else 403
  ``{"error":"invalid oauth state"}``, and the cookie is cleared either way; then
  ExchangeToken and GetUserInfo; 400 ``{"error":"openId missing from user info"}``; the login
  upsert (owner → admin); the one-year session cookie; ``302 Location: /``. Any other failure
  is 500 ``{"error":"OAuth callback failed"}``. An openId that cannot name a user here (over
  64 characters, a NUL, a lone surrogate) is 400, saying so, with no session cookie.
- ``OAuthServer`` makes the three WebDevAuthPublicService calls as JSON POSTs with no
  Authorization header, as the template's axios client does (§1.4), with a timeout.
- Nothing secret reaches the log: not the code, the state, an access token, a session JWT or
  a response body; failures are described by call name, status code and exception type.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass
from email.utils import formatdate
from types import TracebackType
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from rpc.auth import COOKIE_NAME, ONE_YEAR_SECONDS, mint_token, open_id_problem, storable
from rpc.config import Settings
from rpc.context import Context, Services
from rpc.cookies import read_cookie

log = logging.getLogger("rpc.oauth")

OAUTH_STATE_COOKIE = "__Host-oauth_state"  # Gen-2 only (TEMPLATE_FLOWS §1.1)
_SERVICE = "/webdev.v1.WebDevAuthPublicService/"
EXCHANGE_TOKEN_PATH = _SERVICE + "ExchangeToken"
GET_USER_INFO_PATH = _SERVICE + "GetUserInfo"
GET_USER_INFO_WITH_JWT_PATH = _SERVICE + "GetUserInfoWithJwt"
# axios' default Accept; the template sends no other header of its own (§1.4).
_HEADERS = {"accept": "application/json, text/plain, */*"}
# Column sizes of the users table (TEMPLATE_FLOWS §3.2).
_EMAIL_MAX, _LOGIN_METHOD_MAX = 320, 64
_PLATFORMS = {
    "REGISTERED_PLATFORM_EMAIL": "email",
    "REGISTERED_PLATFORM_GOOGLE": "google",
    "REGISTERED_PLATFORM_APPLE": "apple",
    "REGISTERED_PLATFORM_MICROSOFT": "microsoft",
    "REGISTERED_PLATFORM_AZURE": "microsoft",
    "REGISTERED_PLATFORM_GITHUB": "github",
}


class OAuthError(Exception):
    """A failed call to the OAuth server. The message is safe to log (no secrets)."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    open_id: str
    name: str | None
    email: str | None
    login_method: str | None


def derive_login_method(platforms: object, platform: object) -> str | None:
    """The template's ``deriveLoginMethod`` (§1.4): a non-empty ``platform`` wins; else the
    ``platforms`` array is mapped (email, google, apple, microsoft, github, in that order of
    preference); else its first entry, lower-cased."""
    if isinstance(platform, str) and platform:
        return platform
    if not isinstance(platforms, list):
        return None
    seen = list(dict.fromkeys(p for p in platforms if isinstance(p, str)))
    for key in ("EMAIL", "GOOGLE", "APPLE", "MICROSOFT", "AZURE", "GITHUB"):
        if "REGISTERED_PLATFORM_" + key in seen:
            return _PLATFORMS["REGISTERED_PLATFORM_" + key]
    return seen[0].lower() if seen and seen[0] else None


def user_info(data: dict[str, Any]) -> UserInfo:
    """A GetUserInfo / GetUserInfoWithJwt answer as the template reads it. ``loginMethod`` is
    derived from ``platform``/``platforms``; a response's own ``loginMethod`` is used only
    when neither gives one (the template would store null there)."""
    open_id, name, email = data.get("openId"), data.get("name"), data.get("email")
    method = derive_login_method(data.get("platforms"), data.get("platform"))
    if method is None and isinstance(data.get("loginMethod"), str) and data["loginMethod"]:
        method = data["loginMethod"]
    # Like an over-long email, a value no database can store (NUL, a lone surrogate) is left
    # out; a name's would also be signed into the session token, which is then refused.
    name = name if isinstance(name, str) and storable(name) else None
    email = email if isinstance(email, str) and storable(email) else None
    method = method if method and storable(method) else None
    return UserInfo(
        open_id=open_id if isinstance(open_id, str) else "",
        name=name if isinstance(name, str) and name else None,  # `name || null`
        email=email if isinstance(email, str) and len(email) <= _EMAIL_MAX else None,
        login_method=method[:_LOGIN_METHOD_MAX] if method else None,
    )


def decode_state(state: str) -> tuple[str, str | None] | None:
    """The template's ``decodeOAuthState`` (§1.1, §1.3): ``(redirectUri, nonce)``. Gen-2 state
    is base64 JSON ``{redirectUri, nonce}``; Gen-1 state is bare base64(redirectUri) (no
    nonce). None when ``state`` is not base64 at all (the template's ``atob`` throws)."""
    compact = "".join(state.split())  # atob ignores ASCII whitespace
    try:
        decoded = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    text = decoded.decode("latin-1")  # atob yields one char per byte
    try:
        parsed = json.loads(text)
    except ValueError:
        return text, None
    if isinstance(parsed, dict) and isinstance(parsed.get("redirectUri"), str):
        nonce = parsed.get("nonce")
        return parsed["redirectUri"], nonce if isinstance(nonce, str) else None
    return text, None


class OAuthServer:
    """The OAuth server's three calls (§1.4), over one HTTP client; use ``async with``."""

    def __init__(self, base_url: str, app_id: str, timeout: float) -> None:
        # axios joins baseURL and path with exactly one slash.
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._client = httpx.AsyncClient(timeout=timeout, headers=_HEADERS)

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthServer:
        if not settings.oauth_server_url:
            raise OAuthError("OAUTH_SERVER_URL is not set")
        return cls(settings.oauth_server_url, settings.app_id, settings.platform_timeout_seconds)

    async def __aenter__(self) -> OAuthServer:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def exchange_token(self, code: str, redirect_uri: str) -> str:
        """ExchangeToken → the access token."""
        body = {
            "clientId": self.app_id,
            "grantType": "authorization_code",
            "code": code,
            "redirectUri": redirect_uri,
        }
        data = await self._post(EXCHANGE_TOKEN_PATH, body)
        token = data.get("accessToken")
        if not isinstance(token, str) or not token:
            raise OAuthError("ExchangeToken answered without an accessToken")
        return token

    async def get_user_info(self, access_token: str) -> UserInfo:
        return user_info(await self._post(GET_USER_INFO_PATH, {"accessToken": access_token}))

    async def get_user_info_with_jwt(self, jwt_token: str) -> UserInfo:
        body = {"jwtToken": jwt_token, "projectId": self.app_id}
        return user_info(await self._post(GET_USER_INFO_WITH_JWT_PATH, body))

    async def _post(self, path: str, body: dict[str, str]) -> dict[str, Any]:
        call = path.rsplit("/", 1)[-1]
        try:
            response = await self._client.post(self.base_url + path, json=body)
        except httpx.HTTPError as exc:  # its text may carry the URL: name the type only
            raise OAuthError(f"{call}: {type(exc).__name__}") from None
        if not response.is_success:
            raise OAuthError(f"{call} answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise OAuthError(f"{call} answered something that is not JSON") from None
        if not isinstance(data, dict):
            raise OAuthError(f"{call} answered JSON that is not an object")
        return data


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


def session_cookie(token: str, secure: bool) -> str:
    """``res.cookie(COOKIE_NAME, token, {httpOnly, path:"/", sameSite:"none", secure,
    maxAge: ONE_YEAR_MS})`` as Express writes it (§1.6): no Domain (host-only)."""
    expires = formatdate(time.time() + ONE_YEAR_SECONDS, usegmt=True)
    flags = "; Secure; SameSite=None" if secure else "; SameSite=None"
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
            cookie = session_cookie(token, Context(services, request).secure)
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
