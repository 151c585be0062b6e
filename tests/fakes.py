"""Scripted in-process providers for worker tests: each call takes the next step of a script
(an exception to raise, a delay, or success) and is counted."""

from __future__ import annotations

from collections.abc import Sequence

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
from pipeline.providers.base import (
    ContentRequest,
    Image,
    StageResult,
    Usage,
    VisionRequest,
)

Step = BaseException | float | None  # raise it / sleep that long then succeed / succeed


class _Scripted:
    def __init__(self, script: Sequence[Step] = ()) -> None:
        self.script = list(script)
        self.calls = 0
        self.times: list[float] = []

    async def _step(self) -> None:
        self.calls += 1
        self.times.append(anyio.current_time())
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, float | int):
            await anyio.sleep(step)


ANALYSIS = VisionAnalysis(
    colors=Colors(primary=["#ff0000"], secondary=["#ffffff"], description="red"),
    mood_and_tone=MoodAndTone(mood="bold", tone="confident"),
    composition=Composition(layout="centred"),
    brand_insights=BrandInsights(
        brand_personality="bold", perceived_industry="retail", target_audience="everyone"
    ),
)


class FakeVision(_Scripted):
    name = "fake"

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]:
        await self._step()
        return StageResult(ANALYSIS, Usage("fake-vision", 100, 20))


class FakeContent(_Scripted):
    name = "fake"

    async def generate(self, request: ContentRequest) -> StageResult[GeneratedContent]:
        await self._step()
        piece = ContentPiece(title=request.output_format, body=request.analysis_purpose)
        return StageResult(GeneratedContent(content_pieces=[piece]), Usage("fake-content", 50, 80))


async def fake_image(url: str) -> Image:
    return Image(b"\x89PNG", "image/png", 1, 1)
