"""The one cookie reader (issue 13 item 1, ``rpc.cookies``): browsers' and Starlette's
semantics, linear on the hostile quoted values that stall ``http.cookies`` (CVE-2024-7592)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import cookie_parser

from rpc.auth.cookies import parse_cookies, read_cookie, unquote


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("  a = 1 ;b=2  ;", {"a": "1", "b": "2"}),
        ("token=eyJ.x.y==; c=d", {"token": "eyJ.x.y==", "c": "d"}),  # the first "=" separates
        ("flag; a=1", {"": "flag", "a": "1"}),  # a bare value has an empty name
        ("a=1;; ;", {"a": "1"}),
        ("a=", {"a": ""}),
        ("=v", {"": "v"}),
        ("a=x y", {"a": "x y"}),
        ('a="x y"', {"a": "x y"}),
        ('a="x; b=y"', {"a": '"x', "b": 'y"'}),  # ";" always splits, quotes or not
        ('a=""', {"a": ""}),
        ('a="', {"a": '"'}),
        ('a="x', {"a": '"x'}),
        ('a=x"', {"a": 'x"'}),
        ('a="x\\"y"', {"a": 'x"y'}),
        ('a="\\\\"', {"a": "\\"}),
        ('a="\\012\\101"', {"a": "\nA"}),  # octal escapes
        ('a="\\400\\q"', {"a": "400q"}),  # not octal: the backslash alone goes
        ("a=\\012", {"a": "\\012"}),  # unquoted values are left alone
        ("a=1; a=2", {"a": "1"}),  # the first wins, as the template's cookie.parse
        ("caf\xe9=cr\xe8me", {"caf\xe9": "cr\xe8me"}),
    ],
)
def test_the_reader_reads_as_browsers_send(header: str, expected: dict[str, str]) -> None:
    assert parse_cookies([header]) == expected


def test_several_headers_are_one_list_and_bytes_are_latin_1() -> None:
    assert parse_cookies([b"a=1; b=2", b"c=\xe9"]) == {"a": "1", "b": "2", "c": "\xe9"}
    assert parse_cookies(["a=1", "a=2; b=3"]) == {"a": "1", "b": "3"}
    assert parse_cookies([]) == {}


def test_read_cookie_reads_every_cookie_header_of_a_scope() -> None:
    scope = {"headers": [(b"host", b"x"), (b"cookie", b"a=1"), (b"cookie", b"s=tok")]}
    assert read_cookie(scope, "s") == "tok" and read_cookie(scope, "a") == "1"
    assert read_cookie(scope, "nope") is None
    assert read_cookie({"headers": []}, "s") is None


_PIECES = st.sampled_from(["a", "b", "=", ";", " ", '"', "\\", "0", "1", "7", "\\0", "x"])


@settings(max_examples=400, deadline=None, database=None)
@given(text=st.lists(_PIECES, max_size=30).map("".join))
def test_each_pair_reads_as_starlettes_cookie_parser(text: str) -> None:
    # Starlette's parser (http.cookies' unquoting) is the reference, pair by pair; a repeated
    # name keeps its first value here.
    expected: dict[str, str] = {}
    for pair in text.split(";"):
        for name, value in cookie_parser(pair).items():
            expected.setdefault(name, value)
    assert parse_cookies([text]) == expected


def test_a_megabyte_of_backslashes_is_read_in_one_pass() -> None:
    # http.cookies takes minutes on this before Python 3.11.10; the reader makes one pass.
    value = "\\" * 1_000_000
    assert unquote(f'"{value}"') == "\\" * 500_000
    cookies = parse_cookies([f'a="{value}"; app_session_id=tok'])
    assert cookies == {"a": "\\" * 500_000, "app_session_id": "tok"}
    assert unquote('"' + '\\"' * 300_000 + '"') == '"' * 300_000
    assert unquote('"' + "\\101" * 300_000 + '"') == "A" * 300_000
