"""Input validation errors in the form tRPC clients see from zod 4 (TRPC_WIRE §4.4): a
BAD_REQUEST whose message is a pretty-printed JSON array of issues {code, path, message}."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from rpc.wire.errors import TRPCError

_ZOD_CODES = {
    "missing": "invalid_type",
    "model_type": "invalid_type",
    "model_attributes_type": "invalid_type",
    "dict_type": "invalid_type",
    "string_type": "invalid_type",
    "int_type": "invalid_type",
    "int_parsing": "invalid_type",
    "int_from_float": "invalid_type",
    "float_type": "invalid_type",
    "float_parsing": "invalid_type",
    "bool_type": "invalid_type",
    "literal_error": "invalid_value",
    "enum": "invalid_value",
    "greater_than": "too_small",
    "greater_than_equal": "too_small",
    "string_too_short": "too_small",
    "less_than": "too_big",
    "less_than_equal": "too_big",
    "string_too_long": "too_big",
    "extra_forbidden": "unrecognized_keys",
    "url_parsing": "invalid_format",
    "url_scheme": "invalid_format",
    "value_error": "custom",
}


def issues(error: ValidationError) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in error.errors(include_url=False, include_context=False, include_input=False):
        kind = item["type"]
        message = item["msg"]
        if kind == "missing":
            message = "Invalid input: expected a value, received undefined"
        elif kind.startswith("value_error"):
            message = message.removeprefix("Value error, ")
        out.append(
            {
                "code": _ZOD_CODES.get(kind, "custom"),
                "path": [p for p in item["loc"] if p != "__root__"],
                "message": message,
            }
        )
    return out


def bad_request(error: ValidationError) -> TRPCError:
    return TRPCError("BAD_REQUEST", json.dumps(issues(error), indent=2, ensure_ascii=False))


def missing_input() -> TRPCError:
    issue = {
        "code": "invalid_type",
        "expected": "object",
        "path": [],
        "message": "Invalid input: expected object, received undefined",
    }
    return TRPCError("BAD_REQUEST", json.dumps([issue], indent=2))
