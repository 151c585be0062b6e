"""The one cookie reader of the server, linear in the header's length (issue 13 item 1).

What this module promises:

- ``parse_cookies(values)`` reads ``Cookie`` header values (several headers, as HTTP/2 may
  split one, are read as one joined with ``; ``) as browsers send them and Starlette's
  ``cookie_parser`` reads them: pairs split on ``;``, the first ``=`` separates name from
  value, both stripped of whitespace; a pair without ``=`` is a value with an empty name; a
  value in double quotes loses them, its ``\\"``, ``\\\\`` and ``\\ooo`` (octal) escapes
  decoded as ``http.cookies`` decodes them. A name given twice keeps its first value, as the
  template's ``cookie.parse`` does (browsers send the most specific cookie first).
- The cost is one pass over the text: the escapes go through a single compiled regex
  substitution. ``http.cookies`` (whose unquoting is quadratic before Python 3.11.10,
  CVE-2024-7592) is not used anywhere in the server; ``rpc.app`` caps the header at
  ``MAX_COOKIE_BYTES`` before anything reads it.
- ``read_cookie(scope, name)`` is the value of one cookie of a request, or None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import Scope

# Over this, summed over a request's Cookie headers, every path answers 431 (rpc.app).
MAX_COOKIE_BYTES = 8192

# http.cookies' own escape pattern (its linear form, Python >= 3.11.10): \ooo or \<char>.
_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))")


def _unescape(match: re.Match[str]) -> str:
    octal = match[1]
    return chr(int(octal, 8)) if octal else match[2]


def unquote(value: str) -> str:
    """A cookie value without its double quotes and escapes; any other value as it is."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    inner = value[1:-1]
    if "\\" not in inner:
        return inner
    return _ESCAPE.sub(_unescape, inner)


def parse_cookies(values: Iterable[str | bytes]) -> dict[str, str]:
    """name -> value of the cookies in these ``Cookie`` header values (see the docstring)."""
    text = "; ".join(v.decode("latin-1") if isinstance(v, bytes) else v for v in values)
    cookies: dict[str, str] = {}
    for pair in text.split(";"):
        name, sep, value = pair.partition("=")
        if not sep:  # a bare value: an empty name (browsers send `document.cookie = "x"` so)
            name, value = "", name
        name, value = name.strip(), value.strip()
        if (name or value) and name not in cookies:
            cookies[name] = unquote(value)
    return cookies


def cookie_headers(scope: Scope) -> list[bytes]:
    """The raw values of a request's ``Cookie`` headers (ASGI names are lowercase)."""
    return [value for name, value in scope["headers"] if name == b"cookie"]


def read_cookie(scope: Scope, name: str) -> str | None:
    """The value of the cookie ``name`` in this request, or None."""
    values = cookie_headers(scope)
    if not values:
        return None
    return parse_cookies(values).get(name)
