"""A job end to end over real HTTP: createJob → the worker in the same process → outputs,
attempts and status; failing images; and 200 jobs created in parallel, each run once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Server, data_url, start_server, wait_for_status


def create(client: httpx.Client, image_url: str, **fields: Any) -> int:
    body = {"imageUrl": image_url, "analysisPurpose": "Brand analysis for a wellness product",
            "outputFormat": "detailed_analysis", **fields}  # fmt: skip
    r = client.post("/visionPipeline.createJob", json=body)
    assert r.status_code == 200, r.text
    data = r.json()["result"]["data"]
    assert data["status"] == "pending"
    assert data["message"] == "Job created and queued for processing"
    return int(data["jobId"])


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def test_a_red_image_completes_with_a_red_primary_colour(server: Server, images: str) -> None:
    with server.client("jobs-red") as client:
        job_id = create(client, f"{images}/red.png", outputFormat="bullet_points")
        status = wait_for_status(client, job_id)
    assert status["status"] == "complete" and status["progress"] == 100
    assert status["errorMessage"] is None and status["completedAt"] is not None
    red, green, blue = _rgb(status["geminOutput"]["colors"]["primary"][0])
    assert red > 180 and green < 80 and blue < 80
    assert "red" in status["geminOutput"]["colors"]["description"].lower()
    pieces = status["deepseekOutput"]
    assert len(pieces) >= 3 and all(p["title"] and p["body"] for p in pieces)
    [(colors, content, training)] = server.sql(
        'SELECT colors_primary, content_pieces, "isTrainingData" FROM '
        '"visionJobOutputs" WHERE "jobId" = ?', job_id,
    )  # fmt: skip
    assert json.loads(colors) == status["geminOutput"]["colors"]["primary"]
    assert json.loads(content) == pieces and training in (1, True)
    assert server.sql('SELECT attempt, outcome FROM "visionJobSessions" WHERE '
                 '"jobId" = ?', job_id) == [(1, "complete")]  # fmt: skip


def test_a_blue_data_url_image_completes_with_a_blue_primary_colour(server: Server) -> None:
    with server.client("jobs-blue") as client:
        job_id = create(client, data_url((20, 40, 220)), outputFormat="social_media_post")
        status = wait_for_status(client, job_id)
    red, _, blue = _rgb(status["geminOutput"]["colors"]["primary"][0])
    assert blue > 180 and red < 80
    assert any(p.get("hashtags") for p in status["deepseekOutput"])


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing.png", "Image URL returned HTTP 404"),
        ("/page.html", "did not return an image"),
        ("/fake.png", "is not an image"),
    ],
)
def test_an_image_url_that_is_not_an_image_ends_in_error_at_once(
    server: Server, images: str, path: str, expected: str
) -> None:
    with server.client("jobs-bad-image") as client:
        job_id = create(client, images + path)
        status = wait_for_status(client, job_id)
    assert status["status"] == "error"
    assert status["errorMessage"].startswith("gemini: ")
    assert expected.lower() in status["errorMessage"].lower()
    assert (status["errorStage"], status["retryCount"]) == ("gemini", 1)
    assert status["geminOutput"] is None and status["deepseekOutput"] is None


def test_an_image_server_failing_with_500_is_retried_then_the_job_fails(
    server: Server, images: str
) -> None:
    with server.client("jobs-500") as client:
        job_id = create(client, f"{images}/fail")
        status = wait_for_status(client, job_id)
    assert status["status"] == "error" and status["retryCount"] == 3
    assert status["errorMessage"].startswith("Failed after 3 attempts in gemini: ")
    outcomes = server.sql('SELECT outcome FROM "visionJobSessions" WHERE "jobId" = ? '
                     "ORDER BY attempt", job_id)  # fmt: skip
    assert outcomes == [("retry",), ("retry",), ("error",)]


def test_200_jobs_created_in_parallel_all_complete_exactly_once(
    server: Server, images: str
) -> None:
    def one(i: int) -> int:
        with server.client(f"parallel-{i % 5}") as client:
            return create(client, f"{images}/green.png", outputFormat="bullet_points")

    with ThreadPoolExecutor(max_workers=32) as pool:
        ids = list(pool.map(one, range(200)))
    assert len(set(ids)) == 200
    with server.client("parallel-0") as client:
        for job_id in ids[::5]:
            assert wait_for_status(client, job_id, timeout=60)["status"] == "complete"
    placeholders = ",".join("?" * len(ids))
    for job_id in ids:  # the other owners' jobs: read straight from the database
        for _ in range(600):
            rows = server.sql('SELECT status FROM "visionJobs" WHERE id = ?', job_id)
            if rows == [("complete",)]:
                break
            time.sleep(0.05)
        assert rows == [("complete",)]
    outputs = server.sql('SELECT "jobId", COUNT(*) FROM "visionJobOutputs" WHERE '
                    f'"jobId" IN ({placeholders}) GROUP BY "jobId"', *ids)  # fmt: skip
    assert sorted(outputs) == sorted((i, 1) for i in ids)
    sessions = server.sql('SELECT "jobId", COUNT(*), MAX(attempt) FROM '
                     f'"visionJobSessions" WHERE "jobId" IN ({placeholders}) GROUP BY "jobId"',
                     *ids)  # fmt: skip
    assert sorted(sessions) == sorted((i, 1, 1) for i in ids)


@pytest.fixture(scope="module")
def slow_poll_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("slowpoll")
    srv = start_server(tmp / "jobs.db", tmp / "server.log", POLL_INTERVAL_MS="120000")
    try:
        yield srv
    finally:
        srv.stop()


def test_the_worker_picks_a_new_job_up_without_waiting_for_a_poll(
    slow_poll_server: Server, images: str
) -> None:
    with slow_poll_server.client("wake") as client:
        job_id = create(client, f"{images}/red.png")
        # Two minutes between fallback polls: only the in-process wake-up can finish it here.
        assert wait_for_status(client, job_id, timeout=20)["status"] == "complete"


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "jobs.db", tmp_path / "server.log")
    assert srv.stop() == 0
    assert "worker" in srv.log() and "stopped" in srv.log()
