"""The result cache's win (issue 17), the three-formats case: each of N images asked for the
three output formats (bullet points, detailed analysis, social media post), 3N jobs created
at once, run by one in-process worker with the cache on (CACHE_TTL_HOURS=168) and off (0).
Providers are scripted fakes named and priced as Gemini and DeepSeek with typical token counts
(vision: 1,300 in / 450 out; content: 900 in / 600 out, at the default prices) and a fixed
latency each, so the figures are provider calls, USD and the wall time of the batch.

    python -m bench.cache [--images 20] [--vision-ms 400] [--content-ms 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import BACKENDS, database
from pipeline.analysis import (
    BrandInsights,
    Colors,
    Composition,
    ContentPiece,
    GeneratedContent,
    MoodAndTone,
    VisionAnalysis,
)
from pipeline.cache import StageCache
from pipeline.config import PipelineSettings
from pipeline.providers.base import ContentRequest, Image, StageResult, Usage, VisionRequest
from pipeline.stages import Stages
from pipeline.worker import Worker
from storage.engine import open_store
from storage.jobstate import FINAL
from storage.records import NewJob
from storage.store import JobStore

FORMATS = ("bullet_points", "detailed_analysis", "social_media_post")


class Vision:
    name, model = "gemini", "gemini-3.8-flash"

    def __init__(self, latency: float) -> None:
        self.latency, self.calls = latency, 0

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]:
        self.calls += 1
        await anyio.sleep(self.latency)
        analysis = VisionAnalysis(
            colors=Colors(primary=["#" + request.image.data[-6:].hex()[:6]]),
            mood_and_tone=MoodAndTone(mood="calm"), composition=Composition(layout="centred"),
            brand_insights=BrandInsights(brand_personality="steady"),
        )  # fmt: skip
        return StageResult(analysis, Usage(self.model, 1300, 450, self.latency * 1000))


class Content:
    name, model = "deepseek", "deepseek-v4-flash"

    def __init__(self, latency: float) -> None:
        self.latency, self.calls = latency, 0

    async def generate(self, request: ContentRequest) -> StageResult[GeneratedContent]:
        self.calls += 1
        await anyio.sleep(self.latency)
        piece = ContentPiece(title=request.output_format, body=request.analysis.mood_and_tone.mood)
        return StageResult(
            GeneratedContent(content_pieces=[piece]),
            Usage(self.model, 900, 600, self.latency * 1000),
        )


async def _image(url: str) -> Image:
    return Image(b"\x89PNG" + url.encode(), "image/png", 1, 1)


async def _all_done(store: JobStore, ids: list[int]) -> None:
    for job_id in ids:
        while True:
            status = await store.get_job_status(job_id)
            if status is not None and status.status in FINAL:
                break
            await anyio.sleep(0.02)


async def _batch(store: JobStore, user_id: int, images: int) -> tuple[float, float]:
    """The 3N jobs created at once, run to the end: (their cost, the seconds it took)."""
    started = time.perf_counter()
    jobs = [
        NewJob(user_id, f"https://img.example/{i}.png", "ctx", "launch", f, 1.0, None, 3)
        for i in range(images) for f in FORMATS
    ]  # fmt: skip
    ids = [await store.create_job(j) for j in jobs]
    await _all_done(store, ids)
    seconds = time.perf_counter() - started
    cost = 0.0
    for job_id in ids:
        status = await store.get_job_status(job_id)
        cost += 0.0 if status is None else status.cost_usd
    return cost, seconds


async def one_run(
    url: str, images: int, ttl: float, vision_s: float, content_s: float
) -> list[dict[str, Any]]:
    """Two passes of the batch: the first, then the same jobs asked again."""
    settings = PipelineSettings(database_url=url, cache_ttl_hours=ttl, poll_interval_ms=50)
    store = await open_store(url)
    vision, content = Vision(vision_s), Content(content_s)
    cache = StageCache(store.cached_answer, settings.cache_ttl_hours, settings.cache_scope)
    stages = Stages(vision, content, _image, settings.stage_timeout_seconds, cache=cache)
    worker = Worker(store, stages, settings)
    passes: list[dict[str, Any]] = []
    try:
        user_id, _ = await store.user_seen("bench", None)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            for name in ("first", "again"):
                calls = vision.calls, content.calls
                cost, seconds = await _batch(store, user_id, images)
                passes.append({"pass": name, "jobs": 3 * images,
                               "vision": vision.calls - calls[0],
                               "content": content.calls - calls[1],
                               "usd": cost, "seconds": seconds})  # fmt: skip
            worker.stop()
    finally:
        await store.driver.close()
    return passes


async def main(images: int, vision_ms: float, content_ms: float) -> None:
    tmp = Path(tempfile.mkdtemp())
    print(f"{images} images x 3 formats, vision {vision_ms:g} ms, content {content_ms:g} ms")
    print(f"{'backend':<11}{'cache':<6}{'pass':<7}{'jobs':>5}{'vision':>7}{'content':>8}"
          f"{'USD':>10}{'s':>7}")  # fmt: skip
    for backend in BACKENDS:
        for label, ttl in (("off", 0.0), ("on", 168.0)):
            async with database(backend, tmp, "cache") as url:
                rows = await one_run(url, images, ttl, vision_ms / 1000, content_ms / 1000)
            for r in rows:
                print(f"{backend:<11}{label:<6}{r['pass']:<7}{r['jobs']:>5}{r['vision']:>7}"
                      f"{r['content']:>8}{r['usd']:>10.6f}{r['seconds']:>7.2f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="distinct images (3 jobs each)")
    parser.add_argument("--vision-ms", type=float, default=400, help="a vision call's latency")
    parser.add_argument("--content-ms", type=float, default=200, help="a content call's latency")
    args = parser.parse_args()
    anyio.run(main, args.images, args.vision_ms, args.content_ms)
