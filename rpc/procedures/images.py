"""``GET /api/images/<sha256>`` (and HEAD): an image of the store (``storage.images``).

The session's user (cookie or bearer, as ``rpc.auth.sessions`` resolves it; local mode: the
local user) gets their own image, an admin anyone's; everyone else, with or without a session,
gets the same 404 as for an image nobody has, so the answer reveals nothing about other users'
images.

An image's bytes never change under its name (the name is their SHA-256), so the answer is
cached for a year (``private``: it is the user's, no shared cache keeps it) with the hash as
its ETag; a client that has it gets 304. A frontend served from another origin
(CORS_ALLOW_ORIGINS) shows it with ``<img src>``: for a request from such an origin (its
``Origin``, or for an ``<img>`` that sends none, its ``Referer``) the answer carries
``Cross-Origin-Resource-Policy: cross-origin`` instead of the ``same-origin`` that
``rpc.security.SecurityHeaders`` adds to everything else.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rpc import security
from rpc.context import Context, Services
from storage.images import IMAGE_PATH, image_path, image_sha
from storage.records import StoredImage

CACHE_CONTROL = "private, max-age=31536000, immutable"


def routes() -> list[Route]:
    # GET routes answer HEAD too (Starlette adds it).
    return [Route(IMAGE_PATH + "{sha256}", serve_image, methods=["GET"])]


def _not_found() -> Response:
    return JSONResponse(
        {"error": {"message": "Image not found", "code": "NOT_FOUND"}}, status_code=404
    )


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison against a list of entity tags, or ``*``."""
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _request_origin(request: Request) -> str | None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin.rstrip("/")
    referer = request.headers.get("referer")
    if not referer:
        return None
    try:
        parts = urlsplit(referer)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


async def _find(services: Services, request: Request, sha: str, with_data: bool
                ) -> StoredImage | None:  # fmt: skip
    caller = await Context(services, request).caller()
    if caller is None:
        return None
    store = services.store
    image = await store.get_image(caller.user_id, sha, with_data=with_data)
    if image is None and caller.role == "admin":
        image = await store.get_image(None, sha, with_data=with_data)
    return image


async def serve_image(request: Request) -> Response:
    services: Services = request.app.state.services
    sha = image_sha(image_path(request.path_params["sha256"]))
    if sha is None:
        return _not_found()
    etag = f'"{sha}"'
    cached = _matches(request.headers.get("if-none-match", ""), etag)
    with_data = request.method != "HEAD" and not cached
    image = await _find(services, request, sha, with_data)
    if image is None:
        return _not_found()
    headers = {"etag": etag, "cache-control": CACHE_CONTROL}
    origin = _request_origin(request)
    if origin is not None and origin in security.cors_origins(services.settings):
        headers["cross-origin-resource-policy"] = "cross-origin"
    if cached:
        return Response(status_code=304, headers=headers)
    headers["content-length"] = str(image.byte_size)
    return Response(image.data or b"", media_type=image.mime_type, headers=headers)
