"""The built-in page and dashboard (issue 16 items 2-4): plain HTML, CSS and ES modules shipped
in this package (``rpc/ui/static/``), no build step, nothing fetched from the internet.

What this module promises:

- Without STATIC_DIR the page is at ``/`` and the dashboard at ``/admin``; with it, the
  frontend there owns every path outside ``/api/``, so they are at ``/api/ui/`` and
  ``/api/ui/admin``. Both are always at ``/api/ui/…`` too, so a link to them works either way.
- Their files are at ``/api/ui/static/<name>`` (ETag and 304s, revalidated every time: a
  new release of the package must show at once, and the files are small).
- ``GET /api/ui/config`` tells the page how to sign in: ``{auth: "local" | "jwt", loginUrl,
  pageUrl, adminUrl}``; ``loginUrl`` is the template's ``getLoginUrl()`` (TEMPLATE_FLOWS
  §1.2, Gen-1: ``state`` = base64 of the redirect URI) when OAUTH_SERVER_URL is set, else null.
- The two HTML pages carry ``PAGE_CSP``, strict enough that no inline script or style runs:
  the page passes it (tests/test_page_browser.py fails on any violation). The other security
  headers are ``rpc.security``'s, as on every response.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from rpc.config import Settings

STATIC = Path(__file__).resolve().parent / "static"
UI_PATH = "/api/ui"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
REVALIDATE = "no-cache"


class _Files(StaticFiles):
    """The page's files, revalidated on every use (ETag: 304 when unchanged)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["cache-control"] = REVALIDATE
        return response


def _html(name: str) -> Response:
    return FileResponse(
        STATIC / name,
        media_type="text/html; charset=utf-8",
        headers={
            "cache-control": REVALIDATE,
            "content-security-policy": PAGE_CSP,
            "x-frame-options": "DENY",
        },
    )


async def page(request: Request) -> Response:
    return _html("index.html")


async def dashboard(request: Request) -> Response:
    return _html("admin.html")


def login_url(settings: Settings, origin: str) -> str | None:
    """The template's ``getLoginUrl()`` for this server's origin, or None without OAuth."""
    portal = settings.oauth_portal_url or settings.oauth_server_url
    if not settings.oauth_server_url or not portal:
        return None
    redirect_uri = origin.rstrip("/") + "/api/oauth/callback"
    state = base64.b64encode(redirect_uri.encode()).decode()
    query = urlencode(
        {"appId": settings.app_id, "redirectUri": redirect_uri, "state": state, "type": "signIn"}
    )
    return f"{portal.rstrip('/')}/app-auth?{query}"


def _origin(request: Request) -> str:
    """The origin the browser used (a proxy's ``X-Forwarded-Proto`` decides the scheme)."""
    scheme = request.url.scheme
    forwarded = request.headers.get("x-forwarded-proto")
    if forwarded:
        scheme = forwarded.split(",")[0].strip().lower() or scheme
    return f"{scheme}://{request.url.netloc}"


def config(settings: Settings) -> Route:
    at_root = not settings.static_dir

    async def ui_config(request: Request) -> Response:
        return JSONResponse(
            {
                "auth": "local" if settings.local_mode else "jwt",
                "loginUrl": login_url(settings, _origin(request)),
                "pageUrl": "/" if at_root else UI_PATH + "/",
                "adminUrl": "/admin" if at_root else UI_PATH + "/admin",
            },
            headers={"cache-control": "no-store"},
        )

    return Route(UI_PATH + "/config", ui_config, methods=["GET"])


def routes(settings: Settings) -> list[BaseRoute]:
    """The page's routes; ``/`` and ``/admin`` only when STATIC_DIR does not own them."""
    found: list[BaseRoute] = [
        config(settings),
        Route(UI_PATH + "/", page, methods=["GET"]),
        Route(UI_PATH + "/admin", dashboard, methods=["GET"]),
        Mount(UI_PATH + "/static", app=_Files(directory=STATIC), name="ui-static"),
    ]
    if not settings.static_dir:
        found += [Route("/", page, methods=["GET"]), Route("/admin", dashboard, methods=["GET"])]
    return found
