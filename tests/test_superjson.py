"""Tests for rpc/superjson.py against the observed wire examples of TRPC_WIRE.md §5."""

from __future__ import annotations

import copy
import json
import math
import subprocess
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpc.wire.superjson import (
    UNDEFINED,
    SuperjsonError,
    deserialize,
    is_superjson,
    serialize,
)
from tests.support import CLIENT_DIR, install_client


def ms(n: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=n)


EPOCH = ms(0)


def wire(value: object) -> str:
    return json.dumps(serialize(value), separators=(",", ":"))


def decode(text: str) -> object:
    return deserialize(json.loads(text))


# --- §5.3 / §5.4 / §6 observed outputs, byte for byte ---------------------------------

OBSERVED: list[tuple[object, str]] = [
    (
        {"a": {"b": {"c": EPOCH}}, "list": [{"d": EPOCH}, {"d": None}]},
        '{"json":{"a":{"b":{"c":"1970-01-01T00:00:00.000Z"}},"list":[{"d":"1970-01-01T00:00:00.000Z"},{"d":null}]},"meta":{"values":{"a.b.c":["Date"],"list.0.d":["Date"]},"v":1}}',
    ),
    (
        # A dict with a non-str key is a Map (the Python spelling of Map{"x"→…, Date→1}).
        {"m": {"x": {"when": EPOCH}, EPOCH: 1}},
        '{"json":{"m":[["x",{"when":"1970-01-01T00:00:00.000Z"}],["1970-01-01T00:00:00.000Z",1]]},"meta":{"values":{"m":["map",{"0.1.when":["Date"],"1.0":["Date"]}]},"v":1}}',
    ),
    (
        {EPOCH},
        '{"json":["1970-01-01T00:00:00.000Z"],"meta":{"values":["set",{"0":["Date"]}],"v":1}}',
    ),
    (EPOCH, '{"json":"1970-01-01T00:00:00.000Z","meta":{"values":["Date"],"v":1}}'),
    ([UNDEFINED], '{"json":[null],"meta":{"values":{"0":["undefined"]},"v":1}}'),
    (
        {"a.b": EPOCH},
        '{"json":{"a.b":"1970-01-01T00:00:00.000Z"},"meta":{"values":{"a\\\\.b":["Date"]},"v":1}}',
    ),
    (
        {"x": math.nan, "y": math.inf, "z": -0.0},
        '{"json":{"x":"NaN","y":"Infinity","z":"-0"},"meta":{"values":{"x":["number"],"y":["number"],"z":["number"]},"v":1}}',
    ),
    # §5.4 procedure outputs
    ({"id": 1, "deletedAt": None}, '{"json":{"id":1,"deletedAt":null}}'),
    (
        {"id": 1, "deletedAt": UNDEFINED},
        '{"json":{"id":1,"deletedAt":null},"meta":{"values":{"deletedAt":["undefined"]},"v":1}}',
    ),
    (None, '{"json":null}'),
    (UNDEFINED, '{"json":null,"meta":{"values":["undefined"],"v":1}}'),
    (
        {
            "id": 1,
            "openId": "abc",
            "name": "N",
            "email": None,
            "loginMethod": "google",
            "role": "user",
            "createdAt": ms(0),
            "updatedAt": ms(1000),
            "lastSignedIn": ms(2000),
        },
        '{"json":{"id":1,"openId":"abc","name":"N","email":null,"loginMethod":"google","role":"user","createdAt":"1970-01-01T00:00:00.000Z","updatedAt":"1970-01-01T00:00:01.000Z","lastSignedIn":"1970-01-01T00:00:02.000Z"},"meta":{"values":{"createdAt":["Date"],"updatedAt":["Date"],"lastSignedIn":["Date"]},"v":1}}',
    ),
    # §5.4 client inputs (superjson 2.2.7 produced them; we must produce the same)
    (ms(5), '{"json":"1970-01-01T00:00:00.005Z","meta":{"values":["Date"],"v":1}}'),
    (
        {"d": ms(5), "u": UNDEFINED, "n": None},
        '{"json":{"d":"1970-01-01T00:00:00.005Z","u":null,"n":null},"meta":{"values":{"d":["Date"],"u":["undefined"]},"v":1}}',
    ),
    ({"title": "abc", "n": 1}, '{"json":{"title":"abc","n":1}}'),
    # §5.2 no-meta forms, §6.2 JSONL chunk line
    ({"a": 1}, '{"json":{"a":1}}'),
    ({}, '{"json":{}}'),
    (
        [5, 0, [[EPOCH]]],
        '{"json":[5,0,[["1970-01-01T00:00:00.000Z"]]],"meta":{"values":{"2.0.0":["Date"]},"v":1}}',
    ),
]


@pytest.mark.parametrize(("value", "expected"), OBSERVED)
def test_observed_examples_serialize_byte_for_byte(value: object, expected: str) -> None:
    assert wire(value) == expected


@pytest.mark.parametrize(("value", "expected"), OBSERVED)
def test_observed_examples_decode(value: object, expected: str) -> None:
    got = decode(expected)
    if isinstance(value, set):
        assert got == list(value)  # a Set comes back as a list
    elif isinstance(value, dict) and "m" in value:
        assert got == {"m": [["x", {"when": EPOCH}], [EPOCH, 1]]}  # non-str key: pairs
    elif value is UNDEFINED:
        assert got is UNDEFINED
    elif value == [UNDEFINED]:
        assert got == [None]
    elif isinstance(value, dict) and "x" in value:
        assert isinstance(got, dict)
        assert math.isnan(got["x"]) and got["y"] == math.inf
        assert got["z"] == 0.0 and math.copysign(1.0, got["z"]) < 0
    elif isinstance(value, dict):
        assert got == {k: v for k, v in value.items() if v is not UNDEFINED}
    else:
        assert got == value


def test_jsonl_head_with_undefined_data() -> None:
    # §6.2 head object; the elided error shape is replaced by a concrete one.
    err = {"error": {"message": "x", "code": -32004}}
    head = {
        "0": [
            [{"result": {"data": {"createdAt": EPOCH, "n": None, "u": UNDEFINED, "path": "good"}}}]
        ],
        "1": [[err]],
        "2": [[{"result": {"data": UNDEFINED}}]],
    }
    assert wire(head) == (
        '{"json":{"0":[[{"result":{"data":{"createdAt":"1970-01-01T00:00:00.000Z","n":null,'
        '"u":null,"path":"good"}}}]],"1":[[{"error":{"message":"x","code":-32004}}]],'
        '"2":[[{"result":{"data":null}}]]},"meta":{"values":{"0.0.0.result.data.createdAt":'
        '["Date"],"0.0.0.result.data.u":["undefined"],"2.0.0.result.data":["undefined"]},"v":1}}'
    )


def test_mixed_response_example_decodes() -> None:
    data = (
        '{"json":{"createdAt":"1970-01-01T00:00:00.000Z","note":null,"missing":null,"big":"10",'
        '"m":[["k","1970-01-01T00:00:00.000Z"]],"s":[1,2],"a.b":null,"nan":"NaN"},"meta":'
        '{"values":{"createdAt":["Date"],"missing":["undefined"],"big":["bigint"],"m":["map",'
        '{"0.1":["Date"]}],"s":["set"],"a\\\\.b":["undefined"],"nan":["number"]},"v":1}}'
    )
    got = decode(data)
    assert isinstance(got, dict)
    assert math.isnan(got.pop("nan"))
    assert got == {"createdAt": EPOCH, "note": None, "big": 10, "m": {"k": EPOCH}, "s": [1, 2]}


# --- §5.4 client inputs -------------------------------------------------------------


@pytest.mark.parametrize("v", ["", ',"v":1'])
def test_decode_client_inputs(v: str) -> None:
    # superjson 1.13.3 sends the same bytes minus ,"v":1 (the V placeholder)
    def dec(text: str) -> object:
        return decode(text.replace("V", v))

    assert dec('{"json":"1970-01-01T00:00:00.005Z","meta":{"values":["Date"]V}}') == ms(5)
    got = dec(
        '{"json":{"d":"1970-01-01T00:00:00.005Z","u":null,"n":null},'
        '"meta":{"values":{"d":["Date"],"u":["undefined"]}V}}'
    )
    assert got == {"d": ms(5), "n": None}  # undefined key dropped, null kept
    assert dec('{"json":null,"meta":{"values":["undefined"]V}}') is UNDEFINED


def test_null_and_plain_inputs() -> None:
    assert decode('{"json":null}') is None
    assert decode('{"json":{"title":"abc","n":1}}') == {"title": "abc", "n": 1}
    assert decode('{"json":{"a":1},"meta":{"referentialEqualities":{"a":["b"]},"v":1}}') == {"a": 1}
    assert deserialize({"json": [1], "meta": None}) == [1]


def test_decoded_datetimes_are_aware_utc() -> None:
    got = decode('{"json":"2024-05-06T07:08:09.123+02:00","meta":{"values":["Date"]}}')
    assert got == datetime(2024, 5, 6, 5, 8, 9, 123000, tzinfo=UTC)
    assert isinstance(got, datetime) and got.tzinfo is UTC


# --- path escaping ----------------------------------------------------------------------


def test_dotted_key_both_versions() -> None:
    text = '{"json":{"a.b":"1970-01-01T00:00:00.000Z"},"meta":{"values":{"a\\\\.b":["Date"]}V}}'
    for v in ("", ',"v":1'):
        assert decode(text.replace("V", v)) == {"a.b": EPOCH}


def test_backslash_key_v1_vs_legacy() -> None:
    value = {"a\\b": EPOCH}  # key is a, backslash, b
    out = serialize(value)
    assert out["meta"] == {"values": {"a\\\\b": ["Date"]}, "v": 1}
    assert deserialize(json.loads(json.dumps(out))) == value
    # superjson 1.x leaves the backslash alone and sends no "v": legacy parsing keeps it.
    assert (
        deserialize(
            {"json": {"a\\b": "1970-01-01T00:00:00.000Z"}, "meta": {"values": {"a\\b": ["Date"]}}}
        )
        == value
    )
    # The same v1 path read as legacy names the key a, backslash, backslash, b.
    legacy = {
        "json": {"a\\b": "1970-01-01T00:00:00.000Z"},
        "meta": {"values": {"a\\\\b": ["Date"]}},
    }
    with pytest.raises(SuperjsonError):
        deserialize(legacy)
    # From v1 on, a backslash must start an escape.
    bad = {"json": {"a\\b": "x"}, "meta": {"values": {"a\\b": ["Date"]}, "v": 1}}
    with pytest.raises(SuperjsonError):
        deserialize(bad)


def test_escaped_dot_then_real_dot() -> None:
    value = {"x.y": {"z\\.": [EPOCH]}}
    out = serialize(value)
    assert out["meta"] == {"values": {"x\\.y.z\\\\\\..0": ["Date"]}, "v": 1}
    assert deserialize(out) == value


# --- Map / Set ------------------------------------------------------------------------


def test_map_and_set_decode() -> None:
    got = decode(
        '{"json":{"m":[["a",1],["b","1970-01-01T00:00:00.000Z"]],"n":[[1,"x"]],"e":[],'
        '"s":[["1970-01-01T00:00:00.000Z"],[3]]},"meta":{"values":{"m":["map",{"1.1":["Date"]}],'
        '"n":["map"],"e":["map"],"s":["set",{"0":["set",{"0":["Date"]}]}]},"v":1}}'
    )
    assert got == {"m": {"a": 1, "b": EPOCH}, "n": [[1, "x"]], "e": {}, "s": [[EPOCH], [3]]}


def test_other_annotations_decode() -> None:
    got = decode(
        '{"json":{"b":"-18446744073709551616","r":"/ab+c/gi","u":"http://a/b",'
        '"e":{"name":"Error","message":"e"},"t":[1,2],"c":{"k":1},"f":"1.5","l":[null]},'
        '"meta":{"values":{"b":["bigint"],'
        '"r":["regexp"],"u":["URL"],"e":["Error"],"t":[["typed-array","Uint8Array"]],'
        '"c":[["class","Foo"],{"k":["number"]}],"f":["number"],"l.0":["undefined"]},"v":1}}'
    )
    assert got == {
        "b": -18446744073709551616,
        "r": "/ab+c/gi",
        "u": "http://a/b",
        "e": {"name": "Error", "message": "e"},
        "t": [1, 2],
        "c": {"k": 1.0},
        "f": 1.5,
        "l": [None],
    }


# --- serialize details ------------------------------------------------------------------


def test_serialize_python_types() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5, 678999)
    east = datetime(2024, 1, 2, 5, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    assert serialize([naive, east, date(2024, 1, 2)]) == {
        "json": [
            "2024-01-02T03:04:05.678Z",
            "2024-01-02T03:04:05.678Z",
            "2024-01-02T00:00:00.000Z",
        ],
        "meta": {"values": {"0": ["Date"], "1": ["Date"], "2": ["Date"]}, "v": 1},
    }
    assert wire(frozenset()) == '{"json":[],"meta":{"values":["set"],"v":1}}'
    assert wire({"s": {1}}) == '{"json":{"s":[1]},"meta":{"values":{"s":["set"]},"v":1}}'
    assert (
        wire((1, (2, "x"), Decimal("1.5"), 0.0, 0, True)) == '{"json":[1,[2,"x"],1.5,0.0,0,true]}'
    )
    assert (
        wire({"n": Decimal("-Infinity")})
        == '{"json":{"n":"-Infinity"},"meta":{"values":{"n":["number"]},"v":1}}'
    )
    assert wire({1: "a"}) == '{"json":[[1,"a"]],"meta":{"values":["map"],"v":1}}'


def test_serialize_does_not_mutate_input() -> None:
    value = {"a": [{"d": EPOCH, "s": {2}}], "b": {"c": UNDEFINED}, "p": [1, {"q": "r"}]}
    before = copy.deepcopy(value)
    out = serialize(value)
    assert value == before
    assert out["json"] == {
        "a": [{"d": "1970-01-01T00:00:00.000Z", "s": [2]}],
        "b": {"c": None},
        "p": [1, {"q": "r"}],
    }


def test_serialize_errors() -> None:
    with pytest.raises(TypeError):
        serialize({"x": object()})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(SuperjsonError):
        serialize(loop)


def test_undefined_and_is_superjson() -> None:
    assert not UNDEFINED and repr(UNDEFINED) == "UNDEFINED"
    assert copy.deepcopy(UNDEFINED) is UNDEFINED
    assert is_superjson({"json": None}) and is_superjson({"json": 1, "meta": {}})
    assert not is_superjson({"json": 1, "x": 2})
    assert not is_superjson({"meta": {}})
    assert not is_superjson([("json", 1)])
    assert not is_superjson({"name": "bob"})


# --- hostile input ----------------------------------------------------------------------


def _deep_values(levels: int) -> dict[str, Any]:
    tree: Any = ["Date"]
    for _ in range(levels):
        tree = ["set", {"0": tree}]
    return {"json": None, "meta": {"values": tree, "v": 1}}


HOSTILE: list[object] = [
    None,
    [],
    "json",
    {"meta": {}},
    {"json": 1, "meta": []},
    {"json": 1, "meta": "x"},
    {"json": 1, "meta": {"values": "x"}},
    {"json": 1, "meta": {"values": 5}},
    {"json": 1, "meta": {"values": []}},
    {"json": 1, "meta": {"values": [1]}},
    {"json": 1, "meta": {"values": ["Date", "x"]}},
    {"json": 1, "meta": {"values": ["Date", {}, 3]}},
    {"json": 1, "meta": {"values": ["Foo"]}},
    {"json": 1, "meta": {"values": [["class", 5]]}},
    {"json": 1, "meta": {"values": [["nope", "x"]]}},
    {"json": 1, "meta": {"values": [{"a": 1}]}},
    {"json": "abc", "meta": {"values": {"0": ["Date"]}}},
    {"json": "abc", "meta": {"values": {"0.1": ["Date"]}}},
    {"json": [1], "meta": {"values": {"5": ["Date"]}}},
    {"json": [1], "meta": {"values": {"-1": ["Date"]}}},
    {"json": [1], "meta": {"values": {"x": ["Date"]}}},
    {"json": [1], "meta": {"values": {"": ["Date"]}}},
    {"json": [1], "meta": {"values": {"0": ["Date"]}}},
    {"json": [[1]], "meta": {"values": {"0.99999999999": ["Date"]}}},
    {"json": {"a": 1}, "meta": {"values": {"b": ["Date"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a.b.c": ["Date"]}}},
    {"json": {"__proto__": "x"}, "meta": {"values": {"__proto__": ["Date"]}}},
    {"json": {"constructor": {}}, "meta": {"values": {"constructor.a": ["Date"]}}},
    {"json": {}, "meta": {"values": {"prototype": ["undefined"]}}},
    {"json": {"a": 1}, "meta": {"values": {1: ["Date"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["Date"]}, "v": "1"}},
    {"json": {"a": 1}, "meta": {"values": {"a": ["Date"]}, "v": [1]}},
    {"json": "not a date", "meta": {"values": ["Date"]}},
    {"json": "275760-09-13T00:00:00.000Z", "meta": {"values": ["Date"]}},
    {"json": "+275760-09-13T00:00:00.000Z", "meta": {"values": ["Date"]}},
    {"json": "0001-01-01T00:00:00+01:00", "meta": {"values": ["Date"]}},
    {"json": 5, "meta": {"values": ["Date"]}},
    {"json": "1.5", "meta": {"values": ["bigint"]}},
    {"json": "1_000", "meta": {"values": ["bigint"]}},
    {"json": "9" * 5000, "meta": {"values": ["bigint"]}},
    {"json": "abc", "meta": {"values": ["number"]}},
    {"json": "inf", "meta": {"values": ["number"]}},
    {"json": None, "meta": {"values": ["number"]}},
    {"json": [[1, 2, 3]], "meta": {"values": ["map"]}},
    {"json": {"a": 1}, "meta": {"values": ["map"]}},
    {"json": "x", "meta": {"values": ["set"]}},
    {"json": "x", "meta": {"values": [["typed-array", "Uint8Array"]]}},
    {"json": 1, "meta": {"values": ["regexp"]}},
    {"json": [], "meta": {"values": ["Error"]}},
    {"json": {"a": None}, "meta": {"values": {"a": ["undefined"], "a.b": ["Date"]}}},
    {"json": {"a": 1}, "meta": {"values": {"a" * 5000: ["Date"]}}},
    {"json": {}, "meta": {"values": {".".join(["a"] * 300): ["Date"]}}},
    _deep_values(10_000),
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_payloads_raise_superjson_error(payload: object) -> None:
    with pytest.raises(SuperjsonError) as info:
        deserialize(payload)
    assert 0 < len(str(info.value)) <= 120


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values, st.one_of(st.none(), st.integers(), st.just(1)))
def test_fuzzed_payloads_only_raise_superjson_error(body: Any, meta: Any, v: Any) -> None:
    for m in (meta, {"values": meta, "v": v}, {"values": {"0": meta}}, {"values": [meta]}):
        try:
            deserialize({"json": copy.deepcopy(body), "meta": m})
        except SuperjsonError:
            pass


# --- round trip property ----------------------------------------------------------------

keys = st.text(alphabet=st.sampled_from("ab.\\0_é"), max_size=6).filter(
    lambda k: k not in ("__proto__", "prototype", "constructor")
)
ms_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ms_datetimes,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(plain_values)
def test_round_trip(value: object) -> None:
    assert deserialize(json.loads(json.dumps(serialize(value)))) == value


# --- cross-check against the real superjson 2.2.7 (tests/client/node_modules) ----------

CROSS_CASES: list[tuple[str, object]] = [
    ("[{d: new Date(0)}, new Date(1)]", [{"d": EPOCH}, ms(1)]),  # "1" sorts before "0.d"
    (
        "({b: new Date(0), 10: {x: new Date(1)}, 2: undefined})",
        {"b": EPOCH, "10": {"x": ms(1)}, "2": UNDEFINED},
    ),
    ("new Set([new Date(2)])", {ms(2)}),
    ("new Map([[1, {a: [new Date(3)]}]])", {1: {"a": [ms(3)]}}),
    ("({'\\\\a.b': [NaN, -0, 1]})", {"\\a.b": [math.nan, -0.0, 1]}),
    ("[[undefined], {k: null}]", [[UNDEFINED], {"k": None}]),
]


@pytest.mark.node
def test_matches_real_superjson_2() -> None:
    install_client()
    script = (
        "const S = require('superjson2'); const S2 = S.default ?? S;"
        f"for (const v of [{','.join(js for js, _ in CROSS_CASES)}])"
        " console.log(JSON.stringify(S2.serialize(v)));"
    )
    proc = subprocess.run(
        ["node", "-e", script], cwd=CLIENT_DIR, capture_output=True, text=True, check=True
    )
    expected = proc.stdout.splitlines()
    assert [wire(value) for _, value in CROSS_CASES] == expected
