"""The offline content provider's writing: content pieces from a ``VisionAnalysis``, with
template phrasing picked by a ``random.Random`` seeded from the request (``OfflineContent``
in ``pipeline.providers.offline``), so the same request always yields the same text.
"""

from __future__ import annotations

import random
import re
from typing import Any

from pipeline.providers.base import ContentRequest
from pipeline.providers.palette import fix_articles, join_words, name_of, unique

_ADJECTIVES = ("striking", "confident", "memorable", "distinctive", "polished", "expressive")
_EMOJI = ("🎨", "✨", "📐", "💡", "🎯", "🚀", "📝")
_STOPWORDS = frozenset("this that with from into your their about brand image analysis".split())
Piece = dict[str, Any]


def write_pieces(request: ContentRequest, seed: int) -> list[Piece]:
    """Dispatch on the output format. Instructions are always quoted in the output, and a
    few directives in them are obeyed: concise/short/brief, emoji, formal/professional,
    no hashtags."""
    rng = random.Random(seed)
    note = " ".join((request.additional_instructions or "").split())[:200]
    wants = note.lower()
    formal = bool(re.search(r"\b(formal|professional|corporate)\b", wants))
    concise = bool(re.search(r"\b(concise|short|brief)\b", wants))
    # Creativity picks the phrasing tier (0, 1, 2); formal prose stays on the plainest tier.
    tier = 0 if formal else min(2, max(0, int(request.creativity_level * 1.5)))
    f = _facts(request)
    f["adj"] = ", ".join(rng.sample(_ADJECTIVES, tier)) + " " if tier else ""
    if request.output_format == "bullet_points":
        pieces = _bullets(f, tier, rng, note)
    elif request.output_format == "detailed_analysis":
        pieces = _sections(f, tier, rng, note, concise=concise)
    else:
        hashtags = not re.search(r"\bno hashtags?\b", wants)
        pieces = _posts(f, tier, rng, note, concise=concise, hashtags=hashtags)
    for k, piece in enumerate(pieces):
        piece["body"] = fix_articles(piece["body"])
        if "emoji" in wants:
            piece["title"] = f"{_EMOJI[k % len(_EMOJI)]} {piece['title']}"
        if formal:
            piece["body"] = piece["body"].replace("!", ".")
    return pieces


def _facts(request: ContentRequest) -> dict[str, str]:
    a = request.analysis
    primary = [p for p in a.colors.primary if p.strip()]
    secondary = [p for p in a.colors.secondary if p.strip()]
    described = [f"{name_of(p)} ({p})" if name_of(p) != p.strip() else p for p in primary]
    names = unique(name_of(p) for p in primary + secondary)
    temp = str(getattr(a.colors, "temperature", "") or "")
    mood = a.mood_and_tone.mood.strip() or "balanced"
    context = request.image_context.strip()
    return {
        "colours": join_words(described) or "its core colours",
        "hexes": join_words(primary) or "the core colours",
        "accents": join_words(secondary) or "restrained neutrals",
        "secondary": join_words(secondary) or "none reported",
        "names": join_words(names) or "a simple palette",
        "temp": temp if temp in ("warm", "cool", "neutral") else "distinctive",
        "mood": mood,
        "mood1": mood.split(",")[0].strip(),
        "tone": a.mood_and_tone.tone.strip() or "clear",
        "layout": a.composition.layout.strip() or "simple, uncluttered layout",
        "balance": str(getattr(a.composition, "balance", "") or "considered"),
        "personality": a.brand_insights.brand_personality.strip() or "approachable",
        "industry": a.brand_insights.perceived_industry.strip() or "its market",
        "audience": a.brand_insights.target_audience.strip() or "a broad audience",
        "purpose": request.analysis_purpose.strip() or "brand communication",
        "description": a.colors.description.strip()
        or (f"The palette uses {join_words(names)}." if names else "No palette was reported."),
        "context_note": f" Given the context ({context}), this fits well." if context else "",
    }


def _say(key: str, tier: int, rng: random.Random, f: dict[str, str]) -> str:
    text = rng.choice(_PHRASES[key, tier]).format(**f)
    return text[:1].upper() + text[1:]


# "key|tier|template" lines; each tier (creativity 0, 1, 2) has one or more phrasings.
_TEMPLATES = """
colours|0|The primary colours are {colours}.
colours|0|The palette centres on {colours}.
colours|1|{colours} lead a {temp} palette that anchors the brand.
colours|1|A {temp} palette built on {colours} gives the brand its identity.
colours|2|A {adj}{temp} palette where {colours} take centre stage!
colours|2|{colours} carry a {adj}{temp} palette that is hard to forget.
mood|0|The mood is {mood}, with a {tone} tone.
mood|1|The image feels {mood}, and its tone stays {tone}.
mood|1|Expect a {mood} mood delivered in a {tone} tone.
mood|2|It radiates a {adj}{mood} energy with a {tone} voice!
mood|2|Everything about it feels {mood}, told in a {adj}{tone} tone.
layout|0|The composition is a {layout}.
layout|1|The layout, a {layout}, guides the eye with purpose.
layout|2|A {adj}composition: {layout}, pulling the eye exactly where it matters.
personality|0|The brand comes across as {personality}.
personality|1|The brand personality reads as {personality}.
personality|2|This is a {adj}brand that feels {personality}.
audience|0|It is best suited to {audience} in {industry}.
audience|1|It speaks to {audience}, fitting {industry}.
audience|2|It is made to win over {audience} across {industry}!
next|0|For {purpose}, lead with {hexes} and keep the {mood1} mood consistent.
next|1|For {purpose}, build every asset around {hexes} and its {mood1} mood.
next|2|For {purpose}, let {hexes} and that {adj}{mood1} mood run through every touchpoint!
colours+|0|Use these values consistently so the brand is recognised at a glance.
colours+|1|Repeating these exact values across channels builds recognition quickly.
colours+|2|Owned consistently, these {adj}colours can become a signature people spot instantly!
mood+|0|Copy and imagery should match this mood.
mood+|1|Copy, photography and motion should all echo this {mood1} feeling.
mood+|2|Let every headline and visual carry that {adj}{mood1} charge!
layout+|0|Keep new layouts close to this arrangement.
layout+|1|This arrangement gives future layouts a reliable starting grid.
layout+|2|That placement is a {adj}habit worth turning into a house style!
personality+|0|This personality should guide the brand's voice.
personality+|1|Writing in this voice will keep the brand consistent.
personality+|2|Lean into it and the brand will feel {adj}and unmistakably itself!
audience+|0|Messaging should be written for this audience.
audience+|1|Channels and messages should be chosen with this audience in mind.
audience+|2|Meet this audience where they already are, with {adj}stories made for them!
next+|0|Review the results after the first campaign.
next+|1|Test two variations early and keep the one that performs best.
next+|2|Go bold early, measure everything, and double down on what sparks a reaction!
"""
_PHRASES: dict[tuple[str, int], list[str]] = {}
for _line in _TEMPLATES.strip().splitlines():
    _key, _tier, _text = _line.split("|", 2)
    _PHRASES.setdefault((_key, int(_tier)), []).append(_text)
_BULLET_TITLES = (
    ("Colours", "Colour story", "A palette that speaks"),
    ("Mood", "Mood and tone", "The feeling it leaves"),
    ("Composition", "Composition", "Where the eye goes"),
    ("Personality", "Brand personality", "Who the brand is"),
    ("Audience", "Audience", "Who it wins over"),
)


def _bullets(f: dict[str, str], tier: int, rng: random.Random, note: str) -> list[Piece]:
    keys = ("colours", "mood", "layout", "personality", "audience")
    pieces = [
        {"title": _BULLET_TITLES[k][tier], "body": _say(key, tier, rng, f)}
        for k, key in enumerate(keys)
    ]
    closing = _say("next", tier, rng, f)
    if note:  # the sixth bullet answers the instructions instead of a generic next step
        closing = f'Following your note "{note}": {closing[0].lower()}{closing[1:]}'
    pieces.append({"title": "Your brief" if note else "Recommendation", "body": closing})
    return pieces


_SECTION_LEADS = """
Colour palette|colours|{description} Primary colours: {hexes}; secondary: {secondary}.
Mood and tone|mood|The image feels {mood}, with a {tone} tone.
Composition|layout|The layout is a {layout}; its balance is {balance}.
Brand personality|personality|Together, palette and mood suggest a brand that is {personality}.
Audience|audience|Likely audience: {audience}; perceived industry: {industry}.{context_note}
Recommendations|next|For {purpose}, build around {hexes} with {accents} as accents, keep the \
{mood1} mood consistent, and reuse the {layout} as a template.
"""


def _sections(
    f: dict[str, str], tier: int, rng: random.Random, note: str, *, concise: bool
) -> list[Piece]:
    pieces: list[Piece] = []
    for line in _SECTION_LEADS.strip().splitlines():
        title, key, lead = line.split("|", 2)
        lead = lead.format(**f)
        body = _first(lead) if concise else f"{lead} {_say(key + '+', tier, rng, f)}"
        pieces.append({"title": title, "body": body})
    if note:
        body = f'You asked: "{note}". The recommendations above apply it to the {f["names"]} '
        pieces.append({"title": "Your brief", "body": body + f"palette and {f['mood1']} mood."})
    return pieces


def _posts(
    f: dict[str, str], tier: int, rng: random.Random, note: str, *, concise: bool, hashtags: bool
) -> list[Piece]:
    hype = ("Take a look.", "Take a closer look.", "You are going to love this!")[tier]
    industry = f["industry"].split(",")[0].split(" or ")[0]
    plans = [
        (
            "Post 1: Introduce the look",
            [f"Meet our look: {f['names']} with a {f['adj']}{f['mood']} mood.", hype],
            [*f["mood"].split(","), industry, "Branding"],
        ),
        (
            "Post 2: Behind the palette",
            [
                f"Why {f['hexes']}? Because our brand is {f['personality']}.",
                _say("colours", tier, rng, f),
            ],
            [*f["names"].replace(" and ", ",").split(",")[:3], "ColorPalette", "Design"],
        ),
        (
            "Post 3: Call to action",
            [
                f"Made for {f['audience']}: {f['purpose']}, in a {f['tone']} tone.",
                "Follow along for more.",
            ],
            [*_keywords(f["purpose"]), "BrandStory"],
        ),
    ]
    posts: list[Piece] = []
    for title, parts, words in plans:
        kept = parts[:1] if concise else parts
        if note and title.startswith("Post 3"):
            kept = [f"{note.rstrip('.!? ')}.", *kept]  # the brief leads the call to action
        tags = unique(t for t in (_hashtag(w) for w in words) if t)[:5] if hashtags else []
        room = 280 - (len(" ".join(tags)) + 1 if tags else 0)
        posts.append({"title": title, "body": _fit(" ".join(kept), room), "hashtags": tags or None})
    return posts


def _first(text: str) -> str:
    """The first sentence of ``text``."""
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]


def _hashtag(words: str) -> str:
    parts = re.findall(r"[A-Za-z0-9]+", words)
    tag = "".join(p[:1].upper() + p[1:] for p in parts if p.lower() not in ("and", "or"))
    return f"#{tag[:30]}" if tag else ""


def _keywords(text: str) -> list[str]:
    words = [w for w in re.findall(r"[A-Za-z]{4,}", text) if w.lower() not in _STOPWORDS]
    return unique(w.lower() for w in words)[:2]


def _fit(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"
