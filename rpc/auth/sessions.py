"""Sessions as the frontend's template makes them (TEMPLATE_FLOWS §1.5, SEED_API §3): who a
request's session token (``rpc.auth.tokens``) names, and that user's row and role. A
verified token is cached with its user id and role, so a request costs no extra query and no
second signature check; the first sight of a token refreshes the user row in one query, or
creates it (from GetUserInfoWithJwt when OAUTH_SERVER_URL is set, else from the claims), and
re-promotes OWNER_OPEN_ID to admin (TEMPLATE_FLOWS §1.4, §1.7). Without JWT_SECRET (local
mode) every request acts as one local user.

A role can change in another process (``vision-pipeline users set-role``), so a cached role is
re-read by user id once it is ROLE_SECONDS old, before the request that finds it so is
answered: one small read per token every ROLE_SECONDS however many requests it carries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from starlette.requests import Request

from rpc.auth.oauth import OAuthError, OAuthServer
from rpc.auth.tokens import ONE_YEAR_SECONDS, session_token, verify_token
from rpc.config import Settings
from storage.store import JobStore

log = logging.getLogger("rpc.auth")

LOCAL_OPEN_ID = "local"
CACHE_SIZE = 10_000
# lastSignedIn is refreshed at most this often per token, off the request's path.
REFRESH_SECONDS = 600.0
# A cached role older than this is read again before it is used: a role change made by any
# process reaches every server within this plus one read (the promise is 5 s).
ROLE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    open_id: str
    role: str


@dataclass(slots=True)
class _Cached:
    caller: Caller
    expires_at: float
    refreshed_at: float  # when lastSignedIn was last refreshed
    # The role's next read, or the expiry when that comes first: until then a request costs
    # one comparison (lastSignedIn, due far less often, is looked at when this has passed).
    due_at: float = 0.0
    reading: asyncio.Task[Caller | None] | None = None  # the role's re-read, shared

    def role_read(self, at: float) -> None:
        self.due_at = min(self.expires_at, at + ROLE_SECONDS)


class Authenticator:
    def __init__(
        self, settings: Settings, store: JobStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._local: _Cached | None = None
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
        now = self._clock()
        cached = self._cache.get(token)
        if cached is not None:
            self._cache.move_to_end(token)
            if now < cached.due_at:
                return cached.caller
            caller = await self._revisit(token, cached, now)
            if caller is not None or cached.expires_at <= now:
                return caller
            # The user row is gone: this request creates it again, as a first sight does.
        claims = verify_token(secret, token)
        if claims is None:
            return None
        open_id = str(claims["openId"])
        name = claims.get("name")
        user_id, role = await self._user_of(
            token, open_id, name if isinstance(name, str) and name else None
        )
        caller = Caller(user_id, open_id, role)
        exp = claims.get("exp")  # an integer (verify_token), when present
        expires_at = (
            float(int(exp)) if isinstance(exp, int | float | str) else now + ONE_YEAR_SECONDS
        )
        self._cache[token] = entry = _Cached(caller, expires_at, now)
        entry.role_read(now)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return caller

    async def _revisit(self, token: str, cached: _Cached, now: float) -> Caller | None:
        """A cached session past its due time: expired (dropped), or its role is read again
        (None, and dropped, when the user row is gone)."""
        if cached.expires_at > now:
            if now - cached.refreshed_at > REFRESH_SECONDS:
                cached.refreshed_at = now
                self._refresh_later(cached.caller.open_id)
            caller = await self._reread(cached)
            if caller is not None:
                return caller
        if self._cache.get(token) is cached:
            del self._cache[token]
        return None

    async def _reread(self, cached: _Cached) -> Caller | None:
        """The cached caller with its role read again by user id; None when the row is gone.
        The requests that find an entry due at the same time share its one read."""
        if cached.reading is None:
            cached.reading = asyncio.ensure_future(self._read_role(cached))
            # Retrieved even when every waiter was cancelled: no "never retrieved" log.
            cached.reading.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(cached.reading)

    async def _read_role(self, cached: _Cached) -> Caller | None:
        started = self._clock()
        try:
            role = await self.store.user_role(cached.caller.user_id)
        finally:
            cached.reading = None
        if role is None:
            return None
        if role != cached.caller.role:
            cached.caller = replace(cached.caller, role=role)
        cached.role_read(started)
        return cached.caller

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
        """The local user, its role re-read as a session's is (it can be changed too)."""
        local, now = self._local, self._clock()
        if local is not None:
            if now < local.due_at:
                return local.caller
            caller = await self._reread(local)
            if caller is not None:
                return caller
        user_id, role = await self.store.user_seen(LOCAL_OPEN_ID, "Local user", "admin")
        self._local = local = _Cached(Caller(user_id, LOCAL_OPEN_ID, role), math.inf, now)
        local.role_read(now)
        return local.caller

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
