"""Security headers on every response, and CORS for a frontend served from another origin.

What this module promises:

- Every HTTP response (API, SSE, OAuth redirects, static files, errors the app answers)
  carries ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
  strict-origin-when-cross-origin`` and ``Cross-Origin-Resource-Policy: same-origin``.
- API responses (``/api/…``, ``/healthz``) also carry ``Content-Security-Policy:
  default-src 'none'; frame-ancestors 'none'`` and ``X-Frame-Options: DENY``: JSON and event
  streams are never rendered or framed. STATIC_DIR's files carry ``X-Frame-Options:
  SAMEORIGIN`` and the policy in STATIC_CONTENT_SECURITY_POLICY, none by default: a policy
  strict enough to matter depends on the frontend's build (inline scripts, CDNs), so it is
  the operator's to write.
- ``Strict-Transport-Security: max-age=31536000`` only on requests that arrived over https
  (directly, or through a proxy that says so in ``X-Forwarded-Proto``); over plain http the
  header would be ignored, and it must not pin a host that never serves https.
- A header the application set itself is left as it is.
- The tRPC route (``/api/trpc/…``, served outside Starlette's middleware for speed) adds the
  same headers through ``add_api_headers``; with CORS configured it goes through this
  module's middleware stack, as every other route does.
- CORS is off unless CORS_ALLOW_ORIGINS lists origins (comma-separated, exact, no ``*``):
  then Starlette's ``CORSMiddleware`` answers preflights and allows credentials (cookies)
  from those origins only, for GET/POST/OPTIONS and the headers tRPC clients send
  (TRPC_WIRE §8.1–§8.2). Without it, the same-origin frontend needs none.
- ``cross_site`` judges a request whose body a page may send cross-site without a preflight
  (a form, an octet-stream: uploadImage): accepted when ``Origin`` is one of
  CORS_ALLOW_ORIGINS (a frontend on another site, whose requests browsers mark
  ``Sec-Fetch-Site: cross-site``), or when it is absent (curl, the CLI) or this server's own
  origin and ``Sec-Fetch-Site`` (when sent) is not ``cross-site``; refused otherwise, in
  every mode, local mode included.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rpc.config import Settings

API_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=31536000"
CORS_HEADERS = [
    "content-type",
    "authorization",
    "trpc-accept",
    "trpc-batch-mode",
    "x-trpc-source",
    "last-event-id",
]
_COMMON = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)
_API = (*_COMMON, ("content-security-policy", API_CSP), ("x-frame-options", "DENY"))
# The same API headers as raw ASGI pairs, for responses built without the middleware.
_API_RAW = tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in _API)
_HSTS_RAW = (b"strict-transport-security", HSTS.encode("latin-1"))


def is_api_path(path: str) -> bool:
    """Paths the server answers itself; everything else is (or would be) a static file."""
    return path.startswith("/api/") or path in ("/api", "/healthz")


def is_https(scope: Scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-proto":
            protos = value.decode("latin-1").split(",")
            return any(p.strip().lower() == "https" for p in protos)
    return False


class SecurityHeaders:
    """Pure ASGI middleware (streaming bodies, SSE included, pass through untouched)."""

    def __init__(self, app: ASGIApp, *, static_csp: str = "") -> None:
        self.app = app
        self.static_csp = static_csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if is_api_path(scope.get("path", "")):
            extra = list(_API)
        else:
            extra = list(_COMMON)
            extra.append(("x-frame-options", "SAMEORIGIN"))
            if self.static_csp:
                extra.append(("content-security-policy", self.static_csp))
        if is_https(scope):
            extra.append(("strict-transport-security", HSTS))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_api_headers(raw_headers: list[tuple[bytes, bytes]], scope: Scope) -> None:
    """What `SecurityHeaders` adds to an API response, appended to a response's raw headers in
    place (same headers, same order, one the application set itself left as it is). The tRPC
    route calls it on the response it builds: a middleware wrapping ``send`` cost ~20% of a
    getJobStatus request's CPU. Names in ``raw_headers`` are lowercase, as Starlette writes them.
    """
    present = {name for name, _ in raw_headers}
    for pair in _API_RAW:
        if pair[0] not in present:
            raw_headers.append(pair)
    if is_https(scope) and _HSTS_RAW[0] not in present:
        raw_headers.append(_HSTS_RAW)


def cors_origins(settings: Settings) -> list[str]:
    """CORS_ALLOW_ORIGINS as a list, without blanks and trailing slashes."""
    origins = (o.strip().rstrip("/") for o in settings.cors_allow_origins.split(","))
    return [o for o in origins if o]


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _origin(scheme: str, host: str) -> str:
    """``scheme://host`` in lowercase, without the scheme's default port (as browsers write
    ``Origin``)."""
    host = host.strip().lower()
    port = _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host.removesuffix(port) if port else host}"


def cross_site(scope: Scope, settings: Settings) -> str | None:
    """Why a request must be refused as cross-site (see the module's promise), or None. Its
    own origin is its ``Host``, compared by host and port under the Origin's own scheme: behind
    a TLS proxy that does not say so (no ``X-Forwarded-Proto``), the scheme seen here is not
    the browser's, and another site never shares the host."""
    origin = host = fetch_site = None
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            origin = value.decode("latin-1").strip()
        elif name == b"host":
            host = value.decode("latin-1")
        elif name == b"sec-fetch-site":
            fetch_site = value.decode("latin-1").strip().lower()
    scheme, _, rest = (origin or "").lower().rstrip("/").partition("://")
    if rest and _origin(scheme, rest) in {o.lower() for o in cors_origins(settings)}:
        return None  # trusted by name: a frontend on another site says cross-site, rightly
    if fetch_site == "cross-site":
        return "Cross-site request refused (Sec-Fetch-Site: cross-site)"
    if origin is None:
        return None
    if rest and host is not None and _origin(scheme, rest) == _origin(scheme, host):
        return None
    return (f"Cross-site request refused: Origin {origin[:200]} is neither this server's "
            "origin nor one of CORS_ALLOW_ORIGINS")  # fmt: skip


def middleware(settings: Settings) -> list[Middleware]:
    """The app's middleware, outermost first: security headers, then CORS when configured."""
    stack = [Middleware(SecurityHeaders, static_csp=settings.static_content_security_policy)]
    origins = cors_origins(settings)
    if origins:
        if "*" in origins:
            raise ValueError("CORS_ALLOW_ORIGINS must list origins: '*' cannot carry cookies")
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_credentials=True,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=CORS_HEADERS,
                max_age=600,
            )
        )
    return stack
