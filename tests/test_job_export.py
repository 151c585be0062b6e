"""`vision-pipeline jobs export`: one line per job (inputs, both outputs, tokens, cost) as JSON
lines or CSV, fetched in keyset pages so memory stays bounded; no progress bar when piped."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rpc import cli
from rpc.commands.jobs_export import COLUMNS
from storage.operators import JobFilter, OperatorStore
from tests.support import Server, wait_for_status

BODY = {"analysisPurpose": "training", "outputFormat": "bullet_points", "imageContext": "ctx"}
JOBS = 23


def run(server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str, str]:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", server.database_url)
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def exported(server: Server, images: str) -> list[int]:
    """exp-user's JOBS complete jobs, made through the API."""
    with server.client("exp-user") as client:
        ids = []
        for i in range(JOBS):
            r = client.post("/visionPipeline.createJob",
                            json={"imageUrl": f"{images}/red.png", **BODY,
                                  "additionalInstructions": f"job {i}"})  # fmt: skip
            ids.append(int(r.json()["result"]["data"]["jobId"]))
        for job_id in ids:
            assert wait_for_status(client, job_id)["status"] == "complete"
    return ids


def _check(job: dict[str, Any], server: Server, images: str) -> None:
    assert job["openId"] == "exp-user" and job["status"] == "complete"
    assert job["imageUrl"] == f"{images}/red.png" and job["imageContext"] == "ctx"
    assert job["analysisPurpose"] == "training" and job["outputFormat"] == "bullet_points"
    assert job["geminOutput"] and job["deepseekOutput"]
    [(gemin, deepseek, cost, mood)] = server.sql(
        'SELECT j."geminOutput", j."deepseekOutput", j."costUsd", o.mood FROM "visionJobs" j '
        'JOIN "visionJobOutputs" o ON o."jobId" = j.id WHERE j.id = ?', int(job["id"]))  # fmt: skip
    assert (job["geminOutput"], job["deepseekOutput"], job["mood"]) == (gemin, deepseek, mood)
    assert float(job["costUsd"]) == pytest.approx(float(cost))
    [(tokens,)] = server.sql('SELECT SUM("geminiInputTokens") FROM "visionJobSessions" '
                             'WHERE "jobId" = ?', int(job["id"]))  # fmt: skip
    assert int(job["geminiInputTokens"]) == tokens


def test_jsonl_has_one_line_per_job_with_inputs_outputs_tokens_and_cost(
    server: Server, exported: list[int], images: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, out, err = run(server, monkeypatch, capsys, "jobs", "export", "--user", "exp-user",
                         "--status", "complete")  # fmt: skip
    assert (code, err) == (0, "")  # piped: no progress bar
    jobs = [json.loads(line) for line in out.splitlines()]
    assert [j["id"] for j in jobs] == exported
    assert all(list(j) == list(COLUMNS) for j in jobs)
    assert [j["additionalInstructions"] for j in jobs] == [f"job {i}" for i in range(JOBS)]
    for job in jobs:
        _check(job, server, images)
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "export", "--user", "exp-user",
                       "--status", "error")  # fmt: skip
    assert (code, out) == (0, "")


def test_csv_to_a_file(
    server: Server, exported: list[int], images: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    target = tmp_path / "jobs.csv"
    code, out, err = run(server, monkeypatch, capsys, "jobs", "export", "--user", "exp-user",
                         "--format", "csv", "--out", str(target))  # fmt: skip
    assert (code, out) == (0, "") and err == f"exported {JOBS} jobs to {target}\n"
    with target.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    assert [int(r["id"]) for r in rows] == exported
    for row in rows:
        _check(row, server, images)


def test_an_unwritable_out_file_is_one_line_and_exit_2(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    target = tmp_path / "no-such-folder" / "jobs.jsonl"
    code, out, err = run(server, monkeypatch, capsys, "jobs", "export", "--out", str(target))
    assert (code, out) == (2, "") and err == f"--out {target}: No such file or directory\n"


def test_the_export_fetches_in_pages_of_page_size(
    server: Server, exported: list[int], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    pages: list[int] = []
    reads: list[int] = []
    original = OperatorStore.export_pages

    async def counted(self: Any, where: JobFilter, page: int) -> AsyncIterator[Any]:
        read = self.driver.read

        async def counting_read(statement: Any) -> Any:
            rows = await read(statement)
            reads.append(len(rows))  # every query the export makes, and what it got back
            return rows

        self.driver.read = counting_read
        async for jobs in original(self, where, page):
            pages.append(len(jobs))
            yield jobs

    monkeypatch.setattr(OperatorStore, "export_pages", counted)
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "export", "--user", "exp-user",
                       "--page-size", "5")  # fmt: skip
    assert code == 0 and len(out.splitlines()) == JOBS
    assert pages == [5] * (JOBS // 5) + [JOBS % 5]
    # one query per page, plus the empty one that ends it; none returned more than a page
    assert len(reads) == math.ceil(JOBS / 5) + 1 and max(reads) <= 5 and reads[-1] == 0


def test_a_progress_bar_on_a_terminal_only(
    server: Server, exported: list[int], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, _, err = run(server, monkeypatch, capsys, "jobs", "export", "--user", "exp-user")
    assert (code, err) == (0, "")  # stderr is not a terminal here
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: treat stderr as a terminal
    code, out, err = run(server, monkeypatch, capsys, "jobs", "export", "--user", "exp-user")
    assert code == 0 and "exporting" in err and f"{JOBS}/{JOBS}" in err
    assert len(out.splitlines()) == JOBS  # the bar never mixes into the data


def test_csv_writer_leaves_none_empty() -> None:
    from rpc.commands.jobs_export import Writer

    out = io.StringIO()
    Writer(out, "csv").write([dict.fromkeys(COLUMNS, None) | {"id": 1}])
    assert out.getvalue().splitlines()[1] == "1" + "," * (len(COLUMNS) - 1)
