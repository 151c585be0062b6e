"""What a procedure sees: the services of the app and the request's caller (resolved once per
HTTP request, however many calls a batch holds, as tRPC's createContext is).

At the top of ``rpc`` because every room meets here: the app builds `Services` in its lifespan,
the wire hands a `Context` to each call, the procedures read the store, the quotas and the live
progress from it, and auth resolves its caller. Everything the server keeps in memory between
requests hangs off `Services` (one per app): no module of ``rpc`` holds mutable state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from rpc import security
from rpc.procedures.budget_memo import NoBudgetMemo
from rpc.procedures.live import LiveProgress
from rpc.procedures.quotas import Quotas
from rpc.procedures.upload_quotas import UploadQuotas

if TYPE_CHECKING:
    from pipeline.worker import Worker
    from rpc.auth.sessions import Authenticator, Caller
    from rpc.config import Settings
    from storage.store import JobStore


@dataclass
class Services:
    settings: Settings
    store: JobStore
    auth: Authenticator
    worker: Worker | None = None
    # createJob's quota state (the cached global count, the per-user admission locks).
    quotas: Quotas = field(default_factory=Quotas)
    # uploadImage's limits (the per-minute window, the per-user storing locks).
    uploads: UploadQuotas = field(default_factory=UploadQuotas)
    # createJob's budget check: the users lately found without a budget (no read for a while).
    budgets: NoBudgetMemo = field(default_factory=NoBudgetMemo)
    # The calls of streamed (JSON Lines) batches, kept until they finish: a call keeps
    # running when its client leaves mid-stream (rpc.wire.jsonl).
    running: set[asyncio.Future[Any]] = field(default_factory=set)
    live: LiveProgress = field(init=False)

    def __post_init__(self) -> None:
        self.live = LiveProgress(self.store, queue_limit=self.settings.sse_queue_limit)


@dataclass
class Context:
    services: Services
    request: Request
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    _caller: Caller | None = None
    _resolved: bool = False
    _resolving: asyncio.Future[Caller | None] | None = None

    async def caller(self) -> Caller | None:
        """The request's caller, resolved once however many calls of a batch ask. A plain
        cached value after the first time: no task or future on the hot path."""
        if self._resolved:
            return self._caller
        if self._resolving is None:  # the first asker resolves; concurrent askers wait on it
            self._resolving = asyncio.get_running_loop().create_future()
            try:
                self._caller = await self.services.auth.resolve(self.request)
            except BaseException as exc:
                self._resolving.set_exception(exc)
                self._resolving.exception()  # retrieved: no "never retrieved" warning
                self._resolving = None
                raise
            self._resolved = True
            self._resolving.set_result(self._caller)
            return self._caller
        return await asyncio.shield(self._resolving)

    @property
    def secure(self) -> bool:
        """Whether the client reached us over https (directly or through a TLS proxy)."""
        return security.is_https(self.request.scope)
