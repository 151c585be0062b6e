"""tRPC errors: the code table (TRPC_WIRE §4.3) and the error shape (§4.2)."""

from __future__ import annotations

from typing import Any

# data.code → (JSON-RPC code, HTTP status)
CODES: dict[str, tuple[int, int]] = {
    "PARSE_ERROR": (-32700, 400),
    "BAD_REQUEST": (-32600, 400),
    "UNAUTHORIZED": (-32001, 401),
    "PAYMENT_REQUIRED": (-32002, 402),
    "FORBIDDEN": (-32003, 403),
    "NOT_FOUND": (-32004, 404),
    "METHOD_NOT_SUPPORTED": (-32005, 405),
    "TIMEOUT": (-32008, 408),
    "CONFLICT": (-32009, 409),
    "PRECONDITION_FAILED": (-32012, 412),
    "PAYLOAD_TOO_LARGE": (-32013, 413),
    "UNSUPPORTED_MEDIA_TYPE": (-32015, 415),
    "UNPROCESSABLE_CONTENT": (-32022, 422),
    "PRECONDITION_REQUIRED": (-32028, 428),
    "TOO_MANY_REQUESTS": (-32029, 429),
    "CLIENT_CLOSED_REQUEST": (-32099, 499),
    "INTERNAL_SERVER_ERROR": (-32603, 500),
    "NOT_IMPLEMENTED": (-32603, 501),
    "BAD_GATEWAY": (-32603, 502),
    "SERVICE_UNAVAILABLE": (-32603, 503),
    "GATEWAY_TIMEOUT": (-32603, 504),
}

UNAUTHED_ERR_MSG = "Please login (10001)"
NOT_ADMIN_ERR_MSG = "You do not have required permission (10002)"


class TRPCError(Exception):
    """An error a procedure (or the dispatcher) reports to the client, by tRPC code."""

    def __init__(
        self, code: str, message: str | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown tRPC error code {code!r}")
        super().__init__(message or code)
        self.code = code
        self.message = message or code  # tRPC uses the code when there is no message
        self.headers = headers or {}

    @property
    def http_status(self) -> int:
        return CODES[self.code][1]

    def shape(self, path: str | None) -> dict[str, Any]:
        """The error object, keys in tRPC's order: message, code, data{code, httpStatus, path}."""
        rpc_code, status = CODES[self.code]
        data: dict[str, Any] = {"code": self.code, "httpStatus": status}
        if path is not None:
            data["path"] = path
        return {"message": self.message, "code": rpc_code, "data": data}


def internal_error(exc: Exception) -> TRPCError:
    """INTERNAL_SERVER_ERROR for a fault nobody foresaw, saying only what a client may act on
    (retryable: a subscription's client reconnects and resumes, §7.4)."""
    from storage.driver import DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return TRPCError("INTERNAL_SERVER_ERROR", "The database is unavailable; please try again")
    return TRPCError("INTERNAL_SERVER_ERROR", "Internal server error")
