"""The offline provider pair: vision from real pixels, content from templates."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image as PILImage
from PIL import ImageDraw
from pydantic import BaseModel

from pipeline.analysis import OutputFormat, VisionAnalysis
from pipeline.errors import ImageError
from pipeline.providers.base import (
    ContentProvider,
    ContentRequest,
    Image,
    VisionProvider,
    VisionRequest,
)
from pipeline.providers.offline import OfflineContent, OfflineVision
from pipeline.providers.palette import color_name, fix_articles, parse_hex, to_hex

SECTIONS = [
    "Colour palette",
    "Mood and tone",
    "Composition",
    "Brand personality",
    "Audience",
    "Recommendations",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def extra(model: BaseModel, key: str) -> Any:
    """A field the analysis carries beyond the contract's (``extra="allow"``)."""
    return (model.model_extra or {})[key]


def as_image(picture: PILImage.Image, fmt: str = "PNG") -> Image:
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif"}[fmt]
    return Image(buffer.getvalue(), mime, picture.width, picture.height)


def solid(color: Any, size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> Image:
    return as_image(PILImage.new("RGB", size, color), fmt)


def block(box: tuple[int, int, int, int], size: tuple[int, int] = (300, 200)) -> Image:
    """A white canvas with one blue rectangle at ``box``."""
    picture = PILImage.new("RGB", size, "white")
    ImageDraw.Draw(picture).rectangle(box, fill=(20, 60, 200))
    return as_image(picture)


async def analyze(image: Image, purpose: str = "", context: str = "") -> VisionAnalysis:
    result = await OfflineVision().analyze(VisionRequest(image, purpose, context, 1.0))
    assert result.usage.model == "offline-vision"
    assert result.usage.input_tokens == result.usage.output_tokens == 0
    assert result.usage.latency_ms >= 0
    return result.value


def test_the_classes_satisfy_the_protocols() -> None:
    vision: VisionProvider = OfflineVision()
    content: ContentProvider = OfflineContent()
    assert vision.name == content.name == "offline"


# --- vision -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rgb", "name", "temperature"),
    [
        ((255, 0, 0), "red", "warm"),
        ((0, 0, 255), "blue", "cool"),
        ((0, 160, 0), "green", "cool"),
        ((255, 220, 0), "yellow", "warm"),
        ((128, 128, 128), "grey", "neutral"),
    ],
)
@pytest.mark.anyio
async def test_solid_colours(rgb: tuple[int, int, int], name: str, temperature: str) -> None:
    analysis = await analyze(solid(rgb))
    primary = analysis.colors.primary
    assert primary[0] == to_hex(rgb)
    assert analysis.colors.secondary == []
    assert name in analysis.colors.description
    assert temperature in analysis.colors.description
    assert extra(analysis.colors, "temperature") == temperature
    assert "uniform" in analysis.composition.layout


@pytest.mark.anyio
async def test_jpeg_red_stays_red() -> None:
    analysis = await analyze(solid((230, 10, 20), fmt="JPEG"))
    rgb = parse_hex(analysis.colors.primary[0])
    assert rgb is not None and color_name(rgb) == "red"
    assert "red" in analysis.colors.description


@pytest.mark.parametrize(
    ("box", "direction", "x_side", "y_side"),
    [
        ((220, 0, 299, 199), "toward the right", 1, 0),
        ((0, 0, 60, 40), "toward the upper left", -1, -1),
        ((0, 150, 299, 199), "toward the bottom", 0, 1),
        ((120, 70, 180, 130), "weight centred", 0, 0),
    ],
)
@pytest.mark.anyio
async def test_visual_weight(
    box: tuple[int, int, int, int], direction: str, x_side: int, y_side: int
) -> None:
    analysis = await analyze(block(box))
    composition = analysis.composition
    assert direction in composition.layout
    assert composition.layout.startswith("landscape (3:2)")
    focal = extra(composition, "focal_point")
    for value, side in ((focal["x"], x_side), (focal["y"], y_side)):
        assert (value > 0.6) if side > 0 else (value < 0.4) if side < 0 else (0.4 <= value <= 0.6)
    # The background (white) and the block (blue) are both reported.
    assert {"white", "blue"} <= set(re.findall(r"[a-z]+", analysis.colors.description))


@pytest.mark.parametrize(
    ("size", "orientation", "ratio"),
    [
        ((320, 180), "landscape", "16:9"),
        ((90, 160), "portrait", "9:16"),
        ((50, 50), "square", "1:1"),
    ],
)
@pytest.mark.anyio
async def test_orientation_and_aspect(size: tuple[int, int], orientation: str, ratio: str) -> None:
    composition = (await analyze(solid((0, 0, 255), size))).composition
    assert composition.layout.startswith(f"{orientation} ({ratio})")
    assert extra(composition, "aspect_ratio") == ratio


@pytest.mark.anyio
async def test_moods_follow_brightness_saturation_and_contrast() -> None:
    bright = await analyze(solid((255, 220, 0)))
    assert bright.mood_and_tone.mood == "energetic, playful"

    dark = PILImage.new("RGB", (100, 100), "black")
    ImageDraw.Draw(dark).rectangle((30, 30, 70, 70), fill="white")
    dramatic = await analyze(as_image(dark))
    assert dramatic.mood_and_tone.mood == "dramatic, bold"

    calm = await analyze(solid((150, 150, 150)))
    assert calm.mood_and_tone.mood.startswith("calm")


@pytest.mark.anyio
async def test_transparent_background_does_not_become_the_palette() -> None:
    logo = PILImage.new("RGBA", (100, 100), (0, 0, 0, 0))  # clear *black* pixels
    ImageDraw.Draw(logo).ellipse((20, 20, 80, 80), fill=(220, 20, 30, 255))
    analysis = await analyze(as_image(logo))
    assert color_name(parse_hex(analysis.colors.primary[0]) or (0, 0, 0)) == "red"
    assert "black" not in analysis.colors.description
    assert extra(analysis.composition, "background_color") == "#ffffff"


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK"])
@pytest.mark.anyio
async def test_other_modes_and_formats(mode: str) -> None:
    picture = PILImage.new("RGB", (40, 30), (0, 120, 200)).convert(mode)
    fmt = {"CMYK": "JPEG", "P": "GIF"}.get(mode, "PNG")
    analysis = await analyze(as_image(picture, fmt))
    assert analysis.colors.primary


@pytest.mark.anyio
async def test_large_and_tiny_images() -> None:
    assert (await analyze(solid((0, 0, 255), (3000, 2000)))).colors.primary == ["#0000ff"]
    assert (await analyze(solid((255, 0, 0), (1, 1)))).colors.primary == ["#ff0000"]


@pytest.mark.anyio
async def test_brand_insights_use_context_keywords_then_palette() -> None:
    coffee = await analyze(solid((120, 70, 30)), "launch campaign", "our coffee shop for kids")
    assert coffee.brand_insights.perceived_industry == "food and beverage"
    assert coffee.brand_insights.target_audience == "families with young children"
    blue = await analyze(solid((0, 0, 255)))
    assert blue.brand_insights.perceived_industry == "technology, finance or healthcare"
    assert blue.brand_insights.brand_personality.startswith("trustworthy")
    assert extra(blue.brand_insights, "industry_basis") == "palette"


@pytest.mark.anyio
async def test_undecodable_bytes_are_an_image_error() -> None:
    with pytest.raises(ImageError, match="could not be decoded"):
        await OfflineVision().analyze(
            VisionRequest(Image(b"not an image", "image/png", 1, 1), "", "", 1.0)
        )


def test_palette_helpers() -> None:
    assert parse_hex("#F00") == (255, 0, 0) and parse_hex("navy") is None
    assert fix_articles("a energetic feel, a uniform field") == "an energetic feel, a uniform field"


# --- content ------------------------------------------------------------------------------


async def sample_analysis() -> VisionAnalysis:
    return await analyze(block((220, 0, 299, 199)), "summer launch", "a SaaS startup")


async def generate(
    analysis: VisionAnalysis,
    output_format: OutputFormat,
    creativity: float = 1.0,
    instructions: str | None = None,
    purpose: str = "summer launch for our analytics app",
) -> list[dict[str, Any]]:
    request = ContentRequest(
        analysis, purpose, "a SaaS startup", output_format, creativity, instructions
    )
    result = await OfflineContent().generate(request)
    assert result.usage.model == "offline-content"
    return [piece.model_dump(exclude_none=True) for piece in result.value.content_pieces]


def sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


@pytest.mark.parametrize("creativity", [0.0, 1.0, 2.0])
@pytest.mark.anyio
async def test_bullet_points(creativity: float) -> None:
    pieces = await generate(await sample_analysis(), "bullet_points", creativity)
    assert 5 <= len(pieces) <= 6
    for piece in pieces:
        assert piece["title"] and sentences(piece["body"]) == 1, piece


@pytest.mark.anyio
async def test_detailed_analysis_cites_the_analysis() -> None:
    analysis = await sample_analysis()
    pieces = await generate(analysis, "detailed_analysis")
    assert [p["title"] for p in pieces] == SECTIONS
    by_title = {p["title"]: p["body"] for p in pieces}
    for hex_value in analysis.colors.primary:
        assert hex_value in by_title["Colour palette"]
    assert analysis.mood_and_tone.mood in by_title["Mood and tone"]
    assert analysis.composition.layout in by_title["Composition"]
    assert analysis.brand_insights.target_audience in by_title["Audience"]
    assert all(sentences(body) >= 2 for body in by_title.values())


@pytest.mark.parametrize("creativity", [0.0, 2.0])
@pytest.mark.anyio
async def test_social_media_posts(creativity: float) -> None:
    long_purpose = "an unusually long purpose statement " * 12
    for purpose in ("summer launch", long_purpose):
        posts = await generate(
            await sample_analysis(), "social_media_post", creativity, purpose=purpose
        )
        assert len(posts) == 3
        for post in posts:
            tags = post["hashtags"]
            assert tags and all(re.fullmatch(r"#[A-Za-z0-9]+", t) for t in tags)
            assert len(post["body"]) + 1 + len(" ".join(tags)) <= 280
    assert "#Blue" in posts[1]["hashtags"]


@pytest.mark.parametrize(
    "output_format", ["bullet_points", "detailed_analysis", "social_media_post"]
)
@pytest.mark.anyio
async def test_same_request_same_text_and_creativity_changes_it(
    output_format: OutputFormat,
) -> None:
    analysis = await sample_analysis()
    first = await generate(analysis, output_format, 0.0)
    assert first == await generate(analysis, output_format, 0.0)
    assert first != await generate(analysis, output_format, 2.0)
    assert await generate(analysis, output_format, 2.0) == await generate(
        analysis, output_format, 2.0
    )


@pytest.mark.parametrize(
    "output_format", ["bullet_points", "detailed_analysis", "social_media_post"]
)
@pytest.mark.anyio
async def test_instructions_are_reflected(output_format: OutputFormat) -> None:
    note = "Mention the 20% summer discount"
    pieces = await generate(await sample_analysis(), output_format, 1.0, note)
    assert any(note in piece["body"] for piece in pieces)
    if output_format == "bullet_points":
        assert len(pieces) == 6 and pieces[-1]["title"] == "Your brief"
    if output_format == "social_media_post":
        assert len(pieces) == 3


@pytest.mark.anyio
async def test_instruction_directives_are_followed() -> None:
    analysis = await sample_analysis()
    plain = await generate(analysis, "social_media_post", 2.0, "Use emoji, no hashtags")
    assert all("hashtags" not in p and not p["title"][0].isascii() for p in plain)

    formal = await generate(analysis, "bullet_points", 2.0, "Keep it formal")
    assert all("!" not in p["body"] for p in formal)

    concise = await generate(analysis, "detailed_analysis", 1.0, "Be concise")
    assert all(sentences(p["body"]) == 1 for p in concise[:6])


@pytest.mark.anyio
async def test_content_from_a_sparse_model_analysis() -> None:
    # A real model may answer colour names instead of hex, or leave fields empty.
    named = VisionAnalysis.model_validate(
        {
            "colors": {"primary": ["navy blue", "#FFAA00"], "secondary": []},
            "mood_and_tone": {"mood": "calm"},
            "composition": {},
            "brand_insights": {},
        }
    )
    for output_format in ("bullet_points", "detailed_analysis", "social_media_post"):
        pieces = await generate(named, output_format)
        text = " ".join(p["body"] for p in pieces)
        assert "navy blue" in text and "{" not in text
    empty = VisionAnalysis.model_validate(
        {"colors": {}, "mood_and_tone": {}, "composition": {}, "brand_insights": {}}
    )
    assert all(p["body"] for p in await generate(empty, "detailed_analysis"))
