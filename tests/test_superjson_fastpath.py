"""The hot path's shortcuts give what the generic path gives.

- `RawJSON` (a stored output spliced in verbatim) reads back as the same values as the output
  decoded and walked, and as the same bytes when the stored text is compact.
- `Encoded` (getJobStatus's and getJobHistory's superjson meta built directly) is byte for
  byte what `serialize` and `to_plain` make of the same payload with datetimes in it.
- `iso` is JS ``toISOString()``; `as_datetime`'s fast parse equals the general one.
- `UtcTimestamp` (the store's text form of a history row's times) is the same instant as
  `as_datetime` reads, and goes out as the same Date.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpc.procedures import job_payloads as vision
from rpc.wire import encoding
from rpc.wire.encoding import dumps, to_plain
from rpc.wire.superjson import UNDEFINED, Encoded, RawJSON, iso, serialize
from storage.records import JobStatusRecord, JobSummary
from storage.timeutil import (
    UtcTimestamp,
    as_datetime,
    as_timestamp,
    stored_timestamp,
    to_sqlite,
)

# Values a stored output can hold that superjson leaves alone: no NaN/Infinity (they are not
# strict JSON) and no -0.0 (superjson annotates it; JSON.parse reads it back the same anyway).
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != 0 or f.hex()[0] != "-"),
    st.text(max_size=12),
)
json_values = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
FORMATS: list[dict[str, Any]] = [
    {"separators": (",", ":"), "ensure_ascii": False},  # what pydantic's model_dump_json writes
    {},  # json.dumps's defaults (pipeline.stages.pieces_json, older rows)
    {"indent": 2},
]
aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
OFFSETS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
any_tz = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(OFFSETS),
)


def wire(value: object, sj: bool) -> bytes:
    return dumps(serialize(value) if sj else to_plain(value))


# --- RawJSON ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(range(len(FORMATS))), aware, st.booleans())
def test_a_spliced_output_reads_as_the_decoded_one(
    value: Any, fmt: int, when: datetime, sj: bool
) -> None:
    text = json.dumps(value, **FORMATS[fmt])
    spliced = {"a": RawJSON(text), "when": when, "list": [RawJSON(text), UNDEFINED]}
    decoded = {"a": json.loads(text), "when": when, "list": [json.loads(text), UNDEFINED]}
    got, expected = wire(spliced, sj), wire(decoded, sj)
    assert json.loads(got) == json.loads(expected)
    if fmt == 0:
        assert got == expected


def test_a_string_spelling_the_marker_takes_the_exact_path() -> None:
    value = {"s": encoding._MARK, "r": RawJSON('{"k": [1, 2]}'), "t": [encoding._MARK]}
    expected = dumps({"s": encoding._MARK, "r": {"k": [1, 2]}, "t": [encoding._MARK]})
    assert dumps(value) == expected


def test_unserializable_values_still_raise() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"x": object()})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ('{"a": [1, "x"]}', RawJSON('{"a": [1, "x"]}')),
        ("null", RawJSON("null")),
        ("not json", None),  # as before: what cannot be read goes out as null
        ('{"a": 1', None),
        ("[NaN, 1]", "decoded"),  # superjson annotates NaN: the generic path
        ('{"x": 1e999}', "decoded"),
        ('{"x": -Infinity}', "decoded"),
    ],
)
def test_stored_outputs(text: str | None, expected: object) -> None:
    got = vision._output(text)
    if expected == "decoded":
        assert type(got) is not RawJSON and wire(got, True) == wire(json.loads(text or ""), True)
    else:
        assert got == expected


# --- Encoded: getJobStatus and getJobHistory -------------------------------------------------


def _generic_status(job: JobStatusRecord) -> dict[str, Any]:
    """What getJobStatus answered before: the stored outputs decoded, the datetimes walked."""
    return {
        "jobId": job.id,
        "status": job.status,
        "progress": job.progress,
        "geminOutput": vision._parsed(job.gemin_output),
        "deepseekOutput": vision._parsed(job.deepseek_output),
        "errorMessage": job.error_message,
        "createdAt": job.created_at,
        "completedAt": job.completed_at,
        "errorStage": job.error_stage,
        "retryCount": job.retry_count,
        "costUsd": round(job.cost_usd, 6),
    }


def _generic_history(jobs: list[JobSummary]) -> list[dict[str, Any]]:
    """What getJobHistory answered before: the times as datetimes, walked."""
    return [
        {
            "jobId": j.id,
            "status": j.status,
            "progress": j.progress,
            "imageUrl": j.image_url,
            "analysisPurpose": j.analysis_purpose,
            "createdAt": j.created_at.to_datetime(),
            "completedAt": None if j.completed_at is None else j.completed_at.to_datetime(),
        }
        for j in jobs
    ]


compact_output = st.one_of(
    st.none(),
    json_values.map(lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)),
    st.sampled_from(["not json", "[NaN]", '{"x":1e999}', "-0.0", '{"b":-0.0,"1":2}']),
)
costs = st.one_of(
    st.floats(min_value=0, max_value=1000), st.sampled_from([0.0, -0.0, math.nan, math.inf])
)
texts = st.text(max_size=20)
statuses = st.builds(
    JobStatusRecord,
    id=st.integers(min_value=1, max_value=2**62),
    user_id=st.integers(min_value=1, max_value=100),
    status=st.sampled_from(["pending", "complete", "failed", "gemini_analyzing"]),
    progress=st.integers(min_value=0, max_value=100),
    gemin_output=compact_output,
    deepseek_output=compact_output,
    error_message=st.none() | texts,
    error_stage=st.none() | texts,
    retry_count=st.integers(min_value=0, max_value=5),
    created_at=any_tz,
    completed_at=st.none() | any_tz,
    cost_usd=costs,
)
summaries = st.builds(
    JobSummary,
    id=st.integers(min_value=1, max_value=2**62),
    status=st.sampled_from(["pending", "complete", "failed"]),
    progress=st.integers(min_value=0, max_value=100),
    image_url=texts,
    analysis_purpose=texts,
    created_at=any_tz.map(UtcTimestamp.of),
    completed_at=st.none() | any_tz.map(UtcTimestamp.of),
)


@settings(max_examples=400, deadline=None)
@given(statuses, st.booleans())
def test_encoded_status_is_the_walked_payload(job: JobStatusRecord, sj: bool) -> None:
    assert wire(vision.encoded_status(job), sj) == wire(_generic_status(job), sj)


@settings(max_examples=200, deadline=None)
@given(st.lists(summaries, max_size=25), st.booleans())
def test_encoded_history_is_the_walked_page(jobs: list[JobSummary], sj: bool) -> None:
    encoded = vision.encoded_history(jobs)
    assert wire(encoded, sj) == wire(_generic_history(jobs), sj)
    # Wrapped, as a batch envelope, a jsonl line or an SSE frame wraps it.
    wrapped = [{"result": {"data": encoded}}, 1]
    assert wire(wrapped, sj) == wire([{"result": {"data": _generic_history(jobs)}}, 1], sj)


def test_encoded_history_of_a_page_larger_than_the_key_table() -> None:
    when = UtcTimestamp.of(datetime(2026, 1, 1, tzinfo=UTC))
    jobs = [JobSummary(i, "complete", 100, "u", "p", when, when) for i in range(120)]
    assert wire(vision.encoded_history(jobs), True) == wire(_generic_history(jobs), True)


@pytest.mark.parametrize("finished", [True, False])
@pytest.mark.parametrize("n", [0, 1, 20, 100])
def test_encoded_history_full_and_partial_pages(n: int, finished: bool) -> None:
    when = UtcTimestamp.of(datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC))
    jobs = [
        JobSummary(i, "complete", 100, 'u"\\\n\u2028é', "p\x00\x1f", when,
                   when if finished or i % 3 else None)
        for i in range(n)
    ]  # fmt: skip
    encoded = vision.encoded_history(jobs)
    assert type(encoded.json) is RawJSON
    assert wire(encoded, True) == wire(_generic_history(jobs), True)
    assert wire(encoded, False) == wire(_generic_history(jobs), False)


@pytest.mark.parametrize(
    "odd",
    [
        {"id": True},
        {"progress": 50.0},
        {"progress": False},
        {"status": None},
        {"image_url": None},
    ],
)
def test_encoded_history_of_odd_values_takes_the_dicts(odd: dict[str, Any]) -> None:
    """A value the text path cannot write as the encoder would: the dict path, as before."""
    when = UtcTimestamp.of(datetime(2026, 1, 1, tzinfo=UTC))
    job = JobSummary(3, "complete", 100, "u", "p", when, None)._replace(**odd)
    jobs = [JobSummary(2, "complete", 100, "u", "p", when, when), job]
    encoded = vision.encoded_history(jobs)
    assert type(encoded.json) is list
    for sj in (True, False):
        assert wire(encoded, sj) == wire(_generic_history(jobs), sj)


def test_encoded_status_real_row_shape() -> None:
    when = as_datetime("2026-01-01 00:00:00.001000")
    assert when is not None
    job = JobStatusRecord(7, 1, "complete", 100, '{"a":1}', "[1,2]", None, None, 0, when, None)
    assert json.loads(wire(vision.encoded_status(job), True)) == {
        "json": {
            "jobId": 7, "status": "complete", "progress": 100, "geminOutput": {"a": 1},
            "deepseekOutput": [1, 2], "errorMessage": None, "createdAt": "2026-01-01T00:00:00.001Z",
            "completedAt": None, "errorStage": None, "retryCount": 0, "costUsd": 0.0,
        },
        "meta": {"values": {"createdAt": ["Date"]}, "v": 1},
    }  # fmt: skip


def test_encoded_passes_through_to_plain_and_serialize() -> None:
    e = Encoded([{"d": "x"}], {"0.d": ["Date"]})
    assert to_plain(e) == [{"d": "x"}]
    assert serialize(e) == {"json": [{"d": "x"}], "meta": {"values": {"0.d": ["Date"]}, "v": 1}}
    assert serialize(Encoded([], None)) == {"json": []}


def test_an_encoded_trees_text_is_its_tree() -> None:
    """`tree_json` stands for the tree at the top level only: nested, the tree is walked."""
    tree = {"0.d": ["Date"], "1.d": ["Date"]}
    plain, texted = Encoded([{"d": "x"}], tree), Encoded([{"d": "x"}], tree, RawJSON(
        json.dumps(tree, separators=(",", ":"))))  # fmt: skip
    assert dumps(serialize(texted)) == dumps(serialize(plain))
    assert serialize([texted]) == serialize([plain])
    assert dumps(to_plain(texted)) == dumps(to_plain(plain))
    jobs = [JobSummary(1, "complete", 100, "u", "p", *[UtcTimestamp.of(datetime(2026, 1, 1))] * 2)]
    page = vision.encoded_history(jobs)
    assert page.tree_json is not None
    assert dumps(serialize(page)) == dumps(serialize(Encoded(page.json, page.tree)))


# --- Dates -----------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(any_tz | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_iso_is_to_iso_string(dt: datetime) -> None:
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    expected = utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    assert iso(dt) == expected


def _as_datetime_before(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    assert isinstance(value, str)
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@settings(max_examples=500, deadline=None)
@given(any_tz.filter(lambda dt: dt.astimezone(UTC).year >= 1000))  # strftime("%Y"): "999"
def test_as_datetime_reads_what_to_sqlite_writes(dt: datetime) -> None:
    text = to_sqlite(dt)
    got = as_datetime(text)
    assert got == _as_datetime_before(text) == dt
    assert got is not None and got.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01 00:00:00",
        "2026-01-01T00:00:00.123+01",  # 26 characters, with an offset
        "2026-01-01 00:00:00.12345Z",
        "2026-01-01 00:00:00.123456+05:30",
        datetime(2026, 1, 1),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 1, tzinfo=UTC),
        None,
    ],
)
def test_as_datetime_other_forms(value: object) -> None:
    got = as_datetime(value)
    assert got == _as_datetime_before(value)
    assert got is None or got.tzinfo is UTC


# --- UtcTimestamp ----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(any_tz.filter(lambda dt: dt.astimezone(UTC).year >= 1000))
def test_timestamp_of_what_to_sqlite_writes(dt: datetime) -> None:
    text = to_sqlite(dt)
    ts = stored_timestamp(text)
    assert ts == UtcTimestamp.of(dt) == as_timestamp(text)
    assert ts.to_datetime() == as_datetime(text) == dt
    assert ts.to_datetime().tzinfo is UTC
    # The same Date on the wire: history rows convert their times (the wire knows no
    # storage type) to the text `iso` gives the datetime, in both forms.
    assert vision.timestamp_iso(ts) == iso(dt)
    assert wire({"a": [vision.timestamp_iso(ts)]}, False) == wire({"a": [dt]}, False)
    assert ts.iso == dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@settings(max_examples=300, deadline=None)
@given(any_tz | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_timestamp_of_any_datetime(dt: datetime) -> None:
    ts = UtcTimestamp.of(dt)
    expected = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    assert ts.to_datetime() == expected
    assert ts == stored_timestamp(dt) and hash(ts) == hash(stored_timestamp(expected))
    assert vision.timestamp_iso(ts) == iso(dt)


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01 00:00:00",
        "2026-01-01T00:00:00.123+01",  # 26 characters, with an offset
        "2026-01-01 00:00:00.12345Z",  # 26 characters, a space at 10 and a dot at 19
        "2026-01-01 00:00:00.123+01",  # the same, with an offset
        "2026-01-01T00:00:00.123456",
        "2026-01-01 00:00:00.123456+05:30",
        "0999-01-01 00:00:00.000001",
        datetime(2026, 1, 1),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 1, tzinfo=UTC),
    ],
)
def test_timestamp_other_forms(value: object) -> None:
    ts = stored_timestamp(value)
    assert ts.to_datetime() == as_datetime(value)
    assert len(ts.iso) == 27 and ts.iso.endswith("Z") and ts.iso[10] == "T"


@pytest.mark.parametrize("value", ["2026-13-01 00:00:00.000000", "not a time at all, 26 ch.", 7])
def test_timestamp_refuses_what_as_datetime_refuses(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        as_datetime(value)
    with pytest.raises((ValueError, TypeError)):
        stored_timestamp(value)


def test_timestamp_none() -> None:
    assert as_timestamp(None) is None
    with pytest.raises(TypeError):
        stored_timestamp(None)
