"""The template's OAuth-server client (TEMPLATE_FLOWS §1.3–§1.7), used by the login callback
(``rpc.auth.callback``) and by sessions first seen (``rpc.auth.sessions``).

What this module promises:

- ``OAuthServer`` makes the three WebDevAuthPublicService calls as JSON POSTs with no
  Authorization header, as the template's axios client does (§1.4), with a timeout.
- Nothing secret reaches the log: not the code, the state, an access token, a session JWT or
  a response body; failures are described by call name, status code and exception type.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from rpc.auth.tokens import storable
from rpc.config import Settings

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
