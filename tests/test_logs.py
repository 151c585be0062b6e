"""Logs: one access line per request (no query string, body, cookie or token in it), off with
ACCESS_LOG=false; LOG_FORMAT=json for every line a server writes, uvicorn's included; one line
per finished job; other libraries' chatter at WARNING unless LOG_LEVEL=debug."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.reporting import MESSAGE, FinishedJob, Reporter, Tally, extras
from rpc.access_log import record_of
from rpc.config import Settings
from rpc.job_log import JobLines, jobs_log
from rpc.logs import CHATTY, OurHandler, level_of, setup_logging
from rpc.observe import Observer
from rpc.wire.dispatch import BASE_PATH
from storage.jobstate import Outcome, Stage
from storage.records import AttemptRecord, StageUsage
from tests.inprocess import running_app
from tests.support import backend_server, wait_for_status

TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret-token-part.signature"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """setup_logging changes the process's loggers: put them back after the test."""
    root = logging.getLogger()
    names = [*CHATTY, "rpc.access"]
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in names})
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", providers="offline", **kw)


async def _requests(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        await client.get(
            "/api/trpc/visionPipeline.getJobStatus",
            params={"input": '{"jobId":1,"note":"query-input-text"}'},
            headers={"authorization": f"Bearer {TOKEN}", "cookie": "app_session_id=cookie-val"},
        )
        await client.post("/api/trpc/visionPipeline.createJob",
                          json={"imageUrl": "body-text", "analysisPurpose": "x"})  # fmt: skip
        await client.get("/api/trpc/auth.me,visionPipeline.getJobHistory?batch=1")
        await client.get("/api/trpc/evil%0Aforged%20line")


@pytest.mark.anyio
@pytest.mark.usefixtures("restored_logging")
async def test_one_access_line_per_request_without_secrets(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = _settings(tmp_path)
    setup_logging(settings, out)
    await _requests(settings)
    access = [line for line in out.getvalue().splitlines() if " rpc.access: " in line]
    assert [line.split(" rpc.access: ")[1].rsplit(" ", 2)[0] for line in access] == [
        "GET visionPipeline.getJobStatus 404",
        "POST visionPipeline.createJob 400",
        "GET auth.me,visionPipeline.getJobHistory 200",
        "GET evil\\nforged line 404",  # the client's newline cannot forge a line
    ]
    for secret in (TOKEN, "secret-token-part", "cookie-val", "query-input-text", "body-text"):
        assert secret not in out.getvalue()


@pytest.mark.anyio
@pytest.mark.usefixtures("restored_logging")
async def test_access_lines_do_not_follow_log_level(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = _settings(tmp_path, log_level="warning")
    setup_logging(settings, out)
    await _requests(settings)
    logging.getLogger("rpc.app").info("an application line at INFO")
    assert len([line for line in out.getvalue().splitlines() if " rpc.access: " in line]) == 4
    assert "an application line" not in out.getvalue()


@pytest.mark.anyio
@pytest.mark.usefixtures("restored_logging")
async def test_access_log_false_writes_no_access_line(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = _settings(tmp_path, access_log=False)
    setup_logging(settings, out)
    await _requests(settings)
    assert " rpc.access: " not in out.getvalue()
    assert "Application startup" not in out.getvalue()  # (uvicorn is not running here)


@pytest.mark.usefixtures("restored_logging")
def test_json_lines_parse_with_their_fields() -> None:
    out = io.StringIO()
    setup_logging(Settings(log_format="json"), out)
    logging.getLogger("pipeline.jobs").info("job %d complete", 7, extra={"job_id": 7})
    line = json.loads(out.getvalue())
    assert line["message"] == "job 7 complete" and line["job_id"] == 7
    assert (line["level"], line["logger"]) == ("INFO", "pipeline.jobs") and line["time"]


@pytest.mark.usefixtures("restored_logging")
def test_other_libraries_chatter_is_at_warning_unless_debug() -> None:
    out = io.StringIO()
    setup_logging(Settings(log_level="info"), out)
    logging.getLogger("google_genai.models").info("AFC is enabled with max remote calls: 10.")
    logging.getLogger("httpx").info('HTTP Request: POST https://api.deepseek.com "200 OK"')
    logging.getLogger("httpx").warning("a warning still shows")
    assert out.getvalue().count("\n") == 1 and "a warning still shows" in out.getvalue()
    setup_logging(Settings(log_level="debug"), out)
    logging.getLogger("google_genai.models").info("AFC is enabled with max remote calls: 10.")
    assert "AFC is enabled" in out.getvalue()
    assert len(logging.getLogger().handlers) == len(set(logging.getLogger().handlers))


def test_an_unknown_log_level_is_one_clear_error() -> None:
    assert Settings(log_level="Debug").log_level == "debug"
    assert level_of(Settings(log_level="WARNING").log_level) == logging.WARNING
    with pytest.raises(ValidationError) as caught:
        Settings(log_level="verbose")
    (error,) = caught.value.errors()
    assert error["loc"] == ("log_level",)
    assert error["msg"] == "Input should be 'debug', 'info', 'warning', 'error' or 'critical'"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_json_server_log_has_one_line_per_finished_job(
    backend: str, tmp_path: Path, images: str
) -> None:
    with backend_server(backend, tmp_path, LOG_FORMAT="json") as srv:
        with srv.client("log-user") as client:
            good = client.post("/visionPipeline.createJob", json={
                "imageUrl": f"{images}/red.png", "analysisPurpose": "logs",
                "outputFormat": "social_media_post"}).json()["result"]["data"]["jobId"]  # fmt: skip
            bad = client.post("/visionPipeline.createJob", json={
                "imageUrl": f"{images}/page.html", "analysisPurpose": "logs",
                "outputFormat": "social_media_post"}).json()["result"]["data"]["jobId"]  # fmt: skip
            assert wait_for_status(client, good)["status"] == "complete"
            assert wait_for_status(client, bad)["status"] == "error"
        srv.stop()
        lines = [json.loads(line) for line in srv.log().splitlines() if line.strip()]
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "rpc.access", "pipeline.worker"} <= loggers  # all of them JSON
    finished = [line for line in lines if line["logger"] == "pipeline.jobs"]
    ended = sorted((f["job_id"], f["status"]) for f in finished)
    assert ended == [(good, "complete"), (bad, "error")]
    for f in finished:
        assert f["attempts"] == 1 and f["duration_ms"] >= 0 and f["cost_usd"] == 0
    access = [line for line in lines if line["logger"] == "rpc.access"]
    assert {"method", "target", "status", "duration_ms"} <= set(access[0])


def _our_handler_alone(log_format: str) -> tuple[io.StringIO, OurHandler]:
    """``setup_logging``'s handler as the root's only one (no pytest capture), writing to the
    returned buffer: a batch is then written directly."""
    out = io.StringIO()
    setup_logging(Settings(log_format=log_format), out)
    root = logging.getLogger()
    root.handlers[:] = ours = [h for h in root.handlers if isinstance(h, OurHandler)]
    return out, ours[0]


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.usefixtures("restored_logging")
def test_batched_access_lines_are_the_lines_the_formatter_writes(log_format: str) -> None:
    out, ours = _our_handler_alone(log_format)
    observer = Observer(["visionPipeline.getJobStatus"])
    requests = [("GET", f"{BASE_PATH}visionPipeline.getJobStatus", 200),
                ("POST", f"{BASE_PATH}a,b", 207), ("GET", "/healthz", 503)] * 40  # fmt: skip
    for i, (method, path, status) in enumerate(requests):  # times with every millisecond
        observer.note({"method": method, "path": path}, status, time.perf_counter() - i * 0.0137)
    observer.fold_seen()
    entries = list(observer.access.pending)
    assert len(entries) == len(requests)
    observer.flush()
    assert observer.access.pending == observer.seen == []
    lines = [record_of(observer.access.fields(e)) for e in entries]  # the wall clock of the flush
    expected = "".join(ours.format(line) + "\n" for line in lines)
    assert out.getvalue() == expected
    assert "GET visionPipeline.getJobStatus 200 0.0 ms" in out.getvalue()
    assert "POST a,b 207 13.7 ms" in out.getvalue()


@pytest.mark.usefixtures("restored_logging")
def test_access_lines_of_made_up_paths_do_not_grow_memory() -> None:
    out, _ = _our_handler_alone("text")
    observer = Observer(["visionPipeline.getJobStatus"])
    for n in range(3000):  # a scanner's paths: each line written, at most 1,024 remembered
        observer.note({"method": "GET", "path": f"/scan/{n}"}, 404, time.perf_counter())
    observer.flush()
    assert len(out.getvalue().splitlines()) == 3000
    assert "GET /scan/2999 404" in out.getvalue()
    assert len(observer.access._middles) <= 1024 and len(observer._paths) == 0


def _finished_record(entry: FinishedJob) -> logging.LogRecord:
    """The record ``pipeline.reporting.log_finished`` makes for ``entry``, at its time."""
    created, job_id, status, error, attempts, ms, cost = entry
    record = jobs_log.makeRecord(jobs_log.name, logging.INFO, __file__, 0, MESSAGE,
                                 (job_id, status, error, attempts, ms, cost), None,
                                 extra=extras(entry))  # fmt: skip
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.usefixtures("restored_logging")
def test_batched_finished_job_lines_are_the_lines_the_formatter_writes(log_format: str) -> None:
    out, ours = _our_handler_alone(log_format)
    lines = JobLines()
    lines.add((1_796_000_000.25, 7, "complete", "", 1, 412, 0.000123))
    lines.add((1_796_000_001.5, 8, "error", " (Image fetch failed: 404)", 3, 9, 0.0))
    entries = list(lines.pending)
    assert len(entries) == 2 and out.getvalue() == ""  # nothing written before the flush
    lines.flush()
    assert lines.pending == []
    expected = "".join(ours.format(_finished_record(e)) + "\n" for e in entries)
    assert out.getvalue() == expected
    assert "job 8 error (Image fetch failed: 404): attempts 3, last 9 ms, $0.000000" in expected


def test_finished_job_lines_are_records_at_once_when_another_handler_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = JobLines()
    with caplog.at_level(logging.INFO, logger="pipeline.jobs"):
        lines.add((1_796_000_000.0, 9, "cancelled", "", 2, 5, 0.5))
    assert lines.pending == []
    (record,) = [r for r in caplog.records if r.name == "pipeline.jobs"]
    assert record.getMessage() == "job 9 cancelled: attempts 2, last 5 ms, $0.500000"
    assert (record.job_id, record.status, record.attempts) == (9, "cancelled", 2)  # type: ignore[attr-defined]


@pytest.mark.usefixtures("restored_logging")
def test_a_workers_reporter_hands_finished_jobs_to_the_batch() -> None:
    out, _ = _our_handler_alone("text")
    reporter = Reporter(Tally(), "offline", "offline", Settings(providers="offline"))
    lines = JobLines.of(reporter)
    job = SimpleNamespace(id=5, attempt=2, locked_at=datetime.now(UTC))
    used = StageUsage("offline", 0, 0, 3)
    reporter.written(job, AttemptRecord(Outcome.RETRY, Stage.VISION, "busy", used, used, 0.0))  # type: ignore[arg-type]
    reporter.written(job, AttemptRecord(Outcome.COMPLETE, Stage.CONTENT, None, used, used, 0.0))  # type: ignore[arg-type]
    assert [e[1:5] for e in lines.pending] == [(5, "complete", "", 2)]  # a retry is not finished
    assert out.getvalue() == ""
    lines.flush()
    assert " INFO pipeline.jobs: job 5 complete: attempts 2, last " in out.getvalue()
