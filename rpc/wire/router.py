"""Procedures and the router that holds them: what a path is, its kind, input model and guard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from rpc.wire.errors import NOT_ADMIN_ERR_MSG, UNAUTHED_ERR_MSG, TRPCError
from rpc.wire.superjson import UNDEFINED
from rpc.wire.validation import bad_request, missing_input

if TYPE_CHECKING:
    from rpc.context import Context

Kind = Literal["query", "mutation", "subscription"]
Guard = Literal["public", "user", "admin"]
Handler = Callable[["Context", Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Procedure:
    path: str
    kind: Kind
    handler: Handler
    input_model: type[BaseModel] | None = None
    # When the client sends no input: validate an empty object (all defaults) instead of
    # failing, as zod's `.optional()`/defaults would.
    input_optional: bool = False
    guard: Guard = "public"
    # Takes a non-JSON body (multipart/form-data or application/octet-stream, read by
    # rpc.wire.nonjson): the handler gets a `BinaryInput` to read, never JSON.
    binary: bool = False

    def parse_input(self, raw: Any, *, lenient: bool = False) -> Any:
        """Validate the decoded input. ``lenient``: values came from a query string as text
        (the docs' curl form ``?jobId=1``) and are coerced; JSON input is checked strictly."""
        if self.input_model is None:
            return raw if self.binary else None
        if raw is UNDEFINED or (raw is None and self.input_optional):
            if not self.input_optional:
                raise missing_input()
            raw = {}
        try:
            return self.input_model.model_validate(raw, strict=not lenient)
        except ValidationError as exc:
            raise bad_request(exc) from None

    async def call(self, ctx: Context, raw: Any, *, lenient: bool = False) -> Any:
        if self.guard != "public":
            caller = await ctx.caller()
            if caller is None:
                raise TRPCError("UNAUTHORIZED", UNAUTHED_ERR_MSG)
            if self.guard == "admin" and caller.role != "admin":
                raise TRPCError("FORBIDDEN", NOT_ADMIN_ERR_MSG)
        return await self.handler(ctx, self.parse_input(raw, lenient=lenient))


class Router:
    def __init__(self) -> None:
        self.procedures: dict[str, Procedure] = {}
        self.binary_paths: set[str] = set()  # the procedures rpc.wire.nonjson serves

    def add(self, procedure: Procedure) -> None:
        if procedure.path in self.procedures:
            raise ValueError(f"procedure {procedure.path!r} defined twice")
        self.procedures[procedure.path] = procedure
        if procedure.binary:
            self.binary_paths.add(procedure.path)

    def procedure(
        self,
        path: str,
        kind: Kind,
        *,
        input: type[BaseModel] | None = None,
        input_optional: bool = False,
        guard: Guard = "public",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(Procedure(path, kind, handler, input, input_optional, guard))
            return handler

        return register

    def get(self, path: str) -> Procedure | None:
        return self.procedures.get(path)
