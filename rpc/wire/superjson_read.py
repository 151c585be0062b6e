"""superjson's reading side (TRPC_WIRE §5.4, §5.6): `deserialize` applies ``meta.values`` to a
payload superjson 1.x or 2.x sent; malformed or hostile input only raises `SuperjsonError`."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final

from rpc.wire.values import UNDEFINED, SuperjsonError

# Limits on client-supplied meta. Superjson itself has none, but each level of the values
# tree is one Python frame here, and every path is walked segment by segment.
_MAX_TREE_DEPTH: Final = 64
_MAX_PATH_SEGMENTS: Final = 256
_MAX_KEY_CHARS: Final = 4096
# superjson's accessDeep refuses these segments; mirroring it keeps behaviour identical.
_FORBIDDEN: Final = frozenset(("__proto__", "prototype", "constructor"))

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
