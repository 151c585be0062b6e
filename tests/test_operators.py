"""Operators: getWorkerStatus for admins only, `users set-role`, `jobs retry`, `jobs cancel`."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, Server, wait_for_status


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rpc.cli", *args], cwd=ROOT, env=server.env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_worker_status_is_for_admins_only(server: Server) -> None:
    with server.client("ops-plain-user") as client:
        r = client.get("/visionPipeline.getWorkerStatus")
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["message"] == "You do not have required permission (10002)"
    assert error["data"]["code"] == "FORBIDDEN"

    done = cli(server, "users", "set-role", "ops-admin", "admin", "--create")
    assert done.returncode == 0, done.stderr
    with server.client("ops-admin") as client:
        r = client.get("/visionPipeline.getWorkerStatus")
    assert r.status_code == 200, r.text
    status = r.json()["result"]["data"]
    assert status["isRunning"] is True
    assert status["concurrency"] == 16 and status["maxRetries"] == 3
    assert status["pollIntervalMs"] == 200 and isinstance(status["jobsInFlight"], int)
    assert isinstance(status["queue"], dict)


def test_an_error_job_can_be_retried_and_a_waiting_job_cancelled(
    server: Server, images: str
) -> None:
    body = {"imageUrl": f"{images}/missing.png", "analysisPurpose": "p",
            "outputFormat": "bullet_points"}  # fmt: skip
    with server.client("ops-owner") as client:
        job_id = client.post("/visionPipeline.createJob", json=body).json()["result"]["data"][
            "jobId"
        ]
        assert wait_for_status(client, job_id)["status"] == "error"
        done = cli(server, "jobs", "retry", str(job_id))
        assert done.returncode == 0 and "pending again" in done.stdout
        again = wait_for_status(client, job_id)
        assert again["status"] == "error" and again["retryCount"] == 1  # reset, then failed once
        assert cli(server, "jobs", "cancel", str(job_id)).returncode == 1  # nothing to cancel
