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


def test_observer_remembers_only_paths_of_known_procedures() -> None:
    from rpc.observe import Observer
    from rpc.wire.dispatch import BASE_PATH

    observer = Observer(["visionPipeline.getJobStatus"])
    for n in range(50):  # a scanner's made-up names: counted as "unknown", never remembered
        labels, target = observer._describe(f"{BASE_PATH}probe{n}\n")
        assert labels == ("unknown",) and target == f"probe{n}\\n"
    assert observer._paths == {}
    known = f"{BASE_PATH}visionPipeline.getJobStatus,visionPipeline.getJobStatus"
    assert observer._describe(known) == (
        ("visionPipeline.getJobStatus",) * 2,
        "visionPipeline.getJobStatus,visionPipeline.getJobStatus",
    )
    assert list(observer._paths) == [known]


def test_observer_batches_count_as_requests_one_by_one() -> None:
    """Requests noted and moved in batches (grouped by path and status) give the counts,
    buckets and sums that each request observed alone would."""
    from pipeline import metrics
    from rpc.observe import Observer
    from rpc.wire.dispatch import BASE_PATH

    status_path, batch_path = f"{BASE_PATH}a.status", f"{BASE_PATH}a.status,a.history"
    observer = Observer(["a.status", "a.history"])
    requests = [(status_path, 200, 0.0004), (batch_path, 207, 0.03), (status_path, 404, 0.002),
                ("/healthz", 200, 0.0001), (f"{BASE_PATH}nope", 404, 0.7)] * 300  # fmt: skip
    expected_counts: dict[tuple[str, str], float] = {}
    expected_seconds: dict[tuple[str], list[float]] = {}
    for path, status, seconds in requests:
        labels, _ = observer._describe(path)
        for label in labels:
            key = (label, str(status))
            expected_counts[key] = expected_counts.get(key, 0) + 1
            expected_seconds.setdefault((label,), []).append(seconds)
    counts_before = dict(metrics.HTTP_REQUESTS.values)
    buckets_before = {k: list(v) for k, v in metrics.HTTP_SECONDS.values.items()}
    for path, status, seconds in requests:  # over FLUSH_LINES: some batches move on their own
        observer.note({"method": "GET", "path": path}, status, time.perf_counter() - seconds)
    assert 0 < len(observer.seen) < len(requests)
    observer.fold_seen()
    assert observer.seen == []
    for key, count in expected_counts.items():
        assert metrics.HTTP_REQUESTS.values[key] - counts_before.get(key, 0) == count
    buckets = metrics.HTTP_SECONDS.buckets
    for key, seconds_seen in expected_seconds.items():
        before = buckets_before.get(key, [0.0] * (len(buckets) + 1))
        moved = [a - b for a, b in zip(metrics.HTTP_SECONDS.values[key], before, strict=True)]
        per_bucket = [sum(1 for s in seconds_seen if s <= b and (i == 0 or s > buckets[i - 1]))
                      for i, b in enumerate(buckets)]  # fmt: skip
        assert moved[:-1] == per_bucket, key
        assert moved[-1] == pytest.approx(sum(seconds_seen), rel=1e-3)  # noted with a clock


@pytest.mark.anyio
async def test_app_notes_the_status_each_path_sent() -> None:
    """The tRPC path's status comes back from the dispatcher; the other paths' (and a
    middleware stack's, `_answering`) from what they send, kept when the app then fails."""
    from starlette.applications import Starlette

    from rpc.app import App, _answering

    async def receive() -> dict[str, object]:
        return {}

    async def send(message: object) -> None:
        pass

    async def sends(status: int, then_fail: bool, send_: object) -> None:
        await send_({"type": "http.response.start", "status": status, "headers": []})  # type: ignore[operator]
        if then_fail:
            raise RuntimeError("after the start")

    app = App(Starlette(), None, ["a.b"])

    async def hot(scope: object, receive_: object, send_: object) -> int:
        await sends(204, False, send_)
        return 204

    app.hot = hot

    async def cold(scope: object, receive_: object, send_: object) -> None:
        path = scope["path"]  # type: ignore[index]
        if path == "/fails-first":
            raise RuntimeError("before any response")
        await sends(201 if path == "/ok" else 202, path == "/fails-after", send_)

    app.cold = cold  # type: ignore[assignment]
    headers = [(b"host", b"127.0.0.1")]
    for path in ("/api/trpc/a.b", "/ok", "/fails-after", "/fails-first"):
        scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
        try:
            await app(scope, receive, send)
        except RuntimeError:
            pass
    statuses = [(path, status) for _, _, path, status, _ in app.observer.seen]
    assert statuses == [("/api/trpc/a.b", 204), ("/ok", 201), ("/fails-after", 202),
                        ("/fails-first", 500)]  # fmt: skip

    async def teapot(scope: object, receive_: object, send_: object) -> None:
        await sends(418, False, send_)

    assert await _answering(teapot)({"type": "http"}, receive, send) == 418
