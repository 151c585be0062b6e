"""The real app under its lifespan, in this process, with an httpx client on it (no sockets):
for tests of the probes and the access log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx

from rpc.app import App, create_app
from rpc.config import Settings


@asynccontextmanager
async def running_app(
    settings: Settings, *, run_worker: bool = False
) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    app = create_app(settings, run_worker=run_worker)
    to_app: Any
    to_app, from_test = anyio.create_memory_object_stream[Any](4)
    from_app, to_test = anyio.create_memory_object_stream[Any](4)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                         from_test.receive, from_app.send)  # fmt: skip
        await to_app.send({"type": "lifespan.startup"})
        assert (await to_test.receive())["type"] == "lifespan.startup.complete"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield app, client
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await to_test.receive())["type"] == "lifespan.shutdown.complete"


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value in a /metrics text (0 when absent: a counter not yet moved)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
