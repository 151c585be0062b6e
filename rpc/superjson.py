"""The superjson transformer, as tRPC clients use it (TRPC_WIRE.md §5).

`serialize` turns a Python value into ``{"json": ..., "meta"?: {"values": tree, "v": 1}}``
byte for byte as superjson 2.2.x would for the equivalent JS value (§5.2, §5.3), so a
``json.dumps(..., separators=(",", ":"))`` of it matches the observed wire examples.
`deserialize` reads what superjson 1.x and 2.x clients send (§5.4, §5.6): it applies
``meta.values`` and ignores ``referentialEqualities``.  Malformed or hostile input only
ever raises `SuperjsonError`, whose short message can be sent back as a 400.

Python mapping: None <-> null, `UNDEFINED` <-> undefined, datetime/date (and the store's
`UtcTimestamp`) -> Date (read back as an aware UTC datetime), set/frozenset -> Set (read
back as a list), a dict with any non-str key -> Map (read back as a dict when all keys are
str, else as [k, v] pairs), NaN/Infinity/-0.0 -> "number", Decimal -> float. Python ints are
sent as JSON numbers and never as bigint. JS lists integer-like object keys first: dicts
carrying annotations are reordered that way so the meta matches byte for byte; plain ones
keep their order (the parsed object is the same). `serialize` shares unchanged sub-trees
with its input, and `deserialize` rewrites the payload's "json" value in place.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from storage.timeutil import UtcTimestamp

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
    "timestamp_iso",
]


class _Undefined:
    """JS `undefined`: a falsy singleton, distinct from None (JS null)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        # copy/deepcopy/pickle hand back the module-level singleton, so `is` checks keep working.
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class SuperjsonError(ValueError):
    """A superjson payload (or a value to serialize) that cannot be handled."""


Tree = list[Any] | dict[str, Any]


class RawJSON:
    """JSON text that goes into the output verbatim: `serialize` passes it through unwalked
    and ``rpc.encoding.dumps`` splices it in. Only for strict JSON (no NaN or Infinity, which
    superjson would annotate) that the server wrote itself: a job's stored outputs would
    otherwise be decoded, walked and encoded again on every read (``rpc.vision``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJSON) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"RawJSON({self.text[:40]!r})"


class Encoded:
    """A value already in the form `serialize` would give it: ``json`` (JSON-ready: Dates as
    ISO strings, no undefined, no NaN/Infinity/-0.0) and the ``meta.values`` tree (None when
    nothing is annotated). A procedure whose result has a known shape builds it directly
    (``rpc.vision``: the Date fields of getJobStatus and getJobHistory) instead of having the
    whole output walked; the plain-JSON answer is ``json`` itself (``rpc.encoding.to_plain``).
    ``tree_json``, when given, is ``tree`` already as JSON text: `serialize` puts it in the
    meta of a payload that is this value alone (a procedure's result), sparing the encoder a
    tree it would write the same way every time; nested, the value's tree joins its parent's.
    """

    __slots__ = ("json", "tree", "tree_json")

    def __init__(
        self, json: object, tree: dict[str, Any] | None, tree_json: RawJSON | None = None
    ) -> None:
        self.json = json
        self.tree = tree
        self.tree_json = tree_json

    def __repr__(self) -> str:
        return f"Encoded({self.json!r}, {self.tree!r})"


DATE: Final = ["Date"]  # a Date's annotation (shared: it is only ever read and encoded)

# RawJSON is a leaf here: its text holds no annotated value.
_PLAIN: Final = frozenset((str, int, bool, type(None), RawJSON))
# Serializing recurses once per nesting level; the cap also turns a reference cycle into
# a clean error instead of a RecursionError.
_MAX_OUT_DEPTH: Final = 256
# Limits on client-supplied meta. Superjson itself has none, but each level of the values
# tree is one Python frame here, and every path is walked segment by segment.
_MAX_TREE_DEPTH: Final = 64
_MAX_PATH_SEGMENTS: Final = 256
_MAX_KEY_CHARS: Final = 4096
# superjson's accessDeep refuses these segments; mirroring it keeps behaviour identical.
_FORBIDDEN: Final = frozenset(("__proto__", "prototype", "constructor"))


def is_superjson(payload: object) -> bool:
    """True for the ``{"json": ..., "meta"?: ...}`` shape every superjson client sends."""
    return (
        isinstance(payload, dict)
        and "json" in payload
        and (len(payload) == 1 or (len(payload) == 2 and "meta" in payload))
    )


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


def timestamp_iso(ts: UtcTimestamp) -> str:
    """`iso` of a stored timestamp: its ISO text cut to milliseconds (truncated, as `iso`
    truncates), without a `datetime` in between."""
    return ts.iso[:23] + "Z"


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
    if t is UtcTimestamp:  # a Date too (the store's form of a time it only passes on)
        return timestamp_iso(v), ["Date"]  # type: ignore[arg-type]
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


# --- deserialize -------------------------------------------------------------------------

_LEAF_TYPES: Final = frozenset(
    ("undefined", "Date", "bigint", "number", "set", "map", "regexp", "URL", "Error")
)
_COMPOSITE_TYPES: Final = frozenset(("typed-array", "class", "symbol", "custom"))
_SPECIAL_NUMBERS: Final = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
    "-0": -0.0,
}
_NUMBER_RE: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_BIGINT_RE: Final = re.compile(r"-?[0-9]{1,4000}")
_V1_TOKENS: Final = re.compile(r"\\[\\.]|\.|[^\\.]+|\\")
_LEGACY_TOKENS: Final = re.compile(r"\\\.|\.|[^\\.]+|\\")
_SHAPES: Final = {"set": list, "typed-array": list, "regexp": str, "URL": str, "Error": dict}


def deserialize(payload: object) -> object:
    """Decode a ``{"json", "meta"?}`` payload. The ``json`` value is updated in place."""
    if not isinstance(payload, dict) or "json" not in payload:
        raise SuperjsonError('expected a superjson object with a "json" key')
    meta = payload.get("meta")
    if meta is None:
        return payload["json"]
    if not isinstance(meta, dict):
        raise SuperjsonError("superjson meta must be an object")
    tree = meta.get("values")
    if tree is None:
        return payload["json"]
    version = meta.get("v")
    if version is None:
        legacy = True  # superjson 1.x: only "\." is an escape
    elif type(version) in (int, float):
        legacy = not version >= 1
    else:
        raise SuperjsonError("superjson meta.v must be a number")
    box = [payload["json"]]  # the root lives in a box so it can be replaced like a child
    _traverse(box, tree, [], legacy, 0)
    return box[0]


def _traverse(box: list[Any], tree: object, origin: list[str], legacy: bool, depth: int) -> None:
    if depth > _MAX_TREE_DEPTH:
        raise SuperjsonError("superjson meta is nested too deeply")
    if isinstance(tree, dict):
        for key, sub in tree.items():
            _traverse(box, sub, _extend(origin, key, legacy), legacy, depth + 1)
        return
    if not isinstance(tree, list) or not 1 <= len(tree) <= 2:
        raise SuperjsonError("malformed superjson meta.values")
    kind, arg = _annotation(tree[0])
    children = tree[1] if len(tree) == 2 else None
    if children is not None:
        if not isinstance(children, dict):
            raise SuperjsonError("malformed superjson meta.values")
        # Children first: e.g. a Map's values become datetimes while it is still a pair list.
        for key, sub in children.items():
            _traverse(box, sub, _extend(origin, key, legacy), legacy, depth + 1)
    _apply(box, origin, kind, arg)


def _annotation(ann: object) -> tuple[str, str | None]:
    # isinstance checks come before the set lookups: a hostile list element is unhashable.
    if isinstance(ann, str) and ann in _LEAF_TYPES:
        return ann, None
    if isinstance(ann, list) and len(ann) == 2 and isinstance(ann[1], str):
        kind = ann[0]
        if isinstance(kind, str) and kind in _COMPOSITE_TYPES:
            return kind, ann[1]
    if isinstance(ann, str) and len(ann) <= 40:
        raise SuperjsonError(f"unknown superjson type {ann!r}")
    raise SuperjsonError("unknown superjson type annotation")


def _extend(origin: list[str], key: object, legacy: bool) -> list[str]:
    if not isinstance(key, str):
        raise SuperjsonError("superjson meta paths must be strings")
    if len(key) > _MAX_KEY_CHARS:
        raise SuperjsonError("superjson meta path is too long")
    segments = key.split(".") if "\\" not in key else _parse_escaped(key, legacy)
    path = origin + segments
    if len(path) > _MAX_PATH_SEGMENTS:
        raise SuperjsonError("superjson meta path is too long")
    for seg in segments:
        if seg in _FORBIDDEN:
            raise SuperjsonError(f"{seg} is not allowed in a superjson path")
    return path


def _parse_escaped(key: str, legacy: bool) -> list[str]:
    # superjson pathstringifier.ts `parsePath`: "\." is always a literal dot; "\\" is a
    # literal backslash only from v1 on, where any other backslash is an invalid path.
    # In legacy mode a stray backslash is just a character.
    segments: list[str] = []
    buf: list[str] = []
    for tok in (_LEGACY_TOKENS if legacy else _V1_TOKENS).findall(key):
        if tok == ".":
            segments.append("".join(buf))
            buf = []
        elif tok == "\\" and not legacy:
            raise SuperjsonError("invalid escape in superjson path")
        else:
            buf.append(tok[1] if len(tok) == 2 and tok[0] == "\\" else tok)
    segments.append("".join(buf))
    return segments


def _missing(path: list[str]) -> SuperjsonError:
    shown = ".".join(path)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return SuperjsonError(f"superjson meta path {shown!r} does not exist")


def _key(parent: object, seg: str, path: list[str]) -> Any:
    # The dict key or list index `seg` names in `parent`, if it exists there.
    if isinstance(parent, dict):
        if seg in parent:
            return seg
    elif isinstance(parent, list):
        if seg.isascii() and seg.isdigit() and len(seg) <= 9 and int(seg) < len(parent):
            return int(seg)
    raise _missing(path)


def _apply(box: list[Any], path: list[str], kind: str, arg: str | None) -> None:
    if not path:
        box[0] = UNDEFINED if kind == "undefined" else _untransform(box[0], kind, arg)
        return
    parent = box[0]
    for seg in path[:-1]:
        parent = parent[_key(parent, seg, path)]
    key = _key(parent, path[-1], path)
    if kind != "undefined":
        parent[key] = _untransform(parent[key], kind, arg)
    elif isinstance(parent, dict):
        del parent[key]  # an undefined property is an absent one
    else:
        parent[key] = None


def _untransform(v: object, kind: str, arg: str | None) -> object:
    if kind == "Date":
        if not isinstance(v, str) or len(v) > 40:
            raise SuperjsonError("invalid Date in superjson payload")
        try:
            dt = datetime.fromisoformat(v)
            return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        except (ValueError, OverflowError):
            raise SuperjsonError("invalid Date in superjson payload") from None
    if kind == "bigint":
        if type(v) is int:
            return v
        if isinstance(v, str) and _BIGINT_RE.fullmatch(v):
            return int(v)
        raise SuperjsonError("invalid bigint in superjson payload")
    if kind == "number":
        if isinstance(v, str):
            special = _SPECIAL_NUMBERS.get(v)
            if special is not None:
                return special
            if len(v) <= 400 and _NUMBER_RE.fullmatch(v):
                return float(v)
        elif type(v) in (int, float):
            return float(v)  # type: ignore[arg-type]
        raise SuperjsonError("invalid number in superjson payload")
    if kind == "map":
        if not isinstance(v, list) or not all(isinstance(p, list) and len(p) == 2 for p in v):
            raise SuperjsonError("invalid Map in superjson payload")
        if all(isinstance(p[0], str) for p in v):
            return {p[0]: p[1] for p in v}
        return v
    expected = _SHAPES.get(kind)
    if expected is not None and not isinstance(v, expected):
        raise SuperjsonError(f"invalid {arg or kind} in superjson payload")
    return v  # set/typed-array stay lists, regexp/URL strings, Error a dict; class/... as is
