"""The tRPC path served outside Starlette (``rpc.app.App``, ``Dispatcher.asgi``) answers byte
for byte what the Starlette route inside the middleware stack answered: status, headers in
order (security headers, CORS, Allow), body. Plus the real ``create_app`` under its lifespan,
and the query parsing against Starlette's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.routing import Route
from starlette.types import Message

from rpc import security
from rpc.app import App, _hot_path, create_app
from rpc.config import Settings
from rpc.context import Context, Services
from rpc.wire.dispatch import METHODS, ROUTE_PATH, Dispatcher
from rpc.wire.errors import TRPCError
from rpc.wire.request import query_params
from rpc.wire.router import Router

FRONTEND = "https://app.example.com"


def _router() -> Router:
    router = Router()

    @router.procedure("q", "query")
    async def q(ctx: Context, _: None) -> Any:
        return {"at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "n": [1, None]}

    @router.procedure("limited", "query")
    async def limited(ctx: Context, _: None) -> Any:
        raise TRPCError("TOO_MANY_REQUESTS", "slow down", headers={"retry-after": "3"})

    @router.procedure("boom", "query")
    async def boom(ctx: Context, _: None) -> Any:
        raise RuntimeError("a fault nobody foresaw")

    @router.procedure("m", "mutation")
    async def m(ctx: Context, _: None) -> Any:
        return "done"

    return router


def _settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[call-arg]


def _apps(settings: Settings) -> tuple[Starlette, App]:
    """The stack as it was (the tRPC route inside Starlette) and as it is."""
    router = _router()
    services = Services(settings, None, None)  # type: ignore[arg-type]
    before = Dispatcher(router, services)
    old = Starlette(
        routes=[Route(ROUTE_PATH, before.handle, methods=sorted(METHODS))],
        middleware=security.middleware(settings),
    )
    after = Dispatcher(router, services)
    cold = Starlette(
        routes=[Route(ROUTE_PATH, after.handle, methods=sorted(METHODS))],
        middleware=security.middleware(settings),
    )
    new = App(cold)
    new.hot = _hot_path(after, settings)
    return old, new


REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/api/trpc/q", {}, b""),
    ("GET", '/api/trpc/q?input={"json":null}', {}, b""),
    ("GET", "/api/trpc/q,limited,nope?batch=1", {}, b""),
    ("GET", "/api/trpc/limited", {}, b""),
    ("GET", "/api/trpc/boom", {}, b""),
    ("GET", "/api/trpc/q%0Aq", {}, b""),
    ("GET", "/api/trpc/q?input=%7B", {}, b""),
    ("GET", "/api/trpc/q,q?batch=1", {"trpc-accept": "application/jsonl"}, b""),
    ("GET", "/api/trpc/q", {"x-forwarded-proto": "https"}, b""),
    ("HEAD", "/api/trpc/q", {}, b""),
    ("TRACE", "/api/trpc/q", {}, b""),
    ("OPTIONS", "/api/trpc/q", {}, b""),
    ("POST", "/api/trpc/m", {"content-type": "application/json"}, b""),
    ("POST", "/api/trpc/m", {"content-type": "image/png"}, b"x"),
    ("POST", "/api/trpc/q", {}, b"{}"),
    ("GET", "/api/trpc/", {}, b""),
    ("GET", "/api/trpc", {}, b""),  # Starlette's redirect to /api/trpc/
    ("OPTIONS", "/api/trpc/m", {"origin": FRONTEND, "access-control-request-method": "POST"}, b""),
    ("GET", "/api/trpc/q", {"origin": FRONTEND}, b""),
    ("GET", "/api/trpc/q", {"origin": "https://evil.example.net"}, b""),
]


async def _answer(app: Any, method: str, url: str, headers: dict[str, str], body: bytes) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.request(method, url, headers=headers, content=body or None)
        # Starlette's Route lists the allowed methods in set order, which varies by process.
        raw = [(k, b", ".join(sorted(v.split(b", "))) if k == b"allow" else v)
               for k, v in r.headers.raw]  # fmt: skip
        return r.status_code, raw, r.content


@pytest.mark.anyio
@pytest.mark.parametrize("cors", [False, True])
async def test_the_tRPC_path_answers_as_the_starlette_stack_did(cors: bool) -> None:
    settings = _settings(cors_allow_origins=FRONTEND if cors else "")
    old, new = _apps(settings)
    for method, url, headers, body in REQUESTS:
        expected = await _answer(old, method, url, headers, body)
        assert await _answer(new, method, url, headers, body) == expected, (method, url)


@pytest.mark.anyio
async def test_security_headers_on_the_tRPC_path() -> None:
    _, new = _apps(_settings())
    status, raw, _ = await _answer(new, "GET", "/api/trpc/q", {"x-forwarded-proto": "https"}, b"")
    names = [name for name, _ in raw]
    assert status == 200
    assert names[-6:] == [
        b"x-content-type-options", b"referrer-policy", b"cross-origin-resource-policy",
        b"content-security-policy", b"x-frame-options", b"strict-transport-security",
    ]  # fmt: skip
    status, raw, body = await _answer(new, "TRACE", "/api/trpc/q", {}, b"")
    assert (status, body) == (405, b"Method Not Allowed")
    assert (b"allow", b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT") in raw


@pytest.mark.anyio
async def test_a_fault_outside_the_endpoint_is_a_plain_500_and_raised() -> None:
    _, new = _apps(_settings())

    async def broken(request: Any) -> Any:
        raise RuntimeError("broken")

    new.hot.__self__.handle = broken  # type: ignore[attr-defined]
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/api/trpc/q", "raw_path": b"/api/trpc/q",
             "query_string": b"", "headers": [], "scheme": "http"}  # fmt: skip
    with pytest.raises(RuntimeError, match="broken"):
        await new(scope, receive, send)
    assert sent[0]["status"] == 500 and sent[1]["body"] == b"Internal Server Error"


@pytest.mark.anyio
async def test_create_app_under_its_lifespan(tmp_path: Path) -> None:
    settings = _settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", jwt_secret="s" * 40)
    app = create_app(settings, run_worker=False)
    with pytest.raises(RuntimeError, match="lifespan"):  # no store before the lifespan
        await _answer(app, "GET", "/api/trpc/q", {}, b"")
    to_app: Any
    to_app, from_test = anyio.create_memory_object_stream[Message](4)
    from_app, to_test = anyio.create_memory_object_stream[Message](4)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                         from_test.receive, from_app.send)  # fmt: skip
        await to_app.send({"type": "lifespan.startup"})
        assert (await to_test.receive())["type"] == "lifespan.startup.complete"
        assert app.state.services.settings is settings
        status, _, body = await _answer(
            app, "GET", "/api/trpc/visionPipeline.getJobHistory", {}, b""
        )
        assert status == 401 and b"UNAUTHORIZED" in body
        status, raw, body = await _answer(app, "GET", "/healthz", {}, b"")
        assert (status, body) == (200, b'{"ok":true}') and (b"x-frame-options", b"DENY") in raw
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await to_test.receive())["type"] == "lifespan.shutdown.complete"


query_text = st.text(alphabet="ab=&+%2Fé;x ", max_size=20)


@settings(max_examples=500, deadline=None)
@given(query_text)
def test_query_params_read_as_starlette_reads_them(text: str) -> None:
    raw = text.encode("utf-8")
    expected = QueryParams(raw.decode("latin-1"))
    got = query_params({"query_string": raw})
    assert got == dict(expected.items())
    assert list(got) == list(expected.keys())
