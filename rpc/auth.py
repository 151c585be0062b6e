"""Sessions as the frontend's template makes them (TEMPLATE_FLOWS §1.5, SEED_API §3).

The token comes from the ``app_session_id`` cookie, else ``Authorization: Bearer``. It is an
HS256 JWT signed with JWT_SECRET carrying ``openId`` (required), ``name`` and ``appId``. A
verified token is cached with its user id and role, so a request costs no extra query and no
second signature check; the first sight of a token refreshes the user row in one query, or
creates it (from GetUserInfoWithJwt when OAUTH_SERVER_URL is set, else from the claims), and
re-promotes OWNER_OPEN_ID to admin (TEMPLATE_FLOWS §1.4, §1.7). Without JWT_SECRET (local
mode) every request acts as one local user.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from starlette.requests import Request

from rpc.config import Settings
from rpc.cookies import read_cookie
from storage.store import JobStore

log = logging.getLogger("rpc.auth")

COOKIE_NAME = "app_session_id"
ONE_YEAR_SECONDS = 365 * 24 * 3600
LOCAL_OPEN_ID = "local"
CACHE_SIZE = 10_000
# lastSignedIn is refreshed at most this often per token, off the request's path.
REFRESH_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    open_id: str
    role: str


@dataclass(slots=True)
class _Cached:
    caller: Caller
    expires_at: float
    refreshed_at: float


def session_token(request: Request) -> str | None:
    token = read_cookie(request.scope, COOKIE_NAME)  # linear, whatever the header holds
    if token:
        return token
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def mint_token(
    secret: str, open_id: str, *, name: str | None = None, app_id: str = "vision-pipeline",
    expires_in: int = ONE_YEAR_SECONDS,
) -> str:  # fmt: skip
    """A session token the template's own verifier also accepts (openId, appId, name all set)."""
    claims = {
        "openId": open_id,
        "appId": app_id,
        "name": name or open_id,
        "exp": int(time.time()) + expires_in,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> dict[str, object] | None:
    """The claims of a valid session token, or None. Only HS256 is accepted (no ``alg: none``,
    no algorithm confusion); ``exp`` is checked when present; ``openId`` must be a non-empty
    string."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.PyJWTError:
        return None
    open_id = claims.get("openId")
    if not isinstance(open_id, str) or not open_id.strip() or len(open_id) > 64:
        return None
    return claims


class Authenticator:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._local: Caller | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def resolve(self, request: Request) -> Caller | None:
        """The caller of this request, or None (the template never errors here: an invalid
        session is simply no session; protected procedures then answer UNAUTHORIZED)."""
        secret = self.settings.jwt_secret
        if not secret:
            return await self._local_caller()
        token = session_token(request)
        if token is None or len(token) > 8192:
            return None
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at <= now:
                del self._cache[token]
                return None
            self._cache.move_to_end(token)
            if now - cached.refreshed_at > REFRESH_SECONDS:
                cached.refreshed_at = now
                self._refresh_later(cached.caller.open_id)
            return cached.caller
        claims = verify_token(secret, token)
        if claims is None:
            return None
        open_id = str(claims["openId"])
        name = claims.get("name")
        user_id, role = await self._user_of(
            token, open_id, name if isinstance(name, str) and name else None
        )
        caller = Caller(user_id, open_id, role)
        exp = claims.get("exp")
        expires_at = float(exp) if isinstance(exp, int | float) else now + ONE_YEAR_SECONDS
        self._cache[token] = _Cached(caller, expires_at, now)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return caller

    def forget(self, request: Request) -> None:
        token = session_token(request)
        if token:
            self._cache.pop(token, None)

    def forget_user(self, open_id: str) -> None:
        """Drop cached sessions of a user whose role changed."""
        for token in [t for t, c in self._cache.items() if c.caller.open_id == open_id]:
            del self._cache[token]

    def _role_for(self, open_id: str) -> str:
        return "admin" if open_id == self.settings.owner_open_id else "user"

    def _promotion(self, open_id: str) -> str | None:
        """The role every sighting sets: admin for OWNER_OPEN_ID (the template's upsertUser
        re-promotes the owner on each upsert, TEMPLATE_FLOWS §1.7); None keeps the role."""
        return "admin" if open_id == self.settings.owner_open_id else None

    async def _user_of(self, token: str, open_id: str, name: str | None) -> tuple[int, str]:
        """(id, role) of a verified session's user. A known user costs one query. A new one
        gets its row from GetUserInfoWithJwt when OAUTH_SERVER_URL is set (as the template's
        authenticateRequest, TEMPLATE_FLOWS §1.4), else (or when that fails) from the claims:
        the token is signed with our secret, so it is a session either way."""
        seen = await self.store.touch_user(open_id, name, self._promotion(open_id))
        if seen is not None:
            return seen
        if self.settings.oauth_server_url:
            from rpc.oauth import OAuthError, OAuthServer  # rpc.oauth imports this module

            try:
                async with OAuthServer.from_settings(self.settings) as oauth:
                    info = await oauth.get_user_info_with_jwt(token)
            except OAuthError as exc:
                log.warning("user %s created from the session's claims: %s", open_id, exc)
            else:
                if info.open_id == open_id:
                    return await self.store.upsert_user_login(
                        open_id, info.name or name, info.email, info.login_method,
                        self._promotion(open_id),
                    )  # fmt: skip
                log.warning("GetUserInfoWithJwt named another openId than %s's session", open_id)
        return await self.store.user_seen(open_id, name, self._role_for(open_id))

    async def _local_caller(self) -> Caller:
        if self._local is None:
            user_id, role = await self.store.user_seen(LOCAL_OPEN_ID, "Local user", "admin")
            self._local = Caller(user_id, LOCAL_OPEN_ID, role)
        return self._local

    def _refresh_later(self, open_id: str) -> None:
        async def refresh() -> None:
            try:
                seen = await self.store.touch_user(open_id, None, self._promotion(open_id))
            except Exception as exc:  # a missed refresh only delays lastSignedIn
                log.warning("could not refresh lastSignedIn of %s: %s", open_id, exc)
                return
            if seen is None:  # the row is gone: the next request recreates it
                self.forget_user(open_id)

        task = asyncio.ensure_future(refresh())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
