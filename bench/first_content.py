"""Time to first content (issue 17, part 5): from the provider's first streamed chunk to the
job's first event that carries the answer so far, in the database and at an SSE subscriber.

    .venv/bin/python -m bench --only first_content [--first-content-jobs 20]

Per backend: ``vision-pipeline serve`` (API and worker, PARTIAL_CONTENT_MS at its default)
with the DeepSeek provider pointed at the fake of ``tests/fake_ai.py`` in this process, which
streams each answer as ``chat.completion.chunk`` events (10 content chunks, 30 ms apart);
vision is offline. A subscriber of ``visionPipeline.onMyJobs`` is connected before the jobs
are created, one job at a time. For each job:

- **row**: the first ``visionJobEvents`` row with ``partialContent``, its ``createdAt`` (the
  worker's clock at the write) minus the wall time the fake sent its first content chunk;
- **subscriber**: when the subscriber read that event minus when the fake sent the chunk
  (both ``time.monotonic()`` of this process).

Target: within 50 ms of the provider's first chunk (p95 of the jobs, each backend).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.common import (
    JOB_INPUT,
    Section,
    database,
    median,
    percentile,
    start_serve,
    token,
)
from storage.timeutil import as_datetime
from tests.fake_ai import DEEPSEEK_KEY, deepseek_answer, serve_fake_ai
from tests.support import sql

TARGET_MS = 50.0
PIECES = 10
CHUNK_DELAY = 0.03
NO_INPUT = json.dumps({"json": None, "meta": {"values": ["undefined"]}})


async def _first_partials(
    client: httpx.AsyncClient, seen: dict[int, float], ready: anyio.Event
) -> None:
    """Follow onMyJobs; note when each job's first event with partialContent arrives."""
    params = {"input": NO_INPUT}
    async with client.stream("GET", "/visionPipeline.onMyJobs", params=params) as response:
        data = ""
        async for line in response.aiter_lines():
            if line.startswith("event: connected"):
                ready.set()
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                body = json.loads(data)
                event = body.get("json", body) if isinstance(body, dict) else {}
                if isinstance(event, dict) and "partialContent" in event:
                    seen.setdefault(int(event["jobId"]), time.monotonic())
                data = ""


async def _wait(client: httpx.AsyncClient, job_id: int, within: float = 30) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        r = await client.get(
            "/visionPipeline.getJobStatus", params={"input": json.dumps({"jobId": job_id})}
        )
        status = str(r.json()["result"]["data"]["status"])
        if status in ("complete", "error"):
            return status
        await anyio.sleep(0.02)
    raise RuntimeError(f"job {job_id} did not finish within {within} s")


def _row_time(url: str, job_id: int) -> float:
    found = sql(
        url,
        'SELECT "createdAt" FROM "visionJobEvents" WHERE "jobId" = ? '
        'AND "partialContent" IS NOT NULL ORDER BY id LIMIT 1',
        job_id,
    )
    at = as_datetime(found[0][0]) if found else None
    if at is None:
        raise RuntimeError(f"job {job_id} has no event with partialContent")
    return at.timestamp()


async def measure(backend: str, tmp: Path, jobs: int) -> dict[str, Any]:
    row_ms: list[float] = []
    sse_ms: list[float] = []
    with serve_fake_ai() as fake:
        answer = deepseek_answer()
        answer.pieces, answer.chunk_delay = PIECES, CHUNK_DELAY
        fake.deepseek._default = answer
        async with database(backend, tmp, "first_content", schema=False) as url:
            proc = await start_serve(
                url, tmp / f"first_content_{backend}.log", PROVIDERS="auto",
                DEEPSEEK_API_KEY=DEEPSEEK_KEY, DEEPSEEK_BASE_URL=fake.deepseek_url,
                NO_PROXY="127.0.0.1,localhost", LOG_LEVEL="warning",
            )  # fmt: skip
            headers = {"authorization": f"Bearer {token('first-content')}"}
            try:
                async with (
                    httpx.AsyncClient(
                        base_url=proc.base + "/api/trpc", headers=headers, timeout=60
                    ) as client,  # fmt: skip
                    anyio.create_task_group() as tg,
                ):
                    seen: dict[int, float] = {}
                    ready = anyio.Event()
                    tg.start_soon(_first_partials, client, seen, ready)
                    with anyio.fail_after(30):
                        await ready.wait()
                    for n in range(jobs + 1):  # the first one warms up
                        r = await client.post("/visionPipeline.createJob", json=JOB_INPUT)
                        job_id = int(r.json()["result"]["data"]["jobId"])
                        if await _wait(client, job_id) != "complete":
                            raise RuntimeError(f"job {job_id} failed:\n{proc.log()[-2000:]}")
                        with anyio.fail_after(10):
                            while job_id not in seen:  # noqa: ASYNC110 (the reader's dict)
                                await anyio.sleep(0.01)
                        chunk_mono, chunk_wall = fake.deepseek.first_chunks[-1]
                        row = await anyio.to_thread.run_sync(_row_time, url, job_id)
                        if n:
                            row_ms.append((row - chunk_wall) * 1000)
                            sse_ms.append((seen[job_id] - chunk_mono) * 1000)
                    tg.cancel_scope.cancel()
            finally:
                proc.stop()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50": round(median(values), 2),
            "p95": round(percentile(values, 95), 2),
            "max": round(max(values), 2),
        }

    return {"jobs": jobs, "row_ms": summary(row_ms), "sse_ms": summary(sse_ms)}


async def section(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    for backend in o["backends"]:
        r = await measure(backend, tmp, o["first_content_jobs"])
        row, sse = r["row_ms"], r["sse_ms"]
        s.row(
            f"{backend}, {r['jobs']} jobs, {PIECES} chunks {CHUNK_DELAY * 1000:.0f} ms apart",
            row_p50_ms=row["p50"], row_p95_ms=row["p95"], row_max_ms=row["max"],
            sse_p50_ms=sse["p50"], sse_p95_ms=sse["p95"], sse_max_ms=sse["max"],
        )  # fmt: skip
        found[f"first content {backend}"] = sse["p95"]
        s.target(
            f"first content event {backend} (provider's first chunk → SSE subscriber, p95)",
            f"{sse['p95']:.1f} ms (row {row['p95']:.1f} ms)",
            f"< {TARGET_MS:g} ms",
            sse["p95"] < TARGET_MS,
        )
