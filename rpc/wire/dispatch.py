"""The tRPC v11 HTTP dispatcher (TRPC_WIRE §1–§4, recipe §10): an ASGI app (`Dispatcher.asgi`),
or a Starlette endpoint (`Dispatcher.handle`).

One request carries one call or a batch (``?batch=1``, paths joined with ``,``). The answer
is one envelope or an array of them; per-call failures stay per call (207 when the statuses
differ), request-level failures are a single envelope. Whether the answer is superjson or
plain JSON follows the client's input (SEED_API §1), unless a setting forces one.

Two streamed answers (recipe §10 step 7): a subscription (never batched) is an SSE stream
(§7, ``rpc.wire.sse``), with ``Last-Event-ID`` merged into its input (§7.1); a batch asking for
``application/jsonl`` (httpBatchStreamLink) is JSON Lines in completion order (§6,
``rpc.wire.jsonl``), and such a request that is not a batch is a 400.

Hostile input (issue 8): every request gets a tRPC envelope, a 4xx for anything the client
got wrong, never a 500 and never a hang. The limits: MAX_URL_BYTES (path + query, 400),
MAX_BATCH_SIZE calls (400 "Batch call exceeds maximum size", tRPC's maxBatchSize wording),
MAX_BODY_BYTES (413, counted while the body streams); JSON text through ``rpc.wire.limits.loads``
(too many values 413; too deep, NaN, giant integers 400); superjson meta that is malformed,
points at missing paths or names unknown types (400, ``rpc.wire.superjson``); NUL characters
anywhere in an input (400, ``rpc.wire.limits.refuse_nul``); a body (any method but GET) whose
content type is not ``application/json`` (415, before it is read: text/plain, forms and
multipart are what a page may send cross-site without a preflight, issue 13), except to a
binary procedure (uploadImage), whose requests ``rpc.wire.nonjson`` answers whole. A fault nobody
foresaw is logged and answered as an INTERNAL_SERVER_ERROR envelope. Header floods are
uvicorn's to bound (README); an oversized Cookie header is ``rpc.gate``'s (431)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from rpc import security
from rpc.context import Context, Services
from rpc.wire import jsonl, limits, nonjson, sse, superjson
from rpc.wire.encoding import dumps, to_plain
from rpc.wire.errors import TRPCError, internal_error
from rpc.wire.request import (
    Call,
    check_url,
    last_event_id_of,
    looks_superjson,
    query_params,
    read_inputs,
)
from rpc.wire.router import Procedure, Router

log = logging.getLogger("rpc.dispatch")

BASE_PATH = "/api/trpc/"


class _AnyPath(PathConvertor):
    """Starlette's ``path`` without its blind spot: ``.*`` stops at a newline, so a procedure
    path holding ``%0A`` would miss the route and get a plain-text 404, not an envelope."""

    regex = "[\\s\\S]*"


register_url_convertor("trpc_path", _AnyPath())
# The Starlette route of the tRPC path. `rpc.app` sends ``BASE_PATH…`` to `Dispatcher.asgi`
# before Starlette sees it; the route still answers ``/api/trpc`` with Starlette's redirect to
# ``/api/trpc/`` (redirect_slashes looks for a route matching the path plus a slash).
ROUTE_PATH = BASE_PATH + "{path:trpc_path}"
# The methods the tRPC path answers (Starlette's Route listed these); any other gets the plain
# 405 that Route gave, not an envelope.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
_ALLOW = ", ".join(sorted(METHODS))
# The only body a browser cannot send cross-site without a CORS preflight: text/plain, forms
# and multipart (or no type at all) would let any page act with a user's cookie.
_JSON_TYPE = "application/json"
# Every answer's Vary (Starlette's Response copies it, never changes it).
_VARY = {"vary": "trpc-accept, accept"}


class Dispatcher:
    def __init__(
        self, router: Router, services: Services, *, security_headers: bool = True
    ) -> None:
        self.router = router
        self.services = services
        # False when a middleware stack around `asgi` adds them (CORS configured: rpc.app).
        self.security_headers = security_headers

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app of every ``/api/trpc/…`` request (`answer`), for a middleware stack
        around it (CORS)."""
        await self.answer(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> int:
        """`asgi`, returning the status it sent: ``rpc.app`` calls it straight, before
        Starlette's router and middleware, whose per-request cost was ~40% of a getJobStatus,
        and notes the status without wrapping ``send`` (bench/RESULTS.md §30). What they did
        for this path is done here. Starlette's Route answered a method it does not list with
        a plain 405; SecurityHeaders added its headers (``security.add_api_headers``);
        ServerErrorMiddleware answered a fault escaping the endpoint with a plain 500 and
        re-raised it for the server to log (`handle` already turns a fault of a procedure or
        of the wire code into an envelope)."""
        try:
            if scope["method"] in METHODS:
                response = await self.handle(Request(scope, receive))
            else:
                response = PlainTextResponse(
                    "Method Not Allowed", status_code=405, headers={"allow": _ALLOW}
                )
            if self.security_headers:
                security.add_api_headers(response.raw_headers, scope)
        except Exception:
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        await response(scope, receive, send)
        return response.status_code

    async def handle(self, request: Request) -> Response:
        """The endpoint: every method on ``/api/trpc/{path}``. Whatever happens, a tRPC
        envelope: an unexpected fault is logged and answered as INTERNAL_SERVER_ERROR."""
        try:
            return await self._handle(request)
        except Exception:
            log.exception("request %s %s failed", request.method, request.url.path[:200])
            return self._request_error(TRPCError("INTERNAL_SERVER_ERROR"), request)

    async def _handle(self, request: Request) -> Response:
        method = request.method
        if method == "HEAD":
            return Response(status_code=204)
        settings = self.services.settings
        full_path: str = request.scope["path"]
        path = full_path[len(BASE_PATH) :] if full_path.startswith(BASE_PATH) else ""
        params = query_params(request.scope)
        batch = params.get("batch") == "1"
        if path in self.router.binary_paths:  # uploadImage: not JSON (rpc.wire.nonjson)
            return await nonjson.handle(self.services, request, self.router.procedures[path], batch)
        calls: list[Call] | None = None
        try:
            _check_request(request, method, settings.max_url_bytes)
            paths = path.split(",") if batch else [path]
            if len(paths) > settings.max_batch_size:
                raise TRPCError("BAD_REQUEST", "Batch call exceeds maximum size")
            calls = [Call(p, self.router.get(p)) for p in paths]
            lenient = await read_inputs(request, params, calls, batch, settings.max_body_bytes)
            # In call order, as tRPC words it.
            kinds = list(dict.fromkeys(c.procedure.kind for c in calls if c.procedure))
            if len(kinds) > 1:
                mixed = ", ".join(kinds)
                raise TRPCError("BAD_REQUEST", f"Cannot mix procedure types in call: {mixed}")
            asks = request.headers
            stream = jsonl.wants_jsonl(asks.get("trpc-accept"), asks.get("accept"))
            if stream and not batch:  # §6.1
                raise TRPCError("BAD_REQUEST", "Streaming requests must be batched "
                                "(you can do a batch of 1)")  # fmt: skip
        except TRPCError as exc:
            return self._request_error(exc, request, calls)

        if not batch and kinds == ["subscription"]:
            return await self._subscription(request, calls[0], lenient)
        sj = self._superjson(calls)
        ctx = Context(self.services, request)
        if stream:
            outcomes = [self._outcome(ctx, call, method, lenient) for call in calls]
            return jsonl.response(outcomes, [c.path for c in calls], sj, ctx.response_headers,
                                  self.services.running)  # fmt: skip
        if batch:
            results = await asyncio.gather(
                *(self._run(ctx, call, method, lenient) for call in calls)
            )
        else:
            results = [await self._run(ctx, calls[0], method, lenient)]
        statuses = {status for status, _ in results}
        status = statuses.pop() if len(statuses) == 1 else 207
        envelopes = [
            self._envelope(value, error, call.path, sj)
            for (_, (value, error)), call in zip(results, calls, strict=True)
        ]
        body = envelopes if batch else envelopes[0]
        # Headers the errors carry (405's allow, a quota's retry-after), once each.
        extra = list(dict.fromkeys(h for _, (_, e) in results if e for h in e.headers.items()))
        response = Response(dumps(body), status_code=status, headers=_VARY,
                            media_type="application/json")  # fmt: skip
        for name, value in [*ctx.response_headers, *extra]:
            response.headers.append(name, value)
        return response

    # -- input -------------------------------------------------------------------------------

    def _superjson(self, calls: list[Call]) -> bool:
        mode = self.services.settings.trpc_transformer
        if mode != "auto":
            return mode == "superjson"
        return any(superjson.is_superjson(c.raw) for c in calls)

    # -- calls -------------------------------------------------------------------------------

    @staticmethod
    def _checked(call: Call, method: str) -> tuple[Procedure, Any]:
        """The call's procedure and decoded input, or the per-call error (404, 405, 400)."""
        if call.error is not None:
            raise call.error
        procedure = call.procedure
        if procedure is None:
            raise TRPCError("NOT_FOUND", f'No procedure found on path "{call.path}"')
        expected = "POST" if procedure.kind == "mutation" else "GET"
        if method != expected:
            call.error = TRPCError(
                "METHOD_NOT_SUPPORTED",
                f'Unsupported {method}-request to {procedure.kind} procedure at path "{call.path}"',
                headers={"allow": expected},
            )
            raise call.error
        if procedure.binary:  # in a batch (alone, it is rpc.wire.nonjson's)
            raise TRPCError("UNSUPPORTED_MEDIA_TYPE", f'"{call.path}" takes a non-JSON input '
                            "(FormData or binary), which cannot be batched")  # fmt: skip
        raw = call.raw
        if superjson.is_superjson(raw):
            try:
                raw = superjson.deserialize(raw)
            except superjson.SuperjsonError as exc:
                raise TRPCError("BAD_REQUEST", f"Invalid superjson input: {exc}") from None
        if call.nul:
            limits.refuse_nul(raw)
        return procedure, raw

    async def _outcome(
        self, ctx: Context, call: Call, method: str, lenient: bool
    ) -> tuple[Any, TRPCError | None]:
        return (await self._run(ctx, call, method, lenient))[1]

    async def _run(
        self, ctx: Context, call: Call, method: str, lenient: bool
    ) -> tuple[int, tuple[Any, TRPCError | None]]:
        try:
            procedure, raw = self._checked(call, method)
            if procedure.kind == "subscription":  # only a batch brings one here
                raise TRPCError("BAD_REQUEST", "Cannot batch subscription calls")
            value = await procedure.call(ctx, raw, lenient=lenient)
            return 200, (value, None)
        except TRPCError as exc:
            return exc.http_status, (None, exc)
        except Exception as exc:
            log.exception("procedure %s failed", call.path)
            error = internal_error(exc)
            return error.http_status, (None, error)

    async def _subscription(self, request: Request, call: Call, lenient: bool) -> Response:
        """§7: always a 200 event stream once the path exists; errors before the iterator
        (input, auth, method, ownership) are ``connected`` then ``serialized-error``."""
        settings = self.services.settings
        last_event_id = last_event_id_of(request)
        ctx = Context(self.services, request)
        source: Any
        try:
            procedure, raw = self._checked(call, request.method)
            if last_event_id:  # §7.1 (S11 http/contentType.ts): merged into the input
                if isinstance(raw, dict):
                    raw = {**raw, "lastEventId": last_event_id}
                elif raw is None or raw is superjson.UNDEFINED:
                    raw = {"lastEventId": last_event_id}
            source = await procedure.call(ctx, raw, lenient=lenient)
            if not hasattr(source, "__anext__"):
                raise TRPCError("INTERNAL_SERVER_ERROR", f"Subscription {call.path} did not "
                                "return an observable or a AsyncGenerator")  # fmt: skip
        except TRPCError as exc:
            source = exc
        except Exception as exc:
            log.exception("subscription %s failed", call.path)
            source = internal_error(exc)
        framing = sse.TRPCFraming(sj=self._superjson([call]), path=call.path,
                                  last_event_id=last_event_id, settings=settings)  # fmt: skip
        return sse.response(sse.run(source, framing, settings), ctx.response_headers)

    # -- output ------------------------------------------------------------------------------

    @staticmethod
    def _envelope(value: Any, error: TRPCError | None, path: str, sj: bool) -> dict[str, Any]:
        if error is not None:
            shape = error.shape(path)
            return {"error": superjson.serialize(shape) if sj else shape}
        if sj:
            return {"result": {"data": superjson.serialize(value)}}
        if value is superjson.UNDEFINED:
            return {"result": {}}
        return {"result": {"data": to_plain(value)}}

    def _request_error(
        self, error: TRPCError, request: Request, calls: list[Call] | None = None
    ) -> Response:
        """A single, non-array error envelope. Superjson when the input we could read says so
        (a body refused unread, e.g. too large, leaves only the query string to go by)."""
        sj = self.services.settings.trpc_transformer == "superjson" or looks_superjson(request)
        if calls is not None and self.services.settings.trpc_transformer == "auto":
            sj = sj or self._superjson(calls)
        shape = error.shape(None)
        body = {"error": superjson.serialize(shape) if sj else shape}
        response = Response(dumps(body), status_code=error.http_status,
                            media_type="application/json")  # fmt: skip
        for name, value in error.headers.items():
            response.headers[name] = value
        return response


def _check_request(request: Request, method: str, max_url_bytes: int) -> None:
    """Request-level refusals before any input is read: a URL over the limit (400), a body
    that is not JSON (415)."""
    check_url(request.scope, max_url_bytes)
    if method != "GET":  # JSON only: no cross-site form or no-cors fetch (§2.3)
        content_type = request.headers.get("content-type", "")
        if not content_type:
            raise TRPCError("UNSUPPORTED_MEDIA_TYPE", "Missing content-type header")
        if not content_type.lower().startswith(_JSON_TYPE):
            raise TRPCError(
                "UNSUPPORTED_MEDIA_TYPE",
                f'Unsupported content-type "{content_type.split(";")[0].strip()}',
            )
