"""The answers of getJobStatus and getJobHistory (SEED_API §2) in the form the wire writes
fastest: the stored outputs spliced as JSON text (`RawJSON`), the superjson meta built directly
(`Encoded`), a history page's rows written as JSON text. Each shortcut is pinned byte for byte
against the generic path by tests/test_superjson_fastpath.py."""

from __future__ import annotations

import json
import math
from typing import Any

from rpc.wire.superjson import DATE, Encoded, RawJSON, iso
from storage.records import JobStatusRecord, JobSummary
from storage.timeutil import UtcTimestamp


def timestamp_iso(ts: UtcTimestamp) -> str:
    """A stored timestamp as JS ``toISOString()`` writes it (what `iso` gives for the same
    instant): its ISO text cut to milliseconds (truncated, as `iso` truncates), without a
    `datetime` in between. The wire knows no storage type: history rows are converted here."""
    return ts.iso[:23] + "Z"


def _parsed(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


class _Annotated(Exception):
    """A stored output holds a number that decoding and encoding again would not write back
    as it is: NaN, Infinity (1e999 too) and -0.0, which superjson annotates, and the integer
    -0, which Python reads as 0."""


def _refuse_constant(name: str) -> Any:
    raise _Annotated(name)


def _plain_float(text: str) -> float:
    value = float(text)
    if not _finite_unsigned(value):
        raise _Annotated(text)
    return value


def _plain_int(text: str) -> int:
    if text == "-0":
        raise _Annotated(text)
    return int(text)


_STRICT = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_float=_plain_float, parse_int=_plain_int
)


def _output(text: str | None) -> Any:
    """A stored output (geminOutput, deepseekOutput) for the wire. The server wrote it as JSON
    text, so it goes out as that text (`RawJSON`): decoding, walking and encoding it again was
    about a third of getJobStatus's CPU. The client reads the same values; only the text's own
    whitespace and escapes may differ from a fresh encoding. It is still decoded once (C speed,
    the result dropped) to be sure it is strict JSON: text that is not JSON (a row written by
    hand or an older version) goes out as null, as before, and one holding a number that
    would not be written back as it is (`_Annotated`) as the decoded value, as before."""
    if text is None:
        return None
    try:
        _STRICT.decode(text)
    except _Annotated:
        return _parsed(text)
    except ValueError:
        return None
    return RawJSON(text)


def status_payload(job: JobStatusRecord) -> dict[str, Any]:
    """What getJobStatus answers (SEED_API §2); live progress events carry the same shape."""
    return {
        "jobId": job.id,
        "status": job.status,
        "progress": job.progress,
        "geminOutput": _output(job.gemin_output),
        "deepseekOutput": _output(job.deepseek_output),
        "errorMessage": job.error_message,
        "createdAt": job.created_at,
        "completedAt": job.completed_at,
        # Extra fields (the frontend ignores what it does not know):
        "errorStage": job.error_stage,
        "retryCount": job.retry_count,
        "costUsd": round(job.cost_usd, 6),
    }


def _finite_unsigned(value: float) -> bool:
    """Not a float superjson annotates (NaN, Infinity, -0.0)."""
    return value - value == 0.0 and (value != 0.0 or math.copysign(1.0, value) > 0)


def encoded_status(job: JobStatusRecord) -> Any:
    """getJobStatus's answer with its superjson meta built directly (`Encoded`): its only
    Dates are createdAt and completedAt, so the output need not be walked. The payload itself
    (walked) in the rare case it holds something else superjson annotates: an output decoded
    for its NaN, a NaN or negative-zero cost."""
    payload = status_payload(job)
    if not (
        type(payload["geminOutput"]) in _RAW_OR_NONE
        and type(payload["deepseekOutput"]) in _RAW_OR_NONE
        and _finite_unsigned(payload["costUsd"])
    ):
        return payload
    payload["createdAt"] = iso(job.created_at)
    completed = job.completed_at
    if completed is None:
        return Encoded(payload, {"createdAt": DATE})
    payload["completedAt"] = iso(completed)
    return Encoded(payload, {"createdAt": DATE, "completedAt": DATE})


_RAW_OR_NONE = (RawJSON, type(None))
_PAGE_KEYS = [(f"{i}.createdAt", f"{i}.completedAt") for i in range(100)]  # HistoryInput.limit


def _full_tree(n: int) -> dict[str, Any]:
    return {key: DATE for i in range(n) for key in _PAGE_KEYS[i]}


# The meta of a page whose jobs are all finished, the common page, by its length: shared, as
# DATE is (a meta tree is only ever read and encoded).
_FULL_TREES = [_full_tree(n) for n in range(len(_PAGE_KEYS) + 1)]
# And as the JSON text `rpc.wire.encoding.dumps` writes for them (Encoded.tree_json): encoding a
# 20-row page's 40 entries was two thirds of encoding the whole answer.
_FULL_TREES_JSON = [RawJSON(json.dumps(t, separators=(",", ":"))) for t in _FULL_TREES]
# The encoder's own writer of a str (C, the one `rpc.wire.encoding.dumps` uses).
_json_str = json.encoder.encode_basestring


def encoded_history(jobs: list[JobSummary]) -> Encoded:
    """getJobHistory's answer with its superjson meta built directly (`Encoded`): the Dates
    are each row's createdAt and completedAt, every other field a string or an integer. The
    walk of a 20-row page and its 40 Dates was half of the request's CPU.

    The rows go out as JSON text written here (`RawJSON`), the bytes the encoder writes for
    the same dicts: building 20 dicts for the stdlib encoder to take apart again was a fifth
    of the request. A page with a value of another type than its field's takes the dicts."""
    finished = True
    parts: list[str] = []
    try:
        for job_id, status, progress, image_url, purpose, created, completed in jobs:
            if type(job_id) is not int or type(progress) is not int:
                raise TypeError  # the f-string would write a bool or a float otherwise
            if completed is None:
                finished = False
                done = "null"
            else:
                done = '"' + completed.iso[:23] + 'Z"'  # timestamp_iso, inlined
            # An f-string: two thirds of the cost of %-formatting the same row.
            parts.append(
                f'{{"jobId":{job_id},"status":{_json_str(status)},"progress":{progress},'
                f'"imageUrl":{_json_str(image_url)},"analysisPurpose":{_json_str(purpose)},'
                f'"createdAt":"{created.iso[:23]}Z","completedAt":{done}}}'
            )
    except TypeError:  # not a str where one belongs (encode_basestring takes nothing else)
        return Encoded(_history_rows(jobs), _history_tree(jobs))
    rows = RawJSON("[" + ",".join(parts) + "]")
    if finished and 0 < len(jobs) < len(_FULL_TREES):
        return Encoded(rows, _FULL_TREES[len(jobs)], _FULL_TREES_JSON[len(jobs)])
    return Encoded(rows, _history_tree(jobs))


def _history_rows(jobs: list[JobSummary]) -> list[dict[str, Any]]:
    return [
        {
            "jobId": j.id,
            "status": j.status,
            "progress": j.progress,
            "imageUrl": j.image_url,
            "analysisPurpose": j.analysis_purpose,
            "createdAt": timestamp_iso(j.created_at),
            "completedAt": None if j.completed_at is None else timestamp_iso(j.completed_at),
        }
        for j in jobs
    ]


def _history_tree(jobs: list[JobSummary]) -> dict[str, Any] | None:
    tree: dict[str, Any] = {}
    for i, j in enumerate(jobs):
        created_key, completed_key = (
            _PAGE_KEYS[i] if i < len(_PAGE_KEYS) else (f"{i}.createdAt", f"{i}.completedAt")
        )
        tree[created_key] = DATE
        if j.completed_at is not None:
            tree[completed_key] = DATE
    return tree or None
