"""The app: ``create_app(settings)`` builds it (Starlette, with the tRPC path routed around it);
its lifespan opens the store and hosts the worker in an anyio task group, so one process
serves the API and runs jobs."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.retention import Housekeeping
from pipeline.runner import trim_memory_periodically
from pipeline.service import build_worker
from rpc import gate, probes, security, static, ui
from rpc.auth import callback, signin
from rpc.auth.sessions import Authenticator
from rpc.auth.tokens import secret_warning
from rpc.config import Settings
from rpc.context import Services
from rpc.job_log import JobLines
from rpc.observe import Observer
from rpc.procedures import images, progress
from rpc.procedures.routes import build_router
from rpc.wire.dispatch import BASE_PATH, METHODS, ROUTE_PATH, Dispatcher
from storage.engine import open_store

log = logging.getLogger("rpc.app")
# An ASGI app that returns the status it sent (`Dispatcher.answer`).
Answer = Callable[[Scope, Receive, Send], Awaitable[int]]


class App:
    """The ASGI app ``create_app`` returns: ``/api/trpc/…`` goes straight to the dispatcher, every
    other path (and the lifespan) to Starlette. The hot API path skips Starlette's router and
    middleware stack (`Dispatcher.asgi` does what they did for it); OAuth, static files, SSE and
    /healthz keep them. Like Starlette's router, the prefix check reads ``scope["path"]``.
    Before either, ``rpc.gate`` refuses an oversized Cookie header and, in local mode, a
    Host that is not this machine. Each request is timed and noted for ``rpc.observe`` (HTTP
    metrics, access log)."""

    def __init__(
        self, cold: Starlette, settings: Settings | None = None, procedures: tuple[str, ...] = ()
    ) -> None:
        self.cold = cold
        self.hot: Answer = _not_started  # the dispatcher, once the lifespan has opened the store
        self.settings = settings
        self.loopback_only = settings is not None and settings.local_mode  # rpc.gate
        self.observer = Observer(procedures)  # HTTP metrics and access lines

    @property
    def state(self) -> State:
        """Starlette's ``app.state`` (``services``, ``dispatcher`` once started)."""
        return self.cold.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.cold(scope, receive, send)  # the lifespan
            return
        # Timed and noted for rpc.observe here rather than by an ASGI app around this one:
        # each await between the server and the dispatcher is walked again at every
        # suspension of the request (~0.4 µs a level a request), and the dispatcher returns
        # the status it sent, so its ``send`` is not wrapped (bench/RESULTS.md §30).
        started = time.perf_counter()
        status = 500  # noted when the dispatcher fails, or an app before its response
        try:
            refused = gate.check(scope["headers"], self.loopback_only)  # cookie cap, local Host
            if refused is None and scope["path"].startswith(BASE_PATH):
                scope["app"] = self.cold  # as Starlette sets it: request.app.state is reachable
                status = await self.hot(scope, receive, send)
            else:
                cold = self.cold if refused is None else gate.refusal_app(refused, self.settings)
                sent = SentStatus(send)
                try:
                    await cold(scope, receive, sent)
                finally:
                    status = sent.status  # what was sent, even if the app then failed
        finally:
            self.observer.note(scope, status, started)


async def _redirect_only(request: Request) -> Response:
    """The endpoint of the tRPC route, which `App` never lets Starlette reach (it sends every
    ``/api/trpc/…`` request to the dispatcher first): the route is there for Starlette's
    redirect of ``/api/trpc`` to ``/api/trpc/`` (see ``rpc.wire.dispatch.ROUTE_PATH``)."""
    return PlainTextResponse("Not Found", status_code=404)


async def _not_started(scope: Scope, receive: Receive, send: Send) -> int:
    raise RuntimeError("the app's lifespan has not run: no store, no dispatcher")


def _hot_path(dispatcher: Dispatcher, settings: Settings) -> Answer:
    """The dispatcher alone when the only middleware is SecurityHeaders (it then adds those
    headers itself); with CORS, the same middleware stack the cold routes get, its status
    read from what it sends."""
    if not security.cors_origins(settings):
        return dispatcher.answer
    dispatcher.security_headers = False
    app: ASGIApp = dispatcher.asgi
    for cls, args, kwargs in reversed(security.middleware(settings)):
        app = cls(app, *args, **kwargs)
    return _answering(app)


def _answering(app: ASGIApp) -> Answer:
    async def answer(scope: Scope, receive: Receive, send: Send) -> int:
        sent = SentStatus(send)
        await app(scope, receive, sent)
        return sent.status

    return answer


class SentStatus:
    """A ``send`` that remembers the status of the response sent through it (500 until one
    starts: what the server answers when the app fails first)."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


def _warn_about_the_secret(settings: Settings) -> None:
    if settings.local_mode:
        log.warning(
            "LOCAL MODE: JWT_SECRET is not set, so every request acts as the local user "
            "and only requests to localhost are answered. Set JWT_SECRET to expose this "
            "server."
        )
    elif weak := secret_warning(settings.jwt_secret):
        log.warning(weak)


def create_app(settings: Settings | None = None, *, run_worker: bool = True) -> App:
    settings = settings or Settings()
    router = build_router()
    middleware = security.middleware(settings)  # security headers; CORS when configured

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(
            settings.database_url, create=settings.migrate_on_start, pool_size=settings.pool_size()
        )
        worker = build_worker(store, settings) if run_worker else None
        services = Services(settings, store, Authenticator(settings, store), worker)
        app.state.services = services
        app.state.dispatcher = dispatcher = Dispatcher(router, services)
        app.state.probes = probes.Probes(
            store,
            worker,
            settings.metrics_token,
            lambda: services.live.subscribers,
            outer.observer.fold_seen,
        )
        outer.hot = _hot_path(dispatcher, settings)
        _warn_about_the_secret(settings)
        try:
            async with anyio.create_task_group() as tasks:
                await tasks.start(store.feed.run)
                tasks.start_soon(outer.observer.flush_periodically)
                if worker is not None:
                    # The finished-job lines, batched (rpc.job_log).
                    tasks.start_soon(JobLines.of(worker.report).flush_periodically)
                    await tasks.start(worker.run)
                    tasks.start_soon(trim_memory_periodically)  # flat RSS after bursts
                    tasks.start_soon(Housekeeping(store, settings).run)  # retention
                try:
                    yield
                finally:
                    if worker is not None:
                        worker.stop()
                        await worker.stopped.wait()
                    tasks.cancel_scope.cancel()
        finally:
            outer.hot = _not_started
            await store.driver.close()

    routes = [
        Route(ROUTE_PATH, _redirect_only, methods=sorted(METHODS)),  # see ROUTE_PATH
        *probes.routes(),  # /healthz, /readyz, /metrics
        Route("/api/jobs/{job_id}/events", progress.job_events, methods=["GET"]),
        *images.routes(),
        *callback.routes(),
        *signin.routes(),  # POST /api/auth/session: a pasted token becomes the session cookie
        *ui.routes(settings),  # the built-in page and dashboard
    ]
    # STATIC_DIR's mount catches every path: it must stay after every other route.
    cold = Starlette(
        routes=[*routes, *static.routes(settings)], lifespan=lifespan, middleware=middleware
    )
    outer = App(cold, settings, tuple(router.procedures))
    return outer
