"""Sessions as the frontend's template makes them (TEMPLATE_FLOWS §1.5, SEED_API §3).

The token comes from the ``app_session_id`` cookie, else ``Authorization: Bearer``. It is an
HS256 JWT signed with JWT_SECRET carrying ``openId`` (required), ``name`` and ``appId``. A
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
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

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
# A cached role older than this is read again before it is used: a role change made by any
# process reaches every server within this plus one read (the promise is 5 s).
ROLE_SECONDS = 2.0
# Clock skew allowed between the token's signer and us, for `iat` and `nbf` (never `exp`).
LEEWAY_SECONDS = 60
OPEN_ID_MAX = 64  # users.openId is VARCHAR(64) (TEMPLATE_FLOWS §3.2)
MIN_SECRET_BYTES = 32  # HS256's key should be at least as long as its hash (RFC 7518 §3.2)

# PyJWT (since 2.10) warns about a short HMAC key on every sign and verify, in its words, on
# stderr. We accept such a key and say so once at start (`secret_warning`), so that one
# category is silenced. Not a `catch_warnings` around each call: that rewrites the process's
# filter list per call (unsafe with threads, and it resets every other warning's "once").
_KEY_LENGTH_WARNING: type[Warning] | None = getattr(jwt.warnings, "InsecureKeyLengthWarning", None)
if _KEY_LENGTH_WARNING is not None:
    warnings.filterwarnings("ignore", category=_KEY_LENGTH_WARNING)


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


def storable(text: str) -> bool:
    """Whether both databases can store ``text``: PostgreSQL refuses NUL in text (SQLite would
    keep it), and a lone surrogate (JSON's ``"\\ud800"``) has no UTF-8 form."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def open_id_problem(open_id: str) -> str | None:
    """Why ``open_id`` cannot name a user here, or None when it can."""
    if not open_id.strip():
        return "it is empty"
    if len(open_id) > OPEN_ID_MAX:
        return f"it is longer than {OPEN_ID_MAX} characters"
    if not storable(open_id):
        return "it holds a NUL character or a lone surrogate"
    return None


def secret_warning(secret: str | None) -> str | None:
    """What to say at start about a JWT_SECRET too short for HS256 (it is used anyway)."""
    size = len(secret.encode("utf-8")) if secret else 0
    if not secret or size >= MIN_SECRET_BYTES:
        return None
    return (
        f"JWT_SECRET is {size} bytes; use at least {MIN_SECRET_BYTES} random bytes, e.g. "
        "`python -c 'import secrets; print(secrets.token_hex(32))'`"
    )


def verify_token(secret: str, token: str) -> dict[str, object] | None:
    """The claims of a valid session token, or None. Only HS256 is accepted (no ``alg: none``,
    no algorithm confusion); ``exp`` is checked when present, without leeway; ``iat`` and
    ``nbf`` may be up to LEEWAY_SECONDS ahead of our clock; ``openId`` must be a string that
    can name a user (`open_id_problem`), and a string ``name`` must be storable: a token
    carrying anything else is refused, never rewritten."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=LEEWAY_SECONDS,
            options={"verify_aud": False},
        )  # fmt: skip
    except jwt.PyJWTError:
        return None
    # PyJWT applies its leeway to `exp` too; an expired session ends on time.
    if "exp" in claims and int(claims["exp"]) <= time.time():
        return None
    open_id, name = claims.get("openId"), claims.get("name")
    if not isinstance(open_id, str) or open_id_problem(open_id) is not None:
        return None
    if isinstance(name, str) and not storable(name):
        return None
    return claims


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
