"""The Starlette app: ``create_app(settings)`` builds it; its lifespan opens the store and hosts
the worker in an anyio task group, so one process serves the API and runs jobs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pipeline.service import build_worker
from rpc import oauth, security, static, subscriptions, template, vision
from rpc.auth import Authenticator
from rpc.config import Settings
from rpc.context import Services
from rpc.dispatch import ROUTE_PATH, Dispatcher
from rpc.router import Router
from storage.engine import open_store

log = logging.getLogger("rpc.app")
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def build_router() -> Router:
    router = Router()
    vision.register(router)
    template.register(router)
    subscriptions.register(router)
    return router


def create_app(settings: Settings | None = None, *, run_worker: bool = True) -> Starlette:
    settings = settings or Settings()
    router = build_router()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await open_store(settings.database_url, pool_size=settings.pool_size())
        worker = build_worker(store, settings) if run_worker else None
        services = Services(settings, store, Authenticator(settings, store), worker)
        app.state.services = services
        app.state.dispatcher = Dispatcher(router, services)
        if settings.local_mode:
            log.warning(
                "LOCAL MODE: JWT_SECRET is not set, so every request acts as the local user. "
                "Set JWT_SECRET before exposing this server."
            )
        try:
            async with anyio.create_task_group() as tasks:
                await tasks.start(store.feed.run)
                if worker is not None:
                    await tasks.start(worker.run)
                try:
                    yield
                finally:
                    if worker is not None:
                        worker.stop()
                        await worker.stopped.wait()
                    tasks.cancel_scope.cancel()
        finally:
            await store.driver.close()

    async def trpc(request: Request) -> Response:
        dispatcher: Dispatcher = request.app.state.dispatcher
        return await dispatcher.handle(request)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [
        Route(ROUTE_PATH, trpc, methods=_ALL_METHODS),  # /api/trpc/{path}, newlines too
        Route("/healthz", health, methods=["GET"]),
        Route("/api/jobs/{job_id}/events", subscriptions.job_events, methods=["GET"]),
        *oauth.routes(),
    ]
    # STATIC_DIR's mount catches every path: it must stay after every other route.
    return Starlette(
        routes=[*routes, *static.routes(settings)],
        lifespan=lifespan,
        middleware=security.middleware(settings),  # security headers; CORS when configured
    )
