"""/metrics: values that move as jobs are created and run (the API's process counts creations
and requests, the worker's process completions and stage times, both read the queue from the
database at scrape time), METRICS_TOKEN, and a worker-only process's --metrics-port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rpc.config import Settings
from tests.inprocess import metric, running_app
from tests.support import ROOT, Server, backend_server, free_port, server_env, start_process

CREATE = "/visionPipeline.createJob"


def _create(client: httpx.Client, image: str) -> int:
    # cache: false: three identical jobs, each asking the providers (counted below).
    body = {"imageUrl": image, "analysisPurpose": "metrics", "outputFormat": "social_media_post",
            "cache": False}  # fmt: skip
    r = client.post(CREATE, json=body)
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


def _scrape(base: str) -> str:
    r = httpx.get(base + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return r.text


def _start_worker(api: Server, tmp_path: Path, port: int) -> Server:
    return start_process(
        ["worker", "--metrics-port", str(port)], tmp_path / "jobs.db", tmp_path / "worker.log",
        DATABASE_URL=api.database_url,
    )  # fmt: skip


def _wait_for(base: str, path: str, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(base + path, timeout=2)
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"nothing answers on {base}"
            time.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metrics_move_as_jobs_are_created_and_run(
    backend: str, tmp_path: Path, images: str
) -> None:
    with backend_server(backend, tmp_path, "--no-worker") as api:
        with api.client("metrics-user") as client:
            ids = [_create(client, f"{images}/red.png") for _ in range(3)]
        text = _scrape(api.base)
        assert metric(text, "vision_jobs_created_total") == 3
        assert metric(text, "vision_queue_jobs", status="pending") == 3
        assert metric(text, "vision_queue_oldest_waiting_seconds") > 0
        assert metric(text, "vision_http_requests_total", procedure="visionPipeline.createJob",
                      status="200") == 3  # fmt: skip
        assert metric(text, "vision_jobs_completed_total", stage="deepseek") == 0  # no worker

        port = free_port()
        worker = _start_worker(api, tmp_path, port)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(base, "/healthz")
            deadline = time.monotonic() + 60
            while metric(_scrape(base), "vision_jobs_completed_total", stage="deepseek") < 3:
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.2)
            text = _scrape(base)
            assert metric(text, "vision_stage_duration_seconds_count", stage="gemini",
                          result="ok") == 3  # fmt: skip
            assert metric(text, "vision_provider_call_duration_seconds_count",
                          provider="offline") == 6  # fmt: skip
            assert metric(text, "vision_jobs_created_total") == 0  # the API's, not the worker's
        finally:
            assert worker.stop() == 0
        done = api.sql('SELECT COUNT(*) FROM "visionJobs" WHERE status = ?', "complete")
        assert done == [(len(ids),)]
        text = _scrape(api.base)
        assert metric(text, "vision_queue_jobs", status="pending") == 0
        assert metric(text, "vision_queue_oldest_waiting_seconds") == 0


def test_a_worker_process_serves_the_three_probes_only(tmp_path: Path) -> None:
    with backend_server("sqlite", tmp_path, "--no-worker") as api:
        port = free_port()
        worker = _start_worker(api, tmp_path, port)
        base = f"http://127.0.0.1:{port}"
        try:
            assert _wait_for(base, "/healthz").json() == {"ok": True}
            assert httpx.get(base + "/readyz").json() == {"ok": True}
            assert "vision_jobs_in_flight" in _scrape(base)
            assert httpx.get(base + "/api/trpc/visionPipeline.getWorkerStatus").status_code == 404
        finally:
            assert worker.stop() == 0  # SIGTERM still drains the worker: exit 0


def test_a_metrics_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = server_env(tmp_path / "jobs.db")
        done = subprocess.run(
            [sys.executable, "-m", "rpc.cli", "worker", "--metrics-port", str(port)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"worker --metrics-port {port}: Address already in use"
    ]


@pytest.mark.anyio
async def test_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", providers="offline",
                        metrics_token="scrape-me")  # fmt: skip
    async with running_app(settings) as (_, client):
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        right = {"authorization": "Bearer scrape-me"}
        r = await client.get("/metrics", headers=right)
        assert r.status_code == 200 and "vision_queue_jobs" in r.text
        # The other probes stay open: load balancers carry no token.
        assert (await client.get("/readyz")).status_code == 200


@pytest.mark.anyio
async def test_unknown_procedures_share_one_label(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", providers="offline")
    async with running_app(settings) as (_, client):
        before = metric((await client.get("/metrics")).text, "vision_http_requests_total",
                        procedure="unknown", status="404")  # fmt: skip
        for i in range(3):
            await client.get(f"/api/trpc/scan.{i}")
        text = (await client.get("/metrics")).text
        assert "scan.1" not in text
        after = metric(text, "vision_http_requests_total", procedure="unknown", status="404")
        assert after - before == 3


def test_observed_remembers_only_paths_of_known_procedures() -> None:
    from rpc.observe import Observed
    from rpc.wire.dispatch import BASE_PATH

    observed = Observed(None, ["visionPipeline.getJobStatus"])  # type: ignore[arg-type]
    for n in range(50):  # a scanner's made-up names: counted as "unknown", never remembered
        labels, target = observed._describe(f"{BASE_PATH}probe{n}\n")
        assert labels == ("unknown",) and target == f"probe{n}\\n"
    assert observed._paths == {}
    known = f"{BASE_PATH}visionPipeline.getJobStatus,visionPipeline.getJobStatus"
    assert observed._describe(known) == (
        ("visionPipeline.getJobStatus",) * 2,
        "visionPipeline.getJobStatus,visionPipeline.getJobStatus",
    )
    assert list(observed._paths) == [known]
