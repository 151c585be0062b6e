"""Issue 14 item 5: would ``orjson.Fragment`` splice stored JSON as well as ``rpc.wire.encoding``'s
marker does? Checks byte identity over varied payloads, then times the getJobStatus and
getJobHistory answers' encodes, alternating old and new for ``--rounds`` rounds. Needs orjson
(``pip install orjson``); nothing here is asserted.

    .venv/bin/python -m bench.splice [--rounds 7] [--number 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from rpc.procedures.job_payloads import encoded_history, encoded_status
from rpc.wire.encoding import dumps
from rpc.wire.superjson import RawJSON, serialize
from storage.records import JobStatusRecord, JobSummary
from storage.timeutil import UtcTimestamp


def _fragment(item: object) -> Any:
    if type(item) is RawJSON:
        return orjson.Fragment(item.text)
    raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")


def dumps_orjson(value: Any) -> bytes:
    return orjson.dumps(value, default=_fragment)


VARIED: list[Any] = [
    {"a": "é ü 日本 \u2028 \x1f \x7f", "b": [1, -2, 0]},
    [1e-07, 0.1, 5e-06, 1e16, 1.5e300, 123.456, -0.0],
    {"big": 2**64, "neg": -(2**63)},
    {"raw": RawJSON('{"k": [1, 2.5, "x"]}'), "s": 'a\\b"c\n'},
    {"cost": round(0.0000049, 6)},
]


def identity() -> None:
    for value in VARIED:
        try:
            new: bytes | str = dumps_orjson(value)
        except Exception as exc:
            new = f"{type(exc).__name__}: {exc}"
        old = dumps(value)
        print(("same     " if old == new else "DIFFERENT"), old[:60], "|", str(new)[:60])


def payloads() -> dict[str, Any]:
    when = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    output = json.dumps({"pieces": [{"title": "Título", "body": "x" * 400}] * 4},
                        separators=(",", ":"), ensure_ascii=False)  # fmt: skip
    job = JobStatusRecord(7, 1, "complete", 100, output, output, None, None, 0, when, when,
                          0.001234)  # fmt: skip
    ts = UtcTimestamp.of(when)
    page = [JobSummary(i, "complete", 100, "/api/images/" + "a" * 64, "Brand launch", ts, ts)
            for i in range(20)]  # fmt: skip
    return {
        "getJobStatus": {"result": {"data": serialize(encoded_status(job))}},
        "getJobHistory": {"result": {"data": serialize(encoded_history(page))}},
    }


def timed(encode: Callable[[Any], bytes], value: Any, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        encode(value)
    return (time.perf_counter() - start) / number * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--number", type=int, default=20_000)
    args = p.parse_args()
    identity()
    for name, value in payloads().items():
        same = dumps(value) == dumps_orjson(value)
        old: list[float] = []
        new: list[float] = []
        for _ in range(args.rounds):
            old.append(timed(dumps, value, args.number))
            new.append(timed(dumps_orjson, value, args.number))
        print(
            f"{name}: identical={same}  marker {statistics.median(old):.2f} µs  "
            f"orjson.Fragment {statistics.median(new):.2f} µs  (medians of {args.rounds})"
        )
        print("   marker rounds:", " ".join(f"{t:.2f}" for t in old))
        print("   orjson rounds:", " ".join(f"{t:.2f}" for t in new))


if __name__ == "__main__":
    main()
