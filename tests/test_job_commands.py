"""`vision-pipeline jobs list/show/stats/retry/cancel` and `users list/set-role` against
databases filled through the API (SQLite and PostgreSQL), run in-process via rpc.cli.main."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator

import httpx
import pytest

from rpc import cli
from tests.support import Server, backend_server, wait_for_status

BODY = {"analysisPurpose": "p", "outputFormat": "bullet_points"}


def run(server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        *args: str) -> tuple[int, str, str]:  # fmt: skip
    """The command in this process, on the server's database, with no terminal attached."""
    monkeypatch.setenv("DATABASE_URL", server.database_url)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def create(client: httpx.Client, image_url: str) -> int:
    r = client.post("/visionPipeline.createJob", json={"imageUrl": image_url, **BODY})
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


@pytest.fixture(scope="module")
def filled(server: Server, images: str) -> dict[str, list[int]]:
    """cmd-alice: 3 complete jobs; cmd-bob: 1 job in error (its image is missing)."""
    jobs: dict[str, list[int]] = {"cmd-alice": [], "cmd-bob": []}
    with server.client("cmd-alice") as alice, server.client("cmd-bob") as bob:
        jobs["cmd-alice"] = [create(alice, f"{images}/{c}.png") for c in ("red", "blue", "green")]
        jobs["cmd-bob"] = [create(bob, f"{images}/missing.png")]
        for job_id in jobs["cmd-alice"]:
            assert wait_for_status(alice, job_id)["status"] == "complete"
        assert wait_for_status(bob, jobs["cmd-bob"][0])["status"] == "error"
    return jobs


def test_list_filters_by_user_status_since_and_limit(
    server: Server, filled: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "list", "--user", "cmd-alice", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [j["id"] for j in listed] == sorted(filled["cmd-alice"], reverse=True)  # newest first
    assert {(j["openId"], j["status"], j["progress"]) for j in listed} == {
        ("cmd-alice", "complete", 100)
    }
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "list", "--status", "error",
                       "--user", "cmd-bob", "--json")  # fmt: skip
    assert [j["id"] for j in json.loads(out)] == filled["cmd-bob"]
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "list", "--user", "cmd-alice",
                       "--limit", "1", "--json")  # fmt: skip
    assert [j["id"] for j in json.loads(out)] == [max(filled["cmd-alice"])]
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "list", "--since",
                       "2999-01-01T00:00", "--json")  # fmt: skip
    assert json.loads(out) == []
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "list", "--since", "1h",
                       "--user", "cmd-alice")  # fmt: skip
    lines = out.splitlines()
    header = next(line for line in lines if line.strip().startswith("id"))
    assert header.split() == ["id", "openId", "status", "progress", "retryCount", "errorStage",
                              "costUsd", "createdAt", "completedAt"]  # fmt: skip
    rows = [line for line in lines if "cmd-alice" in line]
    assert len(rows) == 3 and len({row.index("complete") for row in rows}) == 1  # aligned
    assert lines[-1] == "3 jobs"


def test_a_bad_since_is_one_line_and_exit_2(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(server, monkeypatch, capsys, "jobs", "list", "--since", "yesterday")
    assert exited.value.code == 2
    assert "'yesterday' is not a time" in capsys.readouterr().err
    code, _, err = run(server, monkeypatch, capsys, "jobs", "stats", "--since", "soon")
    assert code == 2 and err.startswith("--since: 'soon' is not a time")


def test_show_has_the_job_its_attempts_and_events(
    server: Server, filled: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    job_id = filled["cmd-alice"][0]
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "show", str(job_id), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["job"]["id"] == job_id and shown["job"]["openId"] == "cmd-alice"
    assert shown["job"]["status"] == "complete" and shown["job"]["deepseekOutput"]
    [attempt] = shown["attempts"]
    assert attempt["outcome"] == "complete" and attempt["attempt"] == 1
    assert attempt["workerId"] and attempt["startedAt"] <= attempt["endedAt"]
    [stored] = server.sql(
        'SELECT "geminiModel", "geminiInputTokens", "deepseekOutputTokens", "costUsd" '
        'FROM "visionJobSessions" WHERE "jobId" = ?', job_id)  # fmt: skip
    assert (attempt["geminiModel"], attempt["geminiInputTokens"],
            attempt["deepseekOutputTokens"]) == stored[:3]  # fmt: skip
    assert attempt["geminiModel"] and attempt["costUsd"] == pytest.approx(float(stored[3]))
    statuses = [e["status"] for e in shown["events"]]
    assert statuses[0] == "pending" and statuses[-1] == "complete"
    assert "gemini_analyzing" in statuses and "deepseek_generating" in statuses

    code, out, _ = run(server, monkeypatch, capsys, "jobs", "show", str(job_id))
    assert code == 0 and f"job {job_id}" in out
    assert "attempts (1)" in out and f"events ({len(statuses)})" in out
    code, out, err = run(server, monkeypatch, capsys, "jobs", "show", "987654")
    assert (code, out, err) == (1, "", "job 987654 does not exist\n")


def test_show_has_the_key_and_the_cache_choice_createjob_was_given(
    server: Server, images: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    with server.client("cmd-keyed") as client:
        body = {"imageUrl": f"{images}/red.png", **BODY, "cache": False, "idempotencyKey": "k-1"}
        r = client.post("/visionPipeline.createJob", json=body)
        assert r.status_code == 200, r.text
        job_id = int(r.json()["result"]["data"]["jobId"])
        assert wait_for_status(client, job_id)["status"] == "complete"
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "show", str(job_id), "--json")
    job = json.loads(out)["job"]
    assert code == 0 and job["idempotencyKey"] == "k-1" and job["bypassCache"] is True
    assert job["partialContent"] is None  # cleared at completion
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "show", str(job_id))
    assert code == 0 and "k-1" in out


def test_stats_match_the_database(
    server: Server, filled: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "stats", "--since", "1h", "--json")
    assert code == 0
    stats = json.loads(out)
    by_status = dict(server.sql('SELECT status, COUNT(*) FROM "visionJobs" GROUP BY status'))
    assert {k: v for k, v in stats["counts"].items() if v} == by_status
    durations = sorted(
        (completed - created).total_seconds() if not isinstance(created, str) else
        _seconds_between(created, completed)
        for created, completed in server.sql(
            'SELECT "createdAt", "completedAt" FROM "visionJobs" WHERE status = ?', "complete")
    )  # fmt: skip
    assert stats["completed"] == len(durations) >= 3
    for key, fraction in (("p50_s", 0.5), ("p95_s", 0.95)):
        expected = durations[max(math.ceil(fraction * len(durations)) - 1, 0)]
        assert stats[key] == pytest.approx(expected, abs=0.002)
    assert stats["throughput_per_min"] == pytest.approx(len(durations) / 60)
    failed = dict(server.sql('SELECT "errorStage", COUNT(*) FROM "visionJobs" '
                             "WHERE status = ? GROUP BY \"errorStage\"", "error"))  # fmt: skip
    assert stats["failures_by_stage"] == failed and sum(failed.values()) >= 1
    [(cost,)] = server.sql('SELECT SUM("costUsd") FROM "visionJobs"')
    assert stats["cost_usd"]["30d"] == pytest.approx(float(cost))
    assert stats["cost_usd"]["today"] <= stats["cost_usd"]["7d"] <= stats["cost_usd"]["30d"]

    code, out, _ = run(server, monkeypatch, capsys, "jobs", "stats")
    assert code == 0 and "completed (since 24h)" in out and "time to complete p95" in out


def _seconds_between(start: str, end: str) -> float:
    from storage.timeutil import as_datetime

    a, b = as_datetime(start), as_datetime(end)
    assert a is not None and b is not None
    return (b - a).total_seconds()


def test_retry_and_cancel_by_id_say_what_happened(
    server: Server, filled: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    [failed] = filled["cmd-bob"]
    done = filled["cmd-alice"][0]
    code, out, err = run(server, monkeypatch, capsys, "jobs", "retry", "999999")
    assert code == 1 and err == "job 999999 does not exist\n" and "0 of 1 jobs" in out
    code, out, err = run(server, monkeypatch, capsys, "jobs", "retry", str(done))
    assert code == 1 and err == f"job {done} is complete: only a job in error can be retried\n"
    code, out, err = run(server, monkeypatch, capsys, "jobs", "cancel", str(done), "999999")
    assert code == 1
    assert err.splitlines() == [
        f"job {done} is complete: only a waiting or running job can be cancelled",
        "job 999999 does not exist",
    ]
    code, out, err = run(server, monkeypatch, capsys, "jobs", "retry", str(failed), "999999")
    assert code == 1 and f"job {failed} is pending again, retries reset" in out
    assert "1 of 2 jobs retried" in out
    with server.client("cmd-bob") as bob:
        assert wait_for_status(bob, failed)["status"] == "error"  # and fails once more
    code, out, err = run(server, monkeypatch, capsys, "jobs", "retry", str(failed))
    assert code == 0 and err == "" and out.endswith("1 of 1 jobs retried\n")
    with server.client("cmd-bob") as bob:
        wait_for_status(bob, failed)


def test_retry_and_cancel_need_ids_or_a_filter_not_both(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(server, monkeypatch, capsys, "jobs", "retry")
    assert code == 2 and err.startswith("which jobs?")
    code, _, err = run(server, monkeypatch, capsys, "jobs", "cancel", "1", "--since", "1h")
    assert code == 2 and "not both" in err
    with pytest.raises(SystemExit):
        run(server, monkeypatch, capsys, "jobs", "retry", "--status", "complete")


def test_users_list_and_set_role_refuses_an_unknown_user_without_create(
    server: Server, filled: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, out, err = run(server, monkeypatch, capsys, "users", "set-role", "cmd-nobody", "admin")
    assert (code, out) == (1, "")
    assert err == "user cmd-nobody does not exist; --create to add them\n"
    assert server.sql('SELECT id FROM users WHERE "openId" = ?', "cmd-nobody") == []
    code, out, _ = run(server, monkeypatch, capsys, "users", "set-role", "cmd-bob", "admin")
    assert code == 0 and "user cmd-bob" in out and out.endswith("is now admin\n")
    code, out, _ = run(server, monkeypatch, capsys, "users", "set-role", "cmd-new", "admin",
                       "--create")  # fmt: skip
    assert code == 0
    code, out, _ = run(server, monkeypatch, capsys, "users", "list", "--json")
    users = {u["openId"]: u for u in json.loads(out)}
    assert users["cmd-bob"]["role"] == "admin" and users["cmd-new"]["role"] == "admin"
    assert users["cmd-alice"]["role"] == "user" and users["cmd-alice"]["jobs"] == 3
    assert "cmd-nobody" not in users
    code, out, _ = run(server, monkeypatch, capsys, "users", "list")
    assert any(line.split()[1:2] == ["cmd-alice"] for line in out.splitlines())


# -- by filter, on a database without a worker (the jobs stay pending) -----------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def idle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         images: str) -> Iterator[tuple[Server, list[int]]]:  # fmt: skip
    """A server without a worker and 105 pending jobs of cmd-bulk, 2 of cmd-few."""
    with backend_server(request.param, tmp_path_factory.mktemp("idle"), "--no-worker") as srv:
        with srv.client("cmd-bulk") as bulk, srv.client("cmd-few") as few:
            ids = [create(bulk, f"{images}/red.png") for _ in range(105)]
            ids += [create(few, f"{images}/red.png") for _ in range(2)]
        yield srv, ids


def statuses(server: Server, open_id: str) -> dict[str, int]:
    return dict(server.sql(
        'SELECT j.status, COUNT(*) FROM "visionJobs" j JOIN users u ON u.id = j."userId" '
        'WHERE u."openId" = ? GROUP BY j.status', open_id))  # fmt: skip


def test_a_filter_over_100_jobs_changes_nothing_without_yes(
    idle: tuple[Server, list[int]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    server, _ = idle
    code, out, err = run(server, monkeypatch, capsys, "jobs", "cancel", "--user", "cmd-bulk")
    assert code == 1 and out == ""
    assert err == ("105 jobs match: more than 100, so nothing was changed; "
                   "add --yes to cancel them all\n")  # fmt: skip
    assert statuses(server, "cmd-bulk") == {"pending": 105}

    code, out, err = run(server, monkeypatch, capsys, "jobs", "cancel", "--user", "cmd-bulk",
                         "--since", "1h", "--yes")  # fmt: skip
    assert (code, err) == (0, "") and out == "105 jobs cancelled of 105 matching\n"
    assert statuses(server, "cmd-bulk") == {"error": 105}
    assert statuses(server, "cmd-few") == {"pending": 2}  # not in the filter

    code, out, err = run(server, monkeypatch, capsys, "jobs", "retry", "--user", "cmd-bulk")
    assert code == 1 and "add --yes to retry them all" in err
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "retry", "--status", "error",
                       "--user", "cmd-bulk", "--yes", "--json")  # fmt: skip
    assert code == 0 and json.loads(out) == {
        "retried": 105,
        "matching": 105,
        "outcomes": {"pending again, retries reset": 105},
    }
    assert statuses(server, "cmd-bulk") == {"pending": 105}


def test_a_small_filter_and_several_ids_change_without_asking(
    idle: tuple[Server, list[int]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    server, ids = idle
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "cancel", "--user", "cmd-few")
    assert code == 0 and out == "2 jobs cancelled of 2 matching\n"
    few = ids[-2:]
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "retry", *map(str, few))
    assert code == 0 and out.endswith("2 of 2 jobs retried\n")
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "retry", "--json", str(few[0]), "0")
    assert code == 1 and json.loads(out) == {
        "retried": {},
        "missing": [0],
        "leftAlone": {str(few[0]): "pending"},
    }
    code, out, _ = run(server, monkeypatch, capsys, "jobs", "cancel", *map(str, few))
    assert code == 0 and out.splitlines() == [
        f"job {few[0]} is cancelled",
        f"job {few[1]} is cancelled",
        "2 of 2 jobs cancelled",
    ]
    rows = server.sql('SELECT "errorStage", "errorMessage" FROM "visionJobs" WHERE id = ?', few[0])
    assert rows == [("cancelled", "Cancelled by an operator")]
