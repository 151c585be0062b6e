"""Session tokens as the frontend's template makes them (TEMPLATE_FLOWS §1.5, SEED_API §3): an
HS256 JWT signed with JWT_SECRET carrying ``openId`` (required), ``name`` and ``appId``, read
from the ``app_session_id`` cookie, else ``Authorization: Bearer``; and the rules an openId or
a name must meet to be stored."""

from __future__ import annotations

import time
import warnings

import jwt
from starlette.requests import Request

from rpc.auth.cookies import read_cookie

COOKIE_NAME = "app_session_id"
ONE_YEAR_SECONDS = 365 * 24 * 3600
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
