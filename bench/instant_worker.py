"""A real worker process whose providers answer at once (or after fixed delays).

    DATABASE_URL=… WORKER_CONCURRENCY=16 .venv/bin/python -m bench.instant_worker \
        [--vision-seconds 0] [--content-seconds 0]

It is ``vision-pipeline worker`` with the providers and the image loader swapped: the real
``pipeline.worker.Worker`` on the real store (``storage.engine.open_store``), the real
``pipeline.stages.Stages`` (deadlines, usage, outputs row, attempt row), run by the same
``pipeline.runner`` (uvloop, the change feed beside it, SIGTERM/SIGINT for a graceful stop).
Only the AI calls are gone, so what is measured is the queue: claim, both fenced stage writes,
completion with its outputs and attempt rows. With delays (``anyio.sleep``) it stands for real
providers' latency.

At exit it prints one JSON line: jobs completed, and on SQLite how many commits carried how
many transactions (the group commit at work).
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio

from pipeline.analysis import (
    BrandInsights,
    Colors,
    Composition,
    ContentPiece,
    GeneratedContent,
    MoodAndTone,
    VisionAnalysis,
)
from pipeline.config import PipelineSettings
from pipeline.providers.base import ContentRequest, Image, StageResult, Usage, VisionRequest
from pipeline.runner import run as run_process
from pipeline.runner import run_worker
from pipeline.stages import Stages
from pipeline.worker import Worker
from rpc.config import Settings
from rpc.job_log import JobLines
from rpc.logs import setup_logging
from storage.engine import open_store

ANALYSIS = VisionAnalysis(
    colors=Colors(
        primary=["#287959"],
        secondary=["#f4f1ea"],
        description="A cool palette led by green (#287959, about 100%).",
    ),
    mood_and_tone=MoodAndTone(mood="vibrant, confident", tone="lively, expressive"),
    composition=Composition(layout="landscape (3:2) frame, a uniform field"),
    brand_insights=BrandInsights(
        brand_personality="natural, balanced",
        perceived_industry="health and wellness",
        target_audience="young, active consumers",
    ),
)
IMAGE = Image(b"\x89PNG\r\n\x1a\n", "image/png", 8, 8)


class BenchVision:
    name = "bench"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]:
        if self.seconds:
            await anyio.sleep(self.seconds)
        return StageResult(ANALYSIS, Usage("bench-vision", 1200, 300))


class BenchContent:
    name = "bench"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def generate(self, request: ContentRequest) -> StageResult[GeneratedContent]:
        if self.seconds:
            await anyio.sleep(self.seconds)
        piece = ContentPiece(title="Colour palette", body=request.analysis.colors.description)
        return StageResult(
            GeneratedContent(content_pieces=[piece]), Usage("bench-content", 400, 90)
        )


async def instant_image(url: str) -> Image:
    return IMAGE


async def run(vision_seconds: float, content_seconds: float) -> dict[str, object]:
    settings = PipelineSettings()
    store = await open_store(settings.database_url, create=False, pool_size=settings.pool_size())
    stages = Stages(
        BenchVision(vision_seconds),
        BenchContent(content_seconds),
        instant_image,
        settings.stage_timeout_seconds,
    )
    worker = Worker(store, stages, settings)
    job_lines = JobLines.of(worker.report)  # as `vision-pipeline worker` writes them
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(job_lines.flush_periodically)
        await run_worker(store, worker)
        tasks.cancel_scope.cancel()
    return {
        "completed": worker.state.completed,
        "failed": worker.state.failed,
        "commits": getattr(store.driver, "commits", None),
        "transactions": getattr(store.driver, "transactions", None),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vision-seconds", type=float, default=0.0)
    p.add_argument("--content-seconds", type=float, default=0.0)
    args = p.parse_args()
    # The logging `vision-pipeline worker` sets up (rpc.logs: its handler and formats,
    # LOG_LEVEL from the environment), so each finished job's line costs what it costs there.
    setup_logging(Settings())
    stats = run_process(run, args.vision_seconds, args.content_seconds)
    print("BENCH-STATS " + json.dumps(stats), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
