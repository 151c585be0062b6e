"""Non-JSON inputs (tRPC v11's FormData and binary inputs, what ``httpLink`` sends for a
``FormData``, ``Blob``, ``File`` or ``Uint8Array`` input): the requests to a binary procedure
(``Procedure.binary``: uploadImage), which ``rpc.wire.dispatch`` hands here whole.

What this module promises:

- A request to a binary procedure is answered here, never read as JSON. Refused, in this
  order, before its guard and handler run: a URL over MAX_URL_BYTES (400); a method other
  than POST (405 METHOD_NOT_SUPPORTED, ``Allow: POST``; HEAD is the dispatcher's 204); a
  cross-site request (403 FORBIDDEN, ``rpc.security.cross_site``: a form is a body any page
  may send without a preflight); ``?batch=1`` (400: non-JSON inputs are never batched); a
  Content-Type other than ``multipart/form-data`` (with a boundary) or
  ``application/octet-stream``, JSON included, or none (415 UNSUPPORTED_MEDIA_TYPE).
- The body is read only when the handler asks (``BinaryInput.read``), so the guard and the
  handler's own limits come first: streamed, counted as it arrives, and refused with 413
  PAYLOAD_TOO_LARGE as soon as it passes the limit (a Content-Length over it at once), the
  rest left unread. A form may take ``FORM_OVERHEAD`` bytes more for its boundaries, part
  headers and other fields; its ``file`` part alone is held to the limit. A body with no
  bytes, or a form without a ``file`` part, is a 400.
- No superjson decoding of these inputs (as tRPC). The answer and its errors are in
  superjson's shape unless TRPC_TRANSFORMER=json: the request carries no hint of the client's
  transformer, and a client set up as tRPC documents for superjson apps (a non-JSON
  ``httpLink`` with ``transformer: {serialize: d => d, deserialize: superjson.deserialize}``)
  reads exactly that. The one exception to "plain JSON clients get plain JSON".
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from rpc import security
from rpc.context import Context, Services
from rpc.wire import superjson
from rpc.wire.encoding import dumps, to_plain
from rpc.wire.errors import TRPCError, internal_error
from rpc.wire.request import check_url
from rpc.wire.router import Procedure

log = logging.getLogger("rpc.nonjson")

FORM = "multipart/form-data"
OCTET = "application/octet-stream"
FILE_FIELD = "file"
# What a form may hold besides its file: boundaries, part headers, a few small fields.
FORM_OVERHEAD = 64 * 1024
_PARAM = re.compile(r';\s*([\w*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass(slots=True)
class BinaryInput:
    """A binary procedure's input: the request's body, read when the handler asks."""

    request: Request
    boundary: bytes | None  # a form's boundary; None: the body is the bytes themselves

    async def read(self, limit: int, too_large: str) -> bytes:
        """The uploaded bytes (the body, or the form's ``file`` part), at most ``limit``;
        413 with the message ``too_large`` beyond it, 400 when there are none."""
        if self.boundary is None:
            data = await _read_body(self.request, limit, too_large)
        else:
            body = await _read_body(self.request, limit + FORM_OVERHEAD, too_large)
            data = form_file(body, self.boundary)
            if len(data) > limit:
                raise TRPCError("PAYLOAD_TOO_LARGE", too_large)
        if not data:
            raise TRPCError("BAD_REQUEST", f"The upload is empty: send the file's bytes ({OCTET}) "
                            f'or a form with a "{FILE_FIELD}" field ({FORM})')  # fmt: skip
        return data


async def handle(
    services: Services, request: Request, procedure: Procedure, batch: bool
) -> Response:
    """The answer to a request to the binary ``procedure`` (see the module's promises)."""
    sj = services.settings.trpc_transformer != "json"
    ctx = Context(services, request)
    try:
        body = _admit(services, request, procedure, batch)
        value = await procedure.call(ctx, body)
        data = superjson.serialize(value) if sj else to_plain(value)
        status, payload, headers = 200, {"result": {"data": data}}, ctx.response_headers
    except Exception as exc:
        if isinstance(exc, TRPCError):
            error = exc
        else:
            log.exception("procedure %s failed", procedure.path)
            error = internal_error(exc)
        shape = error.shape(procedure.path)
        status, payload = error.http_status, {"error": superjson.serialize(shape) if sj else shape}
        headers = [*ctx.response_headers, *error.headers.items()]
    response = Response(dumps(payload), status_code=status, media_type="application/json")
    for name, value in headers:
        response.headers.append(name, value)
    return response


def _admit(services: Services, request: Request, procedure: Procedure, batch: bool) -> BinaryInput:
    """The request's input, or its refusal (see the module's promises)."""
    settings = services.settings
    check_url(request.scope, settings.max_url_bytes)
    if request.method != "POST":
        raise TRPCError(
            "METHOD_NOT_SUPPORTED",
            f"Unsupported {request.method}-request to {procedure.kind} procedure at path "
            f'"{procedure.path}"',
            headers={"allow": "POST"},
        )
    refused = security.cross_site(request.scope, settings)
    if refused is not None:
        raise TRPCError("FORBIDDEN", refused)
    if batch:
        raise TRPCError("BAD_REQUEST", f"{procedure.path} takes a non-JSON input, which cannot "
                        "be batched: send it alone (httpLink)")  # fmt: skip
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == OCTET:
        return BinaryInput(request, None)
    if media_type == FORM:
        boundary = _boundary(content_type)
        if boundary is None:
            raise TRPCError("BAD_REQUEST", "The multipart/form-data content type has no boundary")
        return BinaryInput(request, boundary)
    shown = f'"{media_type}"' if media_type else "none"
    raise TRPCError("UNSUPPORTED_MEDIA_TYPE", f"{procedure.path} takes {FORM} (the file in a "
                    f'"{FILE_FIELD}" field) or {OCTET}; the content type was {shown}')  # fmt: skip


def _boundary(content_type: str) -> bytes | None:
    for name, value in _PARAM.findall(content_type):
        if name.lower() == "boundary":
            value = value.strip().strip('"')
            if 0 < len(value) <= 200:  # RFC 2046: at most 70; browsers stay well below
                return bytes(value.encode("latin-1", "replace"))
    return None


async def _read_body(request: Request, limit: int, too_large: str) -> bytes:
    """The body, counted as it arrives: 413 once past ``limit`` (the rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise TRPCError("BAD_REQUEST", "Invalid content-length header")
        if int(declared) > limit:
            raise TRPCError("PAYLOAD_TOO_LARGE", too_large)
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > limit:
                raise TRPCError("PAYLOAD_TOO_LARGE", too_large)
            body += chunk
    except ClientDisconnect:
        raise TRPCError("CLIENT_CLOSED_REQUEST", "The client closed the request") from None
    return bytes(body)


def form_file(body: bytes, boundary: bytes) -> bytes:
    """The content of the first part of a multipart/form-data ``body`` named ``file``
    (RFC 7578): what ``FormData`` and ``curl -F file=@x`` send. 400 when there is none."""
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    while start >= 0:
        after = start + len(delimiter)
        if body[after : after + 2] == b"--":  # the close delimiter: no more parts
            break
        line_end = body.find(b"\r\n", after)
        head_end = body.find(b"\r\n\r\n", line_end) if line_end >= 0 else -1
        if head_end < 0:
            break
        content_end = body.find(b"\r\n" + delimiter, head_end + 4)
        if content_end < 0:
            break
        if _part_name(body[line_end + 2 : head_end]) == FILE_FIELD:
            return body[head_end + 4 : content_end]
        start = content_end + 2
    raise TRPCError("BAD_REQUEST", f'The form has no "{FILE_FIELD}" field (the image goes in a '
                    f'field named "{FILE_FIELD}")')  # fmt: skip


def _part_name(headers: bytes) -> str | None:
    """The ``name`` of a part's ``Content-Disposition: form-data; name="…"`` header."""
    for line in headers.split(b"\r\n"):
        name, colon, value = line.decode("utf-8", "replace").partition(":")
        if colon and name.strip().lower() == "content-disposition":
            params: dict[str, Any] = {k.lower(): v for k, v in _PARAM.findall(";" + value)}
            found = params.get("name")
            if found is None:
                return None
            found = found.strip()
            if found.startswith('"') and found.endswith('"') and len(found) >= 2:
                found = found[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            return str(found)
    return None
