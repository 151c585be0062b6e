"""JSON out: compact bytes, and the plain-JSON form of values (Dates as ISO strings, the way
``JSON.stringify`` writes them; ``undefined`` fields dropped)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from rpc.superjson import UNDEFINED


def iso(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, list | tuple):
        return [None if v is UNDEFINED else to_plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return iso(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, set | frozenset):
        return [to_plain(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None  # what JSON.stringify writes for NaN and Infinity
    return value


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> bytes:
    return _encoder.encode(value).encode("utf-8")
