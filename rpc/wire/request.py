"""Reading a tRPC request (TRPC_WIRE §2): its query string, its body within the size limit,
each call's raw input (one call, a batch, or the docs' query-parameter form)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.requests import ClientDisconnect, Request
from starlette.types import Scope

from rpc.wire import limits, superjson
from rpc.wire.errors import TRPCError
from rpc.wire.router import Procedure


@dataclass(slots=True)
class Call:
    """One call of a request: its path, its procedure (None: no such path), its raw input."""

    path: str
    procedure: Procedure | None
    raw: Any = superjson.UNDEFINED
    error: TRPCError | None = None
    nul: bool = False  # the input may hold a NUL character: look before running


async def read_inputs(
    request: Request, params: dict[str, str], calls: list[Call], batch: bool, limit: int
) -> bool:
    """Fill each call's raw input. Returns True for the lenient query-parameter form."""
    if request.method == "GET":
        text = params.get("input")
        if text is None and not batch:
            # The docs' curl form: the input's fields as plain query parameters.
            fields = {k: v for k, v in params.items()
                      if k not in ("batch", "connectionParams")}  # fmt: skip
            if fields:
                calls[0].raw = fields
                calls[0].nul = True
                return True
        if not text:
            return False
        if len(text) > limit:
            raise TRPCError("PAYLOAD_TOO_LARGE", "Request input is too large")
    else:
        text = await read_body(request, limit)
        if not text.strip():
            return False
    try:
        decoded = limits.loads(text)
    except TRPCError as exc:
        if exc.code == "PAYLOAD_TOO_LARGE":
            raise  # request-level, as a body over MAX_BODY_BYTES is
        for call in calls:
            call.error = exc  # per call, with its path (TRPC_WIRE §2.3)
        return False
    for call in calls:
        call.nul = "\\u0000" in text  # the only way a NUL gets through json.loads
    if not batch:
        calls[0].raw = decoded
        return False
    if not isinstance(decoded, dict):
        error = TRPCError("BAD_REQUEST", '"input" needs to be an object when doing a batch call')
        for call in calls:
            call.error = error
        return False
    for index, call in enumerate(calls):
        call.raw = decoded.get(str(index), superjson.UNDEFINED)
    return False


def check_url(scope: Scope, max_url_bytes: int) -> None:
    """400 when the URL (path + query) is longer than ``max_url_bytes``."""
    url_bytes = len(scope.get("raw_path") or b"") + len(scope["query_string"])
    if url_bytes > max_url_bytes:
        raise TRPCError("BAD_REQUEST", f"Request URL is too long ({url_bytes} bytes; "
                        f"the limit is {max_url_bytes})")  # fmt: skip


def query_params(scope: Scope) -> dict[str, str]:
    """``request.query_params`` as a dict, the same pairs (the last of a repeated name wins),
    at a third of the cost: a request's query is usually the single ``input`` pair, unquoted
    here as parse_qsl would unquote it, without Starlette's multi-dict around it."""
    text: str = scope["query_string"].decode("latin-1")
    if not text:
        return {}
    if "&" in text:
        return dict(parse_qsl(text, keep_blank_values=True))
    name, _, value = text.partition("=")
    if "+" in text:
        name, value = name.replace("+", " "), value.replace("+", " ")
    return {unquote(name): unquote(value)}


async def read_body(request: Request, limit: int) -> str:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TRPCError("PAYLOAD_TOO_LARGE", f"Request body is larger than {limit} bytes")
        except ValueError:
            raise TRPCError("BAD_REQUEST", "Invalid content-length header") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TRPCError("PAYLOAD_TOO_LARGE", f"Request body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise TRPCError("CLIENT_CLOSED_REQUEST", "The client closed the request") from None
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise TRPCError("BAD_REQUEST", "Request body is not valid UTF-8") from None


def last_event_id_of(request: Request) -> str | None:
    """§7.1 priority: the ``Last-Event-ID`` header, then ``?lastEventId=``, ``?Last-Event-Id=``."""
    return (
        request.headers.get("last-event-id")
        or request.query_params.get("lastEventId")
        or request.query_params.get("Last-Event-Id")
    )


def looks_superjson(request: Request) -> bool:
    """For request-level errors (input not parsed): guess from the raw input text."""
    text = request.query_params.get("input") or ""
    return '"json"' in text[:4096]
