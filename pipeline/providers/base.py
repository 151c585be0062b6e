"""The interface every provider implements, offline or real.

A provider turns one stage's request into a validated result plus its usage. It raises only
``pipeline.errors.StageError`` subclasses; it never retries by itself (the job layer owns
retries, backoff and deadlines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from pipeline.analysis import GeneratedContent, OutputFormat, VisionAnalysis

T = TypeVar("T")
# Told the content stage's answer so far (the whole text, each time it grew); it must not
# block: pipeline.streaming.PartialWriter paces the writes behind it.
TextSink = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Image:
    """Image bytes whose format Pillow confirmed; ``mime_type`` comes from that, not a header."""

    data: bytes
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class VisionRequest:
    image: Image
    analysis_purpose: str
    image_context: str
    creativity_level: float


@dataclass(frozen=True, slots=True)
class ContentRequest:
    analysis: VisionAnalysis
    analysis_purpose: str
    image_context: str
    output_format: OutputFormat
    creativity_level: float
    additional_instructions: str | None
    # A provider that streams its answer tells the text so far here (None: nobody listens).
    on_text: TextSink | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one provider call cost, for the attempt's ``visionJobSessions`` row."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class StageResult(Generic[T]):
    value: T
    usage: Usage = field(default_factory=lambda: Usage(model="unknown"))


class VisionProvider(Protocol):
    name: str

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]: ...


class ContentProvider(Protocol):
    name: str

    async def generate(self, request: ContentRequest) -> StageResult[GeneratedContent]: ...
