"""The two stages of a job, provider-agnostic: vision (image → analysis), content (analysis →
pieces), each under a real deadline, and the mapping of their results to stored columns."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

import anyio

from pipeline import metrics
from pipeline.analysis import GeneratedContent, OutputFormat, VisionAnalysis
from pipeline.cache import Cached, StageCache, content_key, model_of, vision_key
from pipeline.errors import RetryableError, StageError
from pipeline.providers.base import (
    ContentProvider,
    ContentRequest,
    Image,
    StageResult,
    TextSink,
    VisionProvider,
    VisionRequest,
)
from pipeline.streaming import PartialWriter
from storage.images import is_image_path
from storage.jobstate import Stage
from storage.records import ClaimedJob, Outputs, StageUsage

T = TypeVar("T")
R = TypeVar("R", VisionRequest, ContentRequest)
ImageLoader = Callable[[str], Awaitable[Image]]
# A job's image from the image store, by the job's user id and its /api/images/… imageUrl.
StoredImageLoader = Callable[[int, str], Awaitable[Image]]


@dataclass(frozen=True, slots=True)
class Stages:
    vision: VisionProvider
    content: ContentProvider
    load_image: ImageLoader
    timeout: float
    load_stored: StoredImageLoader | None = None  # None: every imageUrl goes to load_image
    cache: StageCache | None = None  # None: every stage asks its provider (pipeline.cache)
    # The writer of a job's streamed answer so far (pipeline.streaming); None: not written.
    partial: Callable[[ClaimedJob], PartialWriter] | None = None

    async def analyze(self, job: ClaimedJob) -> tuple[VisionAnalysis, StageUsage]:
        started = time.perf_counter()
        with metrics.StageTimer(Stage.VISION), _Deadline(self.timeout, Stage.VISION):
            if self.load_stored is not None and is_image_path(job.image_url):
                image = await self.load_stored(job.user_id, job.image_url)
            else:
                image = await self.load_image(job.image_url)
            request = VisionRequest(
                image=image,
                analysis_purpose=job.analysis_purpose,
                image_context=job.image_context or "",
                creativity_level=job.creativity_level,
            )
            answer = await self._ask(
                Stage.VISION, job, request, self.vision, lambda: self.vision.analyze(request),
                parse_stored_analysis, started,
            )  # fmt: skip
        return answer

    async def write(
        self, job: ClaimedJob, analysis: VisionAnalysis
    ) -> tuple[GeneratedContent, StageUsage]:
        started = time.perf_counter()
        with metrics.StageTimer(Stage.CONTENT), _Deadline(self.timeout, Stage.CONTENT):
            if self.partial is None:
                answer = await self._write(job, analysis, None, started)
            else:
                # The answer so far goes to the job's row while it streams (issue 17).
                async with self.partial(job) as on_text:
                    answer = await self._write(job, analysis, on_text, started)
        return answer

    async def _write(
        self, job: ClaimedJob, analysis: VisionAnalysis, on_text: TextSink | None, started: float
    ) -> tuple[GeneratedContent, StageUsage]:
        request = _content_request(job, analysis, on_text)
        return await self._ask(
            Stage.CONTENT, job, request, self.content,
            lambda: self.content.generate(request), parse_stored_content, started,
        )  # fmt: skip

    async def _ask(
        self, stage: Stage, job: ClaimedJob, request: R, provider: object,
        call: Callable[[], Awaitable[StageResult[T]]], parse: Callable[[str], T], started: float,
    ) -> tuple[T, StageUsage]:  # fmt: skip
        """The stage's answer with its usage: from the provider, or from the result cache
        when it is on (a hit: no tokens, no cost, the job it came from)."""
        name = str(getattr(provider, "name", "provider"))
        cache = self.cache
        if cache is None or not cache.enabled:
            result = await call()
            return result.value, _usage(result, started, name)
        if isinstance(request, VisionRequest):
            key = vision_key(provider, request)
        else:
            key = content_key(provider, request)
        answer = await cache.run(stage, job, key, call, parse)
        if isinstance(answer, Cached):
            return answer.value, StageUsage(model_of(provider), cached_from=answer.job_id)
        return answer.value, _usage(answer, started, name, key)


def _content_request(
    job: ClaimedJob, analysis: VisionAnalysis, on_text: TextSink | None
) -> ContentRequest:
    return ContentRequest(
        analysis=analysis,
        analysis_purpose=job.analysis_purpose,
        image_context=job.image_context or "",
        output_format=cast(OutputFormat, job.output_format),
        creativity_level=job.creativity_level,
        additional_instructions=job.additional_instructions,
        on_text=on_text,
    )


class _Deadline:
    """A real deadline around the whole stage (the SDKs' timeouts are per read, not total).

    ``anyio.fail_after`` inside a generator context manager, written out: this runs twice per
    job and the two generator frames cost more than the cancel scope itself."""

    __slots__ = ("scope", "seconds", "stage")

    def __init__(self, seconds: float, stage: Stage) -> None:
        self.seconds = seconds
        self.stage = stage
        self.scope = anyio.CancelScope(deadline=anyio.current_time() + seconds)

    def __enter__(self) -> None:
        self.scope.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        suppressed = bool(self.scope.__exit__(kind, exc, tb))
        if self.scope.cancelled_caught and anyio.current_time() >= self.scope.deadline:
            raise RetryableError(f"the {self.stage} stage timed out after {self.seconds:g} s")
        return suppressed


def _usage(
    result: StageResult[Any], started: float, provider: str, key: str | None = None
) -> StageUsage:
    u = result.usage
    latency = u.latency_ms or (time.perf_counter() - started) * 1000
    metrics.provider_call(provider, latency)
    return StageUsage(u.model, u.input_tokens, u.output_tokens, round(latency), cache_key=key)


def parse_stored_analysis(text: str) -> VisionAnalysis:
    try:
        return VisionAnalysis.model_validate_json(text)
    except ValueError as exc:  # a row written by hand or an older version
        raise StageError(f"the stored vision analysis is unreadable: {exc}") from exc


def parse_stored_content(text: str) -> GeneratedContent:
    """A job's stored ``deepseekOutput`` (the pieces JSON of ``pieces_json``) read back."""
    try:
        return GeneratedContent.model_validate({"content_pieces": json.loads(text)})
    except ValueError as exc:
        raise StageError(f"the stored content is unreadable: {exc}") from exc


def pieces_json(content: GeneratedContent) -> str:
    # Compact: the API splices this text into its answers verbatim (rpc.procedures.job_payloads).
    return json.dumps(
        [p.model_dump(exclude_none=True) for p in content.content_pieces],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def outputs_of(analysis: VisionAnalysis, pieces: str) -> Outputs:
    """The ``visionJobOutputs`` columns, as the design document's completeVisionJob fills them."""
    return Outputs(
        colors_primary=json.dumps(analysis.colors.primary),
        colors_secondary=json.dumps(analysis.colors.secondary),
        colors_description=analysis.colors.description,
        mood=analysis.mood_and_tone.mood,
        tone=analysis.mood_and_tone.tone,
        composition_layout=analysis.composition.layout,
        brand_personality=analysis.brand_insights.brand_personality,
        perceived_industry=analysis.brand_insights.perceived_industry,
        target_audience=analysis.brand_insights.target_audience,
        content_pieces=pieces,
    )
