"""The values the superjson transformer and the JSON encoder share: JS ``undefined``, JSON
text spliced verbatim (`RawJSON`), a value already in superjson's form (`Encoded`), the Date
annotation, and the error of a payload that cannot be handled."""

from __future__ import annotations

from typing import Any, Final


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
    and ``rpc.wire.encoding.dumps`` splices it in. Only for strict JSON (no NaN or Infinity,
    which superjson would annotate) that the server wrote itself: a job's stored outputs would
    otherwise be decoded, walked and encoded again on every read
    (``rpc.procedures.job_payloads``)."""

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
    (``rpc.procedures.job_payloads``: the Date fields of getJobStatus and getJobHistory)
    instead of having the whole output walked; the plain-JSON answer is ``json`` itself
    (``rpc.wire.encoding.to_plain``).
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


def is_superjson(payload: object) -> bool:
    """True for the ``{"json": ..., "meta"?: ...}`` shape every superjson client sends."""
    return (
        isinstance(payload, dict)
        and "json" in payload
        and (len(payload) == 1 or (len(payload) == 2 and "meta" in payload))
    )
