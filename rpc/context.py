"""What a procedure sees: the services of the app and the request's caller (resolved once per
HTTP request, however many calls a batch holds, as tRPC's createContext is)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from pipeline.worker import Worker
    from rpc.auth import Authenticator, Caller
    from rpc.config import Settings
    from storage.store import JobStore


@dataclass
class Services:
    settings: Settings
    store: JobStore
    auth: Authenticator
    worker: Worker | None = None


@dataclass
class Context:
    services: Services
    request: Request
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    _caller: asyncio.Future[Caller | None] | None = None

    async def caller(self) -> Caller | None:
        if self._caller is None:
            self._caller = asyncio.ensure_future(self.services.auth.resolve(self.request))
        return await asyncio.shield(self._caller)

    @property
    def secure(self) -> bool:
        """Whether the client reached us over https (directly or through a TLS proxy)."""
        if self.request.url.scheme == "https":
            return True
        forwarded = self.request.headers.get("x-forwarded-proto", "")
        return any(p.strip().lower() == "https" for p in forwarded.split(","))
