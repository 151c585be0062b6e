"""Serving the frontend's build from ``STATIC_DIR``, as the template's production server does
(``serveStatic`` in ``server/_core/vite.ts``: ``express.static(dist)`` then ``index.html``
for every other path; TEMPLATE_FLOWS §1.8 ``NODE_ENV``, §3.1 "static assets").

What this module promises:

- A GET or HEAD for a file under ``STATIC_DIR`` serves it (ETag, Last-Modified, 304s; no way
  out of the directory).
- Any other GET or HEAD outside ``/api/`` serves ``index.html`` with status 200 (the
  single-page app's router takes it from there). Paths under ``/api/`` and other methods keep
  the plain 404 they get without ``STATIC_DIR``.
- ``Cache-Control``: ``public, max-age=31536000, immutable`` for hashed assets (anything under
  ``assets/``, Vite's output folder, or a name carrying a content hash such as
  ``logo_d1d871ea.png`` or ``index-B2xK9q1Z.js``); ``no-cache`` (revalidate every time) for
  ``index.html`` and every other file.
- A path with a segment starting with a dot (``/.env``, ``/x/.git/config``, percent-encoded
  or not) is a plain 404, never a file and never the fallback; only ``/.well-known/…`` is
  served as any other path is.
- The mount catches every path, so ``rpc.app`` adds it after all other routes.
"""

from __future__ import annotations

import logging
import os
import re

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from rpc.config import Settings

log = logging.getLogger("rpc.static")

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# A content hash before the extension: 8+ characters of letters and digits (at least one of
# each), after "-", "_" or ".": Vite's "[name]-[hash]" and the template's "_<8 hex>" suffix.
_HASHED = re.compile(r"[-_.](?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{8,}\.[^./]+$")


def is_hashed(relative_path: str) -> bool:
    """Whether a file's name says its content never changes (see the module docstring)."""
    parts = relative_path.replace(os.sep, "/").split("/")
    return parts[0] == "assets" or bool(_HASHED.search(parts[-1]))


def is_hidden(relative_path: str) -> bool:
    """Whether a path names a dotfile or goes through a dot-directory (``.env``, ``.git/…``),
    which a build may hold but must never serve; ``.well-known/`` (RFC 8615) is served."""
    parts = relative_path.replace(os.sep, "/").split("/")
    if parts[0] == ".well-known":
        parts = parts[1:]
    return relative_path != "." and any(part.startswith(".") for part in parts)


class SinglePageApp(StaticFiles):
    """StaticFiles with the single-page fallback and the cache headers above."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        # `path` is normalised and relative ("." for "/"; "api/x" for "/api/x").
        first = path.split(os.sep, 1)[0]
        if first == "api" or scope["method"] not in ("GET", "HEAD") or is_hidden(path):
            return PlainTextResponse("Not Found", status_code=404)
        try:
            response = await super().get_response(path, scope)
            served = path
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
            served = "index.html"
            response = await super().get_response(served, scope)  # 404 when there is none
        immutable = served != "index.html" and is_hashed(served)
        response.headers["cache-control"] = IMMUTABLE if immutable else REVALIDATE
        return response


def routes(settings: Settings) -> list[BaseRoute]:
    """The mount of STATIC_DIR, or nothing when it is not set. Must come last."""
    if not settings.static_dir:
        return []
    directory = os.path.abspath(settings.static_dir)
    if not os.path.isfile(os.path.join(directory, "index.html")):
        log.error("STATIC_DIR %s has no index.html: build the frontend into it", directory)
    return [Mount("", app=SinglePageApp(directory=directory, check_dir=False))]
