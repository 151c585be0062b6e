"""The data that flows between the stages, validated with pydantic.

Validation covers the fields the contract names (SEED_API §5); a model may send more,
which are kept (``extra="allow"``), and a missing optional field is not an error.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OutputFormat = Literal["bullet_points", "detailed_analysis", "social_media_post"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Colors(_Open):
    primary: list[str] = Field(default_factory=list)
    secondary: list[str] = Field(default_factory=list)
    description: str = ""


class MoodAndTone(_Open):
    mood: str = ""
    tone: str = ""


class Composition(_Open):
    layout: str = ""


class BrandInsights(_Open):
    brand_personality: str = ""
    perceived_industry: str = ""
    target_audience: str = ""


class VisionAnalysis(_Open):
    """Stage 1's answer, stored as ``geminOutput`` (the wire name, typo kept)."""

    colors: Colors
    mood_and_tone: MoodAndTone
    composition: Composition
    brand_insights: BrandInsights


class ContentPiece(_Open):
    title: str
    body: str
    hashtags: list[str] | None = None


class GeneratedContent(_Open):
    """Stage 2's answer; ``content_pieces`` is stored as ``deepseekOutput``."""

    content_pieces: list[ContentPiece] = Field(min_length=1)
