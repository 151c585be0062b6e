"""Daily spending budgets (issue 17 item 4), on both backends.

A user's spend today (UTC) is the cost of their attempts that ended today; once it reached
their budget (theirs from `users set-budget`, else USER_DAILY_BUDGET_USD), createJob answers
PAYMENT_REQUIRED (402) and creates nothing; admins are exempt; getUsage tells the spend and
the budget. The HTTP tests run servers without a worker and write the attempt rows a worker
would write (the job's updatedAt and the attempt's endedAt at the same moment); the store's
own writes are checked apart.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest

from rpc import cli
from rpc.auth.sessions import Caller
from rpc.config import Settings
from rpc.procedures import budgets
from rpc.procedures.budget_memo import NO_BUDGET_SECONDS, NoBudgetMemo
from rpc.procedures.budgets import midnight
from rpc.wire.errors import TRPCError
from storage.budgets import UserSpend
from storage.jobstate import Outcome, Stage
from storage.records import AttemptRecord, NewJob, Outputs
from storage.store import JobStore
from storage.timeutil import to_sqlite, utcnow
from tests.support import Server, backend_server

CREATE = "/visionPipeline.createJob"
USAGE = "/visionPipeline.getUsage"
REFUSED = re.compile(
    r"^Daily budget of \$1\.00 reached \(\$(\d+\.\d\d) spent today\); "
    r"it resets at (\d{4}-\d\d-\d\dT00:00:00Z)\.$"
)
OUTPUTS = Outputs(*([None] * 9), content_pieces="[]")  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:  # fmt: skip
    """A budget of $1 a day by default; no worker (jobs stay where a test puts them)."""
    tmp = tmp_path_factory.mktemp("budget")
    with backend_server(request.param, tmp, "--no-worker", prefix="vp_budget",
                        USER_DAILY_BUDGET_USD="1") as srv:  # fmt: skip
        yield srv


def job(**overrides: Any) -> dict[str, Any]:
    return {"imageUrl": "https://images.example.com/logo.png", "analysisPurpose": "budget",
            "outputFormat": "bullet_points", **overrides}  # fmt: skip


def new_user(server: Server, open_id: str | None = None) -> tuple[httpx.Client, int, str]:
    open_id = open_id or f"budget-{uuid.uuid4().hex[:12]}"
    client = server.client(open_id)
    me = client.get("/auth.me").json()["result"]["data"]
    return client, int(me["id"]), open_id


def jobs_of(server: Server, user_id: int) -> list[int]:
    found = server.sql('SELECT id FROM "visionJobs" WHERE "userId" = ? ORDER BY id', user_id)
    return [int(r[0]) for r in found]


def _when(server: Server, at: datetime) -> Any:
    return to_sqlite(at) if server.database_url.startswith("sqlite") else at


def spend(server: Server, job_id: int, cost: float, at: datetime | None = None) -> None:
    """An attempt of ``job_id`` that cost ``cost`` and ended ``at`` (now), as a worker writes
    it: the attempt row, and the job's updatedAt at the same moment."""
    at = at or datetime.now(UTC)
    (row,) = server.sql('SELECT COALESCE(MAX(attempt), 0) + 1 FROM "visionJobSessions" '
                        'WHERE "jobId" = ?', job_id)  # fmt: skip
    server.sql(
        'INSERT INTO "visionJobSessions" ("jobId", attempt, outcome, "endedAt", '
        '"geminiInputTokens", "geminiOutputTokens", "geminiLatencyMs", "deepseekInputTokens", '
        '"deepseekOutputTokens", "deepseekLatencyMs", "costUsd") '
        "VALUES (?, ?, 'complete', ?, 0, 0, 0, 0, 0, 0, ?)",
        job_id, int(row[0]), _when(server, at), cost,
    )  # fmt: skip
    server.sql('UPDATE "visionJobs" SET "updatedAt" = ? WHERE id = ?', _when(server, at), job_id)


def created(client: httpx.Client) -> int:
    r = client.post(CREATE, json=job())
    assert r.status_code == 200, r.text
    return int(r.json()["result"]["data"]["jobId"])


def usage(client: httpx.Client) -> dict[str, Any]:
    r = client.get(USAGE)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["result"]["data"]
    return data


def run_cli(server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *args: str) -> tuple[int, str, str]:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", server.database_url)
    monkeypatch.setenv("USER_DAILY_BUDGET_USD", "1")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _tomorrow() -> str:
    return (midnight(datetime.now(UTC)) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_reached_budget_refuses_createjob_with_402_and_creates_nothing(server: Server) -> None:
    client, user_id, _ = new_user(server)
    with closing(client):
        first = created(client)
        spend(server, first, 0.6)
        second = created(client)  # $0.60 of $1.00: still allowed
        spend(server, second, 0.45)
        r = client.post(CREATE, json=job())
        assert r.status_code == 402, r.text
        error = r.json()["error"]
        assert error["code"] == -32002
        assert error["data"]["code"] == "PAYMENT_REQUIRED"
        match = REFUSED.match(error["message"])
        assert match is not None, error["message"]
        assert match.group(1) == "1.05"
        assert match.group(2) == _tomorrow()
        assert 1 <= int(r.headers["retry-after"]) <= 86_400
        assert jobs_of(server, user_id) == [first, second]
        # With an idempotencyKey too; and a key the user holds is still answered.
        r = client.post(CREATE, json=job(idempotencyKey="over"))
        assert r.status_code == 402
        assert jobs_of(server, user_id) == [first, second]


def test_spend_of_other_days_and_other_users_does_not_count(server: Server) -> None:
    client, _, _ = new_user(server)
    other, _, _ = new_user(server)
    with closing(client), closing(other):
        old = created(client)
        spend(server, old, 5.0, at=midnight(datetime.now(UTC)) - timedelta(seconds=1))
        spend(server, created(other), 5.0)  # the other user is over their budget
        assert usage(client)["spentTodayUsd"] == 0
        created(client)
        assert other.post(CREATE, json=job()).status_code == 402


def test_cache_hits_cost_nothing(server: Server) -> None:
    client, _, _ = new_user(server)
    with closing(client):
        paid = created(client)
        spend(server, paid, 0.9)
        for _ in range(3):  # results served from the cache: attempt rows that cost 0
            spend(server, created(client), 0.0)
        assert usage(client)["spentTodayUsd"] == pytest.approx(0.9)
        created(client)


def test_get_usage(server: Server) -> None:
    client, _, _ = new_user(server)
    with closing(client):
        assert usage(client) == {
            "spentTodayUsd": 0, "budgetUsd": 1.0, "remainingUsd": 1.0, "resetsAt": _tomorrow(),
            "exempt": False, "budgetSource": "default",
        }  # fmt: skip
        job_id = created(client)
        spend(server, job_id, 0.25)
        spend(server, job_id, 0.125)  # a retried job: each attempt's cost
        data = usage(client)
        assert data["spentTodayUsd"] == pytest.approx(0.375)
        assert data["remainingUsd"] == pytest.approx(0.625)
        spend(server, job_id, 1.0)
        assert usage(client)["remainingUsd"] == 0


def test_admins_are_exempt(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    open_id = f"budget-admin-{uuid.uuid4().hex[:8]}"
    code, _, err = run_cli(server, monkeypatch, capsys, "users", "set-role", open_id, "admin",
                           "--create")  # fmt: skip
    assert code == 0, err
    client, user_id, _ = new_user(server, open_id)
    with closing(client):
        spend(server, created(client), 50.0)
        second = created(client)
        assert jobs_of(server, user_id)[-1] == second
        data = usage(client)
        assert data["exempt"] is True
        assert data["budgetUsd"] is None and data["remainingUsd"] is None
        assert data["spentTodayUsd"] == pytest.approx(50.0)


def test_set_budget(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client, user_id, open_id = new_user(server)
    with closing(client):
        spend(server, created(client), 1.5)
        assert client.post(CREATE, json=job()).status_code == 402

        code, out, _ = run_cli(server, monkeypatch, capsys, "users", "set-budget", open_id, "2")
        assert code == 0
        assert f"user {open_id} (id {user_id}): daily budget $2.00" in out
        assert usage(client)["budgetSource"] == "user"
        assert usage(client)["budgetUsd"] == 2.0
        created(client)

        code, out, _ = run_cli(server, monkeypatch, capsys, "users", "set-budget", open_id, "1.25")
        assert code == 0
        r = client.post(CREATE, json=job())
        assert r.status_code == 402
        assert r.json()["error"]["message"].startswith("Daily budget of $1.25 reached")

        code, out, _ = run_cli(server, monkeypatch, capsys, "users", "set-budget", open_id, "none")
        assert code == 0 and "daily budget none" in out
        data = usage(client)
        assert (data["budgetUsd"], data["budgetSource"], data["exempt"]) == (None, "none", False)
        created(client)

        code, out, _ = run_cli(server, monkeypatch, capsys, "users", "set-budget", open_id,
                               "default")  # fmt: skip
        assert code == 0 and "daily budget default ($1.00)" in out
        assert usage(client)["budgetSource"] == "default"
        assert client.post(CREATE, json=job()).status_code == 402

        code, out, _ = run_cli(server, monkeypatch, capsys, "users", "list", "--json")
        assert code == 0
        (mine,) = [u for u in json.loads(out) if u["openId"] == open_id]
        assert mine["budget"] == "default ($1.00)"
        code, out, _ = run_cli(server, monkeypatch, capsys, "users", "list")
        assert "default ($1.00)" in out


def test_set_budget_refuses_an_unknown_user_and_a_bad_amount(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(server, monkeypatch, capsys, "users", "set-budget", "nobody-xyz", "3")
    assert code != 0
    assert "user nobody-xyz does not exist" in err
    for bad in ("-1", "lots", "nan"):
        with pytest.raises(SystemExit) as exc:
            run_cli(server, monkeypatch, capsys, "users", "set-budget", "nobody-xyz", bad)
        assert exc.value.code == 2


# --- the store: the worker's own writes count -------------------------------------------------


@pytest.mark.anyio
async def test_the_spend_is_the_cost_of_the_attempts_the_worker_wrote(store: JobStore) -> None:
    user_id, _ = await store.user_seen("spender", None)
    new = NewJob(user_id, "http://img/x.png", None, "p", "bullet_points", 1.0, None, 3)
    for _ in range(3):
        await store.create_job(new)
    today = midnight(utcnow())
    spent = await store.user_spend(user_id, 0.0, today)
    assert spent is not None and spent.spent is None  # no budget applies: not read
    lease = timedelta(minutes=5)
    first, second, third = await store.claim_jobs("w1", 3, lease)
    done = AttemptRecord(Outcome.COMPLETE, Stage.CONTENT, cost_usd=0.5)
    assert await store.complete_job(first, "[]", OUTPUTS, done)
    failed = AttemptRecord(Outcome.RETRY, Stage.VISION, "later", cost_usd=0.25)
    assert await store.end_attempt(second, failed, retry_at=utcnow())
    cached = AttemptRecord(Outcome.COMPLETE, Stage.CONTENT, cost_usd=0.0)
    assert await store.complete_job(third, "[]", OUTPUTS, cached)
    spent = await store.user_spend(user_id, 0.0, today, always=True)
    assert spent is not None and spent.spent == pytest.approx(0.75)
    # The retried job (pending, then running again) keeps its failed attempt's cost.
    (again,) = await store.claim_jobs("w2", 1, lease)
    assert again.id == second.id
    assert (await store.user_spend(user_id, 1.0, today)).spent == pytest.approx(0.75)  # type: ignore[union-attr]
    failed_for_good = AttemptRecord(Outcome.ERROR, Stage.VISION, "no", cost_usd=0.125)
    assert await store.end_attempt(again, failed_for_good)
    assert (await store.user_spend(user_id, 1.0, today)).spent == pytest.approx(0.875)  # type: ignore[union-attr]
    tomorrow = today + timedelta(days=1)
    assert (await store.user_spend(user_id, 1.0, tomorrow)).spent == 0  # type: ignore[union-attr]


class _Spends:
    """A store's ``user_spend`` as the check calls it, counting the reads."""

    def __init__(self, budget: float | None, spent: float) -> None:
        self.reads = 0
        self.row = UserSpend("user", budget, spent)

    async def user_spend(self, user_id: int, default: float, today: datetime) -> UserSpend:
        self.reads += 1
        await anyio.sleep(0.01)
        return self.row


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_user_without_any_budget_is_not_read_again_for_a_few_seconds(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    """With no default budget, a user just found without one of their own costs createJob no
    read for NO_BUDGET_SECONDS; with a default, or a budget of their own, every call reads."""
    clock = [100.0]
    monkeypatch.setattr(budgets, "monotonic", lambda: clock[0])
    caller = Caller(7, "memo", "user")
    free, memo = _Spends(None, 5.0), NoBudgetMemo()
    no_default = Settings(user_daily_budget_usd=0)
    for _ in range(3):
        await budgets.check(free, no_default, caller, memo)  # type: ignore[arg-type]
    assert free.reads == 1
    clock[0] += NO_BUDGET_SECONDS + 0.01
    await budgets.check(free, no_default, caller, memo)  # type: ignore[arg-type]
    assert free.reads == 2
    # Their own budget (set meanwhile): read every time, and refused once spent.
    own = _Spends(1.0, 5.0)
    clock[0] += NO_BUDGET_SECONDS + 0.01
    for _ in range(2):
        with pytest.raises(TRPCError) as refused:
            await budgets.check(own, no_default, caller, memo)  # type: ignore[arg-type]
        assert refused.value.code == "PAYMENT_REQUIRED"
    assert own.reads == 2
    # A default budget: every call reads (the user's spend is what decides).
    with_default, memo = _Spends(None, 0.5), NoBudgetMemo()
    for _ in range(2):
        await budgets.check(with_default, Settings(user_daily_budget_usd=1), caller, memo)  # type: ignore[arg-type]
    assert with_default.reads == 2
    # Calls of one user that arrive together (a tRPC batch) share one read.
    together, memo = _Spends(None, 0.0), NoBudgetMemo()
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(budgets.check, together, Settings(user_daily_budget_usd=1), caller, memo)
    assert together.reads == 1 and memo.reading == {}
