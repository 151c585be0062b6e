"""The offline provider pair: no network, no keys, deterministic.

``OfflineVision`` measures the image's real pixels (palette, brightness, saturation,
contrast, where the visual weight sits) and phrases the result as a ``VisionAnalysis``.
``OfflineContent`` writes content pieces from any ``VisionAnalysis`` (its own or a real
model's) with template phrasing picked by a ``random.Random`` seeded from the request, so the
same request always yields the same text (``pipeline.providers.offline_writing``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

import anyio
import anyio.to_thread

from pipeline.analysis import ContentPiece, GeneratedContent, VisionAnalysis
from pipeline.decoding import DEFAULT_MEMORY, DecodeBudget, ImageDecoder
from pipeline.providers.base import (
    ContentRequest,
    StageResult,
    TextSink,
    Usage,
    VisionRequest,
)
from pipeline.providers.offline_writing import write_pieces
from pipeline.providers.palette import (
    AUDIENCE_KEYWORDS,
    COLOUR_TRAITS,
    INDUSTRY_KEYWORDS,
    SAMPLE_SIZE,
    PixelStats,
    aspect_label,
    audience_for_mood,
    describe_mood,
    direction_of,
    fix_articles,
    join_words,
    match_keywords,
    measure,
    temperature,
    unique,
)


class OfflineVision:
    """A vision provider that reads the image's pixels instead of asking a model."""

    name = "offline"
    model = "offline-vision"  # as its usage names it (the result cache's key names it too)

    def __init__(self, decoder: ImageDecoder | None = None) -> None:
        """``decoder`` holds the process's decode budget (``pipeline.service`` passes it);
        without one, this instance gets a budget of its own of the default size."""
        self.decoder = decoder or ImageDecoder(DecodeBudget(DEFAULT_MEMORY))

    async def analyze(self, request: VisionRequest) -> StageResult[VisionAnalysis]:
        """Describe ``request.image`` from its measured pixels; deterministic for the same
        request. Raises ``ImageError`` when Pillow cannot decode the image or it declares
        more pixels than the decoder's cap."""
        started = time.perf_counter()
        sample = await self.decoder.sample(request.image.data, SAMPLE_SIZE)
        # The per-pixel loops are CPU work too; run them off the event loop.
        stats = await anyio.to_thread.run_sync(measure, sample)
        analysis = _analysis_from(stats, request.analysis_purpose, request.image_context)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return StageResult(analysis, Usage(model="offline-vision", latency_ms=latency_ms))


class OfflineContent:
    """A content provider that writes from templates, seeded by the request."""

    name = "offline"
    model = "offline-content"

    async def generate(self, request: ContentRequest) -> StageResult[GeneratedContent]:
        """Write the pieces ``request.output_format`` asks for: 5–6 bullets, six analysis
        sections, or three social posts (bodies and hashtags within 280 characters).

        Same request, same text; ``creativity_level`` and ``additional_instructions``
        change the wording."""
        started = time.perf_counter()
        seed = _seed(request)
        pieces = write_pieces(request, seed)
        content = GeneratedContent(content_pieces=[ContentPiece(**p) for p in pieces])
        if request.on_text is not None:
            await _stream(content, request.on_text)
        latency_ms = (time.perf_counter() - started) * 1000.0
        return StageResult(content, Usage(model="offline-content", latency_ms=latency_ms))


# Someone watches the answer being written (issue 17): it is told in STREAM_PIECES pieces,
# STREAM_PIECE_SECONDS apart, as a model's stream would, so the page shows it offline too.
STREAM_PIECES = 6
STREAM_PIECE_SECONDS = 0.04


async def _stream(content: GeneratedContent, on_text: TextSink) -> None:
    text = content.model_dump_json(exclude_none=True)
    step = math.ceil(len(text) / STREAM_PIECES)
    for end in range(step, len(text) + step, step):
        on_text(text[:end])
        if end < len(text):
            await anyio.sleep(STREAM_PIECE_SECONDS)


def _seed(request: ContentRequest) -> int:
    # hash() of a str is salted per process; a digest keeps output stable across runs.
    r = request
    parts: list[Any] = [r.analysis.model_dump(mode="json"), r.analysis_purpose, r.image_context]
    parts += [r.output_format, round(r.creativity_level, 3), r.additional_instructions]
    material = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


# --- vision: from measurements to words --------------------------------------------------


def _analysis_from(stats: PixelStats, purpose: str, context: str) -> VisionAnalysis:
    colors = _colors(stats)
    mood, tone = describe_mood(stats)
    layout, composition_extra = _composition(stats)
    names = [s.name for s in stats.swatches]
    lead = next((n for n in names if n not in ("white", "grey")), names[0] if names else "grey")

    # The context describes the brand; the purpose only describes the task, so it comes second.
    industry = match_keywords(INDUSTRY_KEYWORDS, context, purpose)
    industry_basis = "context" if industry else "palette"
    traits, industries = COLOUR_TRAITS.get(lead, ("balanced", "general consumer goods"))
    industry = industry or industries
    personality = fix_articles(f"{traits}, with a {mood.split(',')[0]} feel")
    audience = match_keywords(AUDIENCE_KEYWORDS, context, purpose) or audience_for_mood(mood)
    # model_validate, not keyword arguments: the extra keys are allowed (extra="allow") but
    # invisible to mypy without the pydantic plugin.
    return VisionAnalysis.model_validate(
        {
            "colors": colors,
            "mood_and_tone": {
                "mood": mood,
                "tone": tone,
                "brightness": round(stats.brightness, 2),
                "saturation": round(stats.saturation, 2),
                "contrast": round(stats.contrast, 2),
            },
            "composition": {"layout": layout, **composition_extra},
            "brand_insights": {
                "brand_personality": personality,
                "perceived_industry": industry,
                "target_audience": audience,
                "industry_basis": industry_basis,
            },
            "method": "offline pixel analysis",
        }
    )


def _colors(stats: PixelStats) -> dict[str, Any]:
    swatches = stats.swatches
    primary = swatches[:1] + [s for s in swatches[1:3] if s.share >= 0.2]
    rest = [s for s in swatches[len(primary) :] if s.share >= 0.02][:3]
    temp = temperature(swatches)
    temp_phrase = "mixed warm and cool" if temp == "mixed" else temp
    led = join_words([f"{s.name} ({s.hex}, about {round(s.share * 100)}%)" for s in primary])
    description = f"A {temp_phrase} palette led by {led}"
    accent_names = unique(s.name for s in rest)
    if accent_names:
        description += f", with accents of {join_words(accent_names)}"
    description += f". Colours: {join_words(unique(s.name for s in swatches))}."
    return {
        "primary": [s.hex for s in primary],
        "secondary": [s.hex for s in rest],
        "description": description,
        "temperature": temp,
        "palette": [{"hex": s.hex, "name": s.name, "share": round(s.share, 3)} for s in swatches],
    }


def _composition(stats: PixelStats) -> tuple[str, dict[str, Any]]:
    ratio = stats.width / stats.height
    orientation = "square" if 0.87 <= ratio <= 1.15 else "landscape" if ratio > 1 else "portrait"
    aspect = aspect_label(stats.width, stats.height)
    fx, fy = stats.focal
    direction = direction_of(fx, fy)
    if stats.coverage < 0.005:
        weight = "a uniform field with no distinct focal area"
        balance = "even, uniform"
    else:
        weight = "weight centred" if direction == "centre" else f"weight toward the {direction}"
        offset = math.hypot(fx - 0.5, fy - 0.5)
        if offset < 0.08:
            balance = "balanced, symmetrical"
        elif offset < 0.2:
            balance = "slightly off-centre"
        else:
            balance = f"asymmetric, weighted toward the {direction}"
    if stats.coverage >= 0.6:
        weight += "; the subject fills most of the frame"
    elif 0.005 <= stats.coverage < 0.1:
        weight += "; a small focal element on open space"
    extra: dict[str, Any] = {
        "orientation": orientation,
        "aspect_ratio": aspect,
        "focal_point": {"x": round(fx, 3), "y": round(fy, 3)},
        "balance": balance,
        "background_color": stats.background.hex,
        "subject_coverage": round(stats.coverage, 3),
    }
    return f"{orientation} ({aspect}) frame, {weight}", extra
