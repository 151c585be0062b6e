"""Reading a job's plain SSE stream (``GET /api/jobs/{id}/events``): ``event: progress``
with an ``id:`` and getJobStatus's JSON, ``: ping`` comments, ``event: end`` after the final
state, ``event: error`` for a refusal after the stream began.

``job_states`` yields each state until the final one, reopening the stream after the last id
it got when the connection drops or the server ends a stream early (``SSE_MAX_DURATION_MS``):
nothing is missed or repeated, and a 204 on a reopen means the final state was already seen."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from rpc.terminal.client import EXIT_SERVER, Api, ClientError, refusal, unreachable
from storage.jobstate import FINAL, JobStatus

# Reopening a dropped stream: this many times in a row at most, this long apart.
REOPEN_TRIES = 5
REOPEN_PAUSE_S = 1.0
# No byte for this long (the server pings every SSE_PING_MS, 10 s by default): reopen.
SILENCE_S = 60.0


@dataclass(frozen=True)
class Event:
    name: str
    id: str | None
    data: str


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """SSE events from the stream's lines (comments and ``retry:`` skipped)."""
    name: str = "message"
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Event(name, event_id, "\n".join(data))
            name, event_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


class _Ended(Exception):
    """The stream said ``end``, or a reopen got 204: the final state has been seen."""


def _state(event: Event) -> dict[str, Any] | None:
    """A progress event's state; None for others (``end`` raises ``_Ended``)."""
    if event.name == "end":
        raise _Ended
    if event.name == "error":
        try:
            message = json.loads(event.data).get("message", event.data)
        except (ValueError, AttributeError):
            message = event.data
        raise ClientError(f"the server stopped the stream: {message}", EXIT_SERVER)
    if event.name != "progress":
        return None
    try:
        state = json.loads(event.data)
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


class JobStream:
    """One job's states, live, from its SSE stream."""

    def __init__(self, api: Api, job_id: int) -> None:
        self.api = api
        self.job_id = job_id
        self.last_id: str | None = None

    def _open(self) -> Iterator[dict[str, Any]]:
        headers = {"last-event-id": self.last_id} if self.last_id is not None else {}
        timeout = httpx.Timeout(30.0, read=SILENCE_S)
        url = f"/api/jobs/{self.job_id}/events"
        with self.api.http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code == 204:
                raise _Ended
            if not response.is_success:
                response.read()
                raise refusal(response, f"following job {self.job_id}")
            for event in parse(response.iter_lines()):
                state = _state(event)
                if event.id is not None:
                    self.last_id = event.id
                if state is not None:
                    yield state

    def states(self) -> Iterator[dict[str, Any]]:
        """Each state until the final one (see the module's docstring)."""
        failures = 0
        while True:
            try:
                for state in self._open():
                    failures = 0
                    yield state
                    if state.get("status") in FINAL:
                        return
            except _Ended:
                return
            except httpx.HTTPError as exc:
                failures += 1
                if failures >= REOPEN_TRIES or self.last_id is None:
                    raise unreachable(self.api.base, exc) from None
            time.sleep(REOPEN_PAUSE_S if failures else 0.2)


def is_final(state: dict[str, Any]) -> bool:
    return state.get("status") in FINAL


def failed(state: dict[str, Any]) -> bool:
    return state.get("status") == JobStatus.ERROR
