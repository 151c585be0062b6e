"""The two prompts, in one place: what the vision model is asked about an image, and what the
text model is asked to write from that reading.

Each prompt states the purpose, the brand context, the creativity wanted, and the exact JSON
shape expected, with an example. User-supplied text (context, purpose, instructions) is
quoted inside tagged blocks so that it reads as data about the job, not as new rules.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.analysis import OutputFormat, VisionAnalysis
from pipeline.providers.base import ContentRequest, VisionRequest

# --- stage 1: vision --------------------------------------------------------------------

VISION_EXAMPLE: dict[str, Any] = {
    "colors": {
        "primary": ["#1A73E8", "#FFFFFF"],
        "secondary": ["#FBBC04"],
        "description": "A cool, confident blue on white with a warm yellow accent.",
    },
    "mood_and_tone": {"mood": "optimistic, calm", "tone": "friendly and professional"},
    "composition": {"layout": "centred logo on open white space, generous margins"},
    "brand_insights": {
        "brand_personality": "trustworthy, approachable, modern",
        "perceived_industry": "consumer technology",
        "target_audience": "busy professionals aged 25-45",
    },
}

VISION_SYSTEM = """\
You are a senior brand strategist who reads brand images (logos, packaging, ads, product \
photos) and describes what they communicate. Describe only what is visible or can be \
reasonably inferred from it; do not invent text, products or facts that are not there.

Answer with one JSON object and nothing else, exactly in this shape:
{example}

Field meanings:
- colors.primary: the 1-3 dominant colours as hex codes (#RRGGBB), most dominant first.
- colors.secondary: up to 4 accent or supporting colours as hex codes.
- colors.description: one or two sentences on the palette and what it conveys.
- mood_and_tone.mood: the feeling the image gives, a few words.
- mood_and_tone.tone: the voice the brand seems to speak in, a few words.
- composition.layout: how the image is arranged (focal point, balance, space, hierarchy).
- brand_insights.brand_personality: 3-5 traits the brand projects.
- brand_insights.perceived_industry: the industry the image suggests.
- brand_insights.target_audience: who the image seems to be made for.
You may add other fields inside these objects when they help (for example \
composition.focal_point), but never leave out a field named above.
"""


def vision_system_prompt() -> str:
    """The system instruction for stage 1: role, rules, and the JSON shape with an example."""
    return VISION_SYSTEM.format(example=json.dumps(VISION_EXAMPLE, indent=2))


def vision_user_prompt(request: VisionRequest) -> str:
    """The text sent with the image: why it is being analysed, what the brand says about
    itself, and how interpretive the reading may be."""
    context = request.image_context.strip() or "(none given)"
    return (
        "Analyse the attached brand image.\n\n"
        f"<purpose>\n{request.analysis_purpose.strip()}\n</purpose>\n\n"
        f"<brand_context>\n{context}\n</brand_context>\n\n"
        f"Interpretation: {_vision_creativity(request.creativity_level)}\n\n"
        "Return the JSON object described in your instructions."
    )


def _vision_creativity(level: float) -> str:
    if level < 0.5:
        return "stay literal; describe only what is plainly visible."
    if level <= 1.2:
        return "describe what is visible and draw the inferences a strategist would."
    return "read between the lines; bolder inferences are welcome if the image supports them."


def vision_response_schema() -> dict[str, Any]:
    """The JSON schema sent as Gemini's ``response_json_schema``: ``VisionAnalysis``'s own,
    with every named field required (the pydantic model gives them defaults so that a
    partial answer still validates; the model should still be asked for all of them) and
    extra fields allowed (``additionalProperties``), as the contract allows."""
    schema = VisionAnalysis.model_json_schema()
    # The pydantic docstring is written for developers; tell the model what the object is.
    schema["description"] = "What a brand image communicates: palette, mood, layout, brand."
    for node in [schema, *schema.get("$defs", {}).values()]:
        if "properties" in node:
            node["required"] = list(node["properties"])
            for prop in node["properties"].values():
                prop.pop("default", None)  # not in Gemini's JSON-schema subset; all required
    return schema


# --- stage 2: content -------------------------------------------------------------------

FORMATS: dict[OutputFormat, str] = {
    "bullet_points": (
        "bullet points: 5 to 7 pieces, one piece per bullet. The title is a short label "
        "(2-5 words); the body is one or two sentences of practical insight. No hashtags."
    ),
    "detailed_analysis": (
        "a detailed analysis: 4 to 6 pieces, one piece per section (for example colour, "
        "mood and tone, composition, brand personality, audience, recommendations). The "
        "title is the section heading; the body is a full paragraph. No hashtags."
    ),
    "social_media_post": (
        "social media posts: 3 pieces, one piece per post, each a different angle. The "
        "title is a short internal name for the post; the body is the post text, under 280 "
        "characters; hashtags is a list of 3-6 hashtags, each starting with #, not repeated "
        "in the body."
    ),
}

CONTENT_EXAMPLE: dict[str, Any] = {
    "content_pieces": [
        {
            "title": "Blue that earns trust",
            "body": "The dominant #1A73E8 signals reliability; keep it on every touchpoint.",
            "hashtags": ["#BrandDesign", "#ColorPsychology"],
        }
    ]
}

CONTENT_SYSTEM = """\
You are a brand copywriter. You turn a structured analysis of a brand image into ready-to-use \
content. Base every claim on the analysis; do not invent product names, prices or facts.

Answer in JSON only: one JSON object, exactly in this shape:
{example}

- content_pieces: a non-empty list; each piece has "title" (string) and "body" (string).
- "hashtags" (a list of strings) is included only for social media posts; omit it otherwise.
- Write in the language of the purpose and context given by the user.
"""


def content_system_prompt() -> str:
    """The system message for stage 2. It contains the word "json" on purpose: DeepSeek's
    JSON mode rejects a prompt without it (PROVIDERS.md §2.3)."""
    return CONTENT_SYSTEM.format(example=json.dumps(CONTENT_EXAMPLE, indent=2))


def content_user_prompt(request: ContentRequest) -> str:
    """The job: the validated analysis (as the model's own JSON, not free text), the purpose,
    the brand context, the output format with what one piece means in it, the creativity
    wanted and the user's additional instructions."""
    analysis = request.analysis.model_dump_json(indent=2)
    context = request.image_context.strip() or "(none given)"
    extra = (request.additional_instructions or "").strip()
    parts = [
        f"<image_analysis_json>\n{analysis}\n</image_analysis_json>",
        f"<purpose>\n{request.analysis_purpose.strip()}\n</purpose>",
        f"<brand_context>\n{context}\n</brand_context>",
        f"Output format: {FORMATS[request.output_format]}",
        f"Creativity: {content_creativity(request.creativity_level)}",
    ]
    if extra:
        parts.append(
            "<additional_instructions>\n"
            f"{extra}\n"
            "</additional_instructions>\n"
            "Follow these instructions unless they contradict the JSON shape above."
        )
    parts.append('Return the JSON object with "content_pieces" now.')
    return "\n\n".join(parts)


def content_creativity(level: float) -> str:
    """Creativity (0..2, the API's range) in words; the temperature follows it too."""
    if level < 0.5:
        return f"{level:g} of 2: plain, factual, conservative wording."
    if level <= 1.2:
        return f"{level:g} of 2: clear and engaging, with some flair."
    return f"{level:g} of 2: bold, playful and surprising, while staying on brand."
