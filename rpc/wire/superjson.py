"""The superjson transformer, as tRPC clients use it (TRPC_WIRE.md §5).

`serialize` turns a Python value into ``{"json": ..., "meta"?: {"values": tree, "v": 1}}``
byte for byte as superjson 2.2.x would for the equivalent JS value (§5.2, §5.3), so a
``json.dumps(..., separators=(",", ":"))`` of it matches the observed wire examples.
`deserialize` reads what superjson 1.x and 2.x clients send (§5.4, §5.6): it applies
``meta.values`` and ignores ``referentialEqualities``.  Malformed or hostile input only
ever raises `SuperjsonError`, whose short message can be sent back as a 400.

Python mapping: None <-> null, `UNDEFINED` <-> undefined, datetime/date -> Date (read back
as an aware UTC datetime), set/frozenset -> Set (read
back as a list), a dict with any non-str key -> Map (read back as a dict when all keys are
str, else as [k, v] pairs), NaN/Infinity/-0.0 -> "number", Decimal -> float. Python ints are
sent as JSON numbers and never as bigint. JS lists integer-like object keys first: dicts
carrying annotations are reordered that way so the meta matches byte for byte; plain ones
keep their order (the parsed object is the same). `serialize` shares unchanged sub-trees
with its input, and `deserialize` rewrites the payload's "json" value in place.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from rpc.wire.superjson_read import deserialize
from rpc.wire.values import (
    DATE,
    UNDEFINED,
    Encoded,
    RawJSON,
    SuperjsonError,
    Tree,
    is_superjson,
)

__all__ = [
    "DATE",
    "UNDEFINED",
    "Encoded",
    "RawJSON",
    "SuperjsonError",
    "deserialize",
    "is_superjson",
    "iso",
    "serialize",
]

# RawJSON is a leaf here: its text holds no annotated value.
_PLAIN: Final = frozenset((str, int, bool, type(None), RawJSON))
# Serializing recurses once per nesting level; the cap also turns a reference cycle into
# a clean error instead of a RecursionError.
_MAX_OUT_DEPTH: Final = 256


# --- serialize ---------------------------------------------------------------------------


def serialize(value: object) -> dict[str, object]:
    """Encode `value` as superjson 2.2.x does. Unchanged sub-trees are shared, not copied."""
    if type(value) is Encoded and value.tree_json is not None:
        return {"json": value.json, "meta": {"values": value.tree_json, "v": 1}}
    out, tree = _walk(value, 0)
    if tree is None:
        return {"json": out}
    return {"json": out, "meta": {"values": tree, "v": 1}}


def _esc(key: str) -> str:
    # superjson >= 2.2.3 escapes the backslash first, then the dot.
    return key.replace("\\", "\\\\").replace(".", "\\.")


def _record(inner: dict[str, Any], key: str, tree: Tree) -> None:
    # A child that is itself annotated keeps its node; a plain container's record is
    # flattened into ours with dotted paths (superjson plainer.ts `walker`).
    if isinstance(tree, list):
        inner[key] = tree
    else:
        for sub, node in tree.items():
            inner[key + "." + sub] = node


def iso(dt: datetime) -> str:
    """JS ``toISOString()``: ``YYYY-MM-DDTHH:MM:SS.mmmZ``, always UTC. Naive means UTC."""
    if dt.tzinfo is UTC or dt.tzinfo is None:
        # What the store hands out. %-formatting costs half of isoformat(timespec=...) on an
        # aware value, and getJobHistory sends 40 of these per page.
        return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
            dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond // 1000
        )  # fmt: skip
    return _iso(dt)


def _iso(dt: datetime) -> str:
    # JS toISOString(): always UTC, always milliseconds. Naive means UTC, so only shift by
    # an actual offset (astimezone() would treat a naive value as local time).
    off = dt.utcoffset()
    if off is None:
        return dt.isoformat(timespec="milliseconds") + "Z"
    if off:
        return (dt - off).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


def _float(v: float) -> tuple[object, Tree | None]:
    if v - v != 0.0:  # only NaN and +-Infinity (inf - inf is NaN)
        return ("NaN" if v != v else "Infinity" if v > 0 else "-Infinity"), ["number"]
    if v == 0.0 and math.copysign(1.0, v) < 0:
        return "-0", ["number"]
    return v, None


def _walk(v: object, depth: int) -> tuple[object, Tree | None]:
    """Return (json form, annotation tree or None); the json form *is* `v` when unchanged."""
    t = type(v)
    if t in _PLAIN:
        return v, None
    if t is float:
        return _float(v)  # type: ignore[arg-type]
    if depth >= _MAX_OUT_DEPTH:
        raise SuperjsonError("value is nested too deeply (or is circular)")
    if t is dict:
        d: dict[Any, Any] = v  # type: ignore[assignment]
        out: Any = None
        inner: dict[str, Any] | None = None
        for k, c in d.items():
            if type(k) is not str and not isinstance(k, str):
                return _walk_map(d, depth)
            if type(c) in _PLAIN:
                continue
            cj, ct = _walk(c, depth + 1)
            if cj is not c:
                if out is None:
                    out = dict(d)  # copy lazily: plain dicts go out as they came in
                out[k] = cj
            if ct is not None:
                if inner is None:
                    inner = {}
                _record(inner, _esc(k), ct)
        if inner is None:
            return (d if out is None else out), None
        order = _js_order(d)
        if order is not None:
            # JS walks integer-like keys first; redo this (annotated, so already copied)
            # dict in that order so both the json and the meta match superjson's bytes.
            return _walk({k: d[k] for k in order}, depth)
        return out, _js_order_record(inner)
    if t is list or t is tuple:
        return _walk_seq(v, depth)  # type: ignore[arg-type]
    if t is Encoded:  # anywhere: jsonl and SSE frames wrap a procedure's result
        return v.json, v.tree  # type: ignore[attr-defined]
    if t is datetime:
        return iso(v), ["Date"]  # type: ignore[arg-type]
    if v is UNDEFINED:
        return None, ["undefined"]
    if t is set or t is frozenset:
        items, inner_tree = _walk_seq(list(v), depth)  # type: ignore[call-overload]
        return items, (["set"] if inner_tree is None else ["set", inner_tree])
    if t is date:
        return _iso_date(v), ["Date"]  # type: ignore[arg-type]
    if t is Decimal:
        return _float(float(v))  # type: ignore[arg-type]
    return _walk_subclass(v, depth)


def _iso_date(d: date) -> str:
    return d.isoformat() + "T00:00:00.000Z"


def _walk_subclass(v: object, depth: int) -> tuple[object, Tree | None]:
    # Slow path for subclasses (IntEnum, StrEnum, OrderedDict, ...), kept out of the hot path.
    if isinstance(v, int | str):
        return v, None  # json.dumps writes these as their base type
    if isinstance(v, date):
        return (_iso(v) if isinstance(v, datetime) else _iso_date(v)), ["Date"]
    bases: tuple[Any, ...] = (float, dict, list, tuple, set, frozenset, Decimal)
    for base in bases:
        if isinstance(v, base):
            return _walk(base(v), depth)
    raise TypeError(f"cannot superjson-serialize a {type(v).__name__}")


def _walk_seq(seq: list[Any] | tuple[Any, ...], depth: int) -> tuple[object, Tree | None]:
    out: list[Any] | None = None if type(seq) is list else list(seq)
    inner: dict[str, Any] | None = None
    for i, c in enumerate(seq):
        if type(c) in _PLAIN:
            continue
        cj, ct = _walk(c, depth + 1)
        if cj is not c:
            if out is None:
                out = list(seq)
            out[i] = cj
        if ct is not None:
            if inner is None:
                inner = {}
            _record(inner, str(i), ct)
    return (seq if out is None else out), (None if inner is None else _js_order_record(inner))


def _walk_map(d: dict[Any, Any], depth: int) -> tuple[object, Tree | None]:
    # A JS Map: [[key, value], ...]; child paths are "<entry>.0" (key) / "<entry>.1" (value).
    pairs: list[list[object]] = []
    inner: dict[str, Any] = {}
    for i, (k, c) in enumerate(d.items()):
        kj, kt = _walk(k, depth + 1)
        cj, ct = _walk(c, depth + 1)
        pairs.append([kj, cj])
        if kt is not None:
            _record(inner, f"{i}.0", kt)
        if ct is not None:
            _record(inner, f"{i}.1", ct)
    return pairs, (["map", _js_order_record(inner)] if inner else ["map"])


def _is_index(key: str) -> bool:
    # A JS array index: canonical decimal below 2**32 - 1.
    ok = key.isdigit() and key.isascii() and len(key) <= 10 and (key == "0" or key[0] != "0")
    return ok and int(key) < 4294967295


def _js_order(keys: dict[Any, Any]) -> list[Any] | None:
    # A JS object lists array-index-like keys first, ascending, then the rest in insertion
    # order. Returns the keys in that order, or None when they already are.
    idx = [k for k in filter(str.isdigit, keys) if _is_index(k)]  # filter() keeps it cheap
    if not idx:
        return None
    idx.sort(key=int)
    first = set(idx)
    ordered = idx + [k for k in keys if k not in first]
    return None if ordered == list(keys) else ordered


def _js_order_record(rec: dict[str, Any]) -> dict[str, Any]:
    order = _js_order(rec)
    return rec if order is None else {k: rec[k] for k in order}
