"""JSON out: compact bytes, and the plain-JSON form of values (Dates as ISO strings, the way
``JSON.stringify`` writes them; ``undefined`` fields dropped).

``dumps`` writes a `RawJSON` fragment's text verbatim: the encoder writes a marker string in
its place (the stdlib encoder has no raw-output hook), and the marker's encoded form is then
replaced by the text. The marker holds NUL characters, which the encoder always escapes, and
a random per-process token, so no string of the data can spell its encoded form by accident;
the number of markers found is checked anyway, and a mismatch takes the slow, exact path.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime
from typing import Any

from rpc.wire.superjson import UNDEFINED, Encoded, RawJSON, iso

# Not orjson.Fragment (issue 14 item 5, measured with bench/splice.py): it was 9-14x faster
# (getJobStatus 26.6 -> 1.9 µs, getJobHistory 12.1 -> 1.3 µs per encode, medians of 7 rounds)
# but not byte-identical: orjson writes 5e-06 as 5e-6 (a costUsd under 0.0001) and refuses
# integers past 64 bits, which this encoder writes as JSON.stringify reads them.
_MARK = f"\x00raw-{secrets.token_hex(12)}\x00"
_MARK_ENCODED = json.dumps(_MARK)  # how the encoder writes it, quotes included


def to_plain(value: Any) -> Any:
    t = type(value)
    if t is Encoded:
        return value.json  # built JSON-ready: see superjson.Encoded
    if t is RawJSON:
        return value
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


def _unserializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(default: Any) -> json.JSONEncoder:
    return json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=default
    )


def dumps(value: Any) -> bytes:
    fragments: list[str] = []

    def default(item: Any) -> Any:
        if type(item) is RawJSON:
            fragments.append(item.text)
            return _MARK
        return _unserializable(item)

    text = _encoder(default).encode(value)
    if fragments:
        parts = text.split(_MARK_ENCODED)
        if len(parts) != len(fragments) + 1:
            return _dumps_decoded(value)
        pieces = [parts[0]]
        for fragment, part in zip(fragments, parts[1:], strict=True):
            pieces += (fragment, part)
        text = "".join(pieces)
    return text.encode("utf-8")


def _dumps_decoded(value: Any) -> bytes:
    """The exact path: each fragment decoded and encoded again with the rest."""

    def default(item: Any) -> Any:
        if type(item) is RawJSON:
            return json.loads(item.text)
        return _unserializable(item)

    return _encoder(default).encode(value).encode("utf-8")
