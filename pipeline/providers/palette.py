"""Colour arithmetic, naming and measurement for the offline providers.

Everything here is deterministic: hex parsing and formatting, a coarse colour name from hue,
saturation and lightness, whether a weighted palette reads warm, cool or neutral, what a lead
colour or a few keywords suggest about a brand, and ``measure``, which extracts a palette and
simple statistics from an image's pixels and puts them into words.
"""

from __future__ import annotations

import colorsys
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image as PILImage
from PIL import ImageStat

from pipeline.decoding import Sample

RGB = tuple[int, int, int]

_HEX_RE = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")

WARM_NAMES = frozenset({"red", "orange", "yellow", "pink", "brown"})
COOL_NAMES = frozenset({"green", "teal", "blue", "purple"})


@dataclass(frozen=True, slots=True)
class Swatch:
    """One palette colour and the share (0..1) of the image's pixels it stands for."""

    rgb: RGB
    share: float

    @property
    def hex(self) -> str:
        return to_hex(self.rgb)

    @property
    def name(self) -> str:
        return color_name(self.rgb)


def to_hex(rgb: RGB) -> str:
    """Return ``#rrggbb`` (lower case) for an RGB triple of 0..255 ints."""
    r, g, b = (max(0, min(255, int(c))) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def parse_hex(value: str) -> RGB | None:
    """Return the RGB triple of ``#rgb``/``#rrggbb`` (``#`` optional), or None if not hex."""
    match = _HEX_RE.match(value.strip())
    if match is None:
        return None
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))


def color_name(rgb: RGB) -> str:
    """Name a colour with one of: red, orange, yellow, green, teal, blue, purple, pink,
    brown, black, white, grey.

    The thresholds are coarse on purpose: the name is for prose ("a red and white palette"),
    and the hex value carries the precision.
    """
    r, g, b = (c / 255.0 for c in rgb)
    hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
    chroma = max(r, g, b) - min(r, g, b)
    degrees = hue * 360.0

    if lightness < 0.12:
        return "black"
    if lightness > 0.94:
        return "white"
    # Chroma, not HLS saturation, decides "grey": HLS saturation is large for near-black
    # and near-white tints that the eye still reads as grey.
    if chroma < 0.12 or saturation < 0.12:
        if lightness < 0.2:
            return "black"
        if lightness > 0.88:
            return "white"
        return "grey"
    if degrees < 15 or degrees >= 345:
        if lightness > 0.75:
            return "pink"
        return "brown" if lightness < 0.3 and saturation < 0.6 else "red"
    if degrees < 45:
        return "brown" if lightness < 0.4 or saturation < 0.5 else "orange"
    if degrees < 70:
        return "brown" if lightness < 0.3 else "yellow"
    if degrees < 165:
        return "green"
    if degrees < 195:
        return "teal"
    if degrees < 255:
        return "blue"
    # Deep magentas read as purple, light ones as pink.
    if degrees < 290 or (degrees < 320 and lightness < 0.45):
        return "purple"
    return "pink"


def name_of(value: str) -> str:
    """Name a colour given as hex; any other string (a model may answer "navy blue") is
    returned trimmed, as it already is a name."""
    rgb = parse_hex(value)
    return color_name(rgb) if rgb is not None else value.strip()


def temperature(swatches: Iterable[Swatch]) -> str:
    """Classify a weighted palette as "warm", "cool", "neutral" or "mixed".

    Neutral when chromatic colours cover under a quarter of the pixels; otherwise the side
    with at least 60% of the chromatic weight wins, and "mixed" when neither does.
    """
    warm = cool = neutral = 0.0
    for swatch in swatches:
        name = swatch.name
        if name in WARM_NAMES:
            warm += swatch.share
        elif name in COOL_NAMES:
            cool += swatch.share
        else:
            neutral += swatch.share
    chromatic = warm + cool
    total = chromatic + neutral
    if total <= 0 or chromatic < 0.25 * total:
        return "neutral"
    if warm >= 0.6 * chromatic:
        return "warm"
    if cool >= 0.6 * chromatic:
        return "cool"
    return "mixed"


def unique(items: Iterable[str]) -> list[str]:
    """Return the items in first-seen order without duplicates."""
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def fix_articles(text: str) -> str:
    """Turn "a" into "an" before a vowel sound in generated prose ("an energetic feel");
    "uni-"/"use-" words keep "a" ("a uniform field")."""
    return re.sub(r"\b([Aa]) (?=[aeio]|u(?!ni|s))", r"\1n ", text)


def join_words(words: Sequence[str]) -> str:
    """Join words as prose: "a", "a and b", "a, b and c"."""
    if not words:
        return ""
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} and {words[-1]}"


# What a lead colour suggests about a brand: (personality, industries it is common in).
COLOUR_TRAITS: dict[str, tuple[str, str]] = {
    "red": ("passionate, bold", "food, retail or entertainment"),
    "orange": ("friendly, enthusiastic", "food, retail or creative services"),
    "yellow": ("optimistic, cheerful", "consumer goods, food or energy"),
    "green": ("natural, balanced", "health, wellness or sustainability"),
    "teal": ("fresh, clear-headed", "health, technology or travel"),
    "blue": ("trustworthy, dependable", "technology, finance or healthcare"),
    "purple": ("creative, imaginative", "beauty, creative or premium services"),
    "pink": ("playful, caring", "beauty, fashion or confectionery"),
    "brown": ("earthy, reliable", "food, crafts or outdoor goods"),
    "black": ("sophisticated, authoritative", "luxury, fashion or professional services"),
    "white": ("clean, simple", "technology, healthcare or minimalist design"),
    "grey": ("practical, understated", "professional services, technology or industrial"),
}


# First match wins. Patterns are anchored at a word start; short words that begin longer
# unrelated ones ("app" in "apparel", "art" in "article") are closed with \b as well.
INDUSTRY_KEYWORDS: tuple[tuple[str, str], ...] = (
    (
        r"coffee|caf[eé]|restaurant|food|bak(ery|er)|drinks?\b|beverage|brew|pizza|burger",
        "food and beverage",
    ),
    (r"tech|software|saas|apps?\b|ai\b|cloud|startup|developer|cyber", "technology"),
    (r"health|medic|clinic|wellness|pharma|dental|therap", "health and wellness"),
    (r"financ|bank|insur|invest|fintech|accounting|crypto", "finance"),
    (r"fashion|apparel|cloth|beauty|cosmetic|skincare|jewel", "fashion and beauty"),
    (r"eco\b|sustainab|organic|solar|recycl|environment", "sustainability"),
    (r"kids?\b|child|toys?\b|games?\b|gaming", "toys, games and entertainment"),
    (r"school|educat|university|tutor|e-?learning", "education"),
    (r"travel|hotel|tours?\b|tourism|airline|resort|hospitality", "travel and hospitality"),
    (r"sport|fitness|gym|athlet|yoga|running", "sports and fitness"),
    (r"real estate|property|architect|interior|homes?\b", "real estate and home"),
    (r"music|film|festival|concert|arts?\b|artist|gallery", "arts and entertainment"),
)
AUDIENCE_KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"kids?\b|child|famil|parent|baby", "families with young children"),
    (r"student|campus|universit", "students and young learners"),
    (r"teen|gen ?z\b|youth", "teenagers and young adults"),
    (r"b2b|enterprise|business|professional|corporate|office", "business professionals"),
    (r"luxury|premium|exclusive|high-end", "affluent, design-conscious buyers"),
    (r"senior|retire", "older adults"),
    (r"gamers?\b|gaming", "gamers"),
    (r"athlet|fitness|gym|sport", "active, fitness-minded people"),
)


def match_keywords(table: tuple[tuple[str, str], ...], *texts: str) -> str:
    """Return the label of the first pattern found, trying each text in turn, else ""."""
    for text in texts:
        for pattern, label in table:
            if re.search(rf"\b(?:{pattern})", text.lower()):
                return label
    return ""


def audience_for_mood(mood: str) -> str:
    """A fallback audience guess from the mood words ``describe_mood`` produces."""
    if mood.startswith(("energetic", "vibrant", "dynamic")):
        return "young, active consumers"
    if mood.startswith(("dramatic", "moody")):
        return "style-conscious adults"
    if mood.startswith("calm"):
        return "adults who value simplicity and quality"
    return "a broad consumer audience"


# --- measuring an image ----------------------------------------------------------------

_COMMON_RATIOS = ((1, 1), (5, 4), (4, 3), (3, 2), (16, 9), (2, 1), (21, 9))
SAMPLE_SIZE = 128  # pixels a side of the copy ``measure`` reads
_PALETTE_SIZE = 8
_MERGE_DISTANCE = 20.0  # RGB distance under which two palette entries count as one colour
_WEIGHT_THRESHOLD = 40.0  # distance from the background that marks a pixel as "subject"


@dataclass(frozen=True, slots=True)
class PixelStats:
    """What ``measure`` found. Fractions and coordinates are 0..1; contrast is at most 0.5."""

    width: int
    height: int
    swatches: list[Swatch]  # by share, largest first; shares are of opaque pixels
    background: Swatch  # the most common colour with transparency shown on white
    brightness: float  # mean of luma and HSV value, so saturated colours do not read dark
    saturation: float
    contrast: float  # standard deviation of luma
    focal: tuple[float, float]  # centroid of the pixels that differ from the background
    coverage: float  # share of pixels that differ from the background


def measure(sample: Sample) -> PixelStats:
    """Measure an image from its small RGBA copy (``ImageDecoder.sample``, 128 px a side)."""
    rgba, width, height = sample.pixels, sample.width, sample.height
    # Show transparency on white, as a page would; the palette still skips clear pixels.
    rgb = PILImage.alpha_composite(PILImage.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    quantized = rgb.quantize(colors=_PALETTE_SIZE, method=PILImage.Quantize.MEDIANCUT)
    flat = quantized.getpalette() or []
    indices = quantized.tobytes()
    alpha = rgba.getchannel("A").tobytes()

    all_counts = Counter(indices)
    opaque_counts = Counter(i for i, a in zip(indices, alpha, strict=True) if a >= 128)
    counts = opaque_counts or all_counts

    def entry(index: int) -> RGB:
        return (flat[3 * index], flat[3 * index + 1], flat[3 * index + 2])

    swatches = _merge([(entry(i), n) for i, n in counts.most_common()], sum(counts.values()))
    background_index, background_count = all_counts.most_common(1)[0]
    background = Swatch(entry(background_index), background_count / len(indices))

    luma = ImageStat.Stat(rgb.convert("L"))
    hsv = ImageStat.Stat(rgb.convert("HSV"))
    focal, coverage = _weight(rgb, background.rgb)
    return PixelStats(
        width=width,
        height=height,
        swatches=swatches,
        background=background,
        brightness=(luma.mean[0] + hsv.mean[2]) / 2 / 255,
        saturation=hsv.mean[1] / 255,
        contrast=luma.stddev[0] / 255,
        focal=focal,
        coverage=coverage,
    )


def _merge(entries: list[tuple[RGB, int]], total: int) -> list[Swatch]:
    """Fold near-identical palette entries (median cut repeats colours of flat images)."""
    merged: list[tuple[RGB, int]] = []
    for rgb, count in entries:
        for k, (kept, kept_count) in enumerate(merged):
            if math.dist(rgb, kept) < _MERGE_DISTANCE:
                merged[k] = (kept, kept_count + count)
                break
        else:
            merged.append((rgb, count))
    merged.sort(key=lambda item: -item[1])
    return [Swatch(rgb, count / total) for rgb, count in merged]


def _weight(rgb: PILImage.Image, background: RGB) -> tuple[tuple[float, float], float]:
    """Centroid (x, y in 0..1) of pixels weighted by their distance from the background,
    and the share of pixels far enough from it to count; (0.5, 0.5) for a uniform image."""
    width, height = rgb.size
    raw = rgb.tobytes()
    br, bg, bb = background
    total = sx = sy = 0.0
    hits = 0
    for offset in range(0, len(raw), 3):
        d = math.sqrt(
            (raw[offset] - br) ** 2 + (raw[offset + 1] - bg) ** 2 + (raw[offset + 2] - bb) ** 2
        )
        if d <= _WEIGHT_THRESHOLD:
            continue
        pixel = offset // 3
        hits += 1
        total += d
        sx += d * ((pixel % width) + 0.5)
        sy += d * ((pixel // width) + 0.5)
    if total == 0:
        return (0.5, 0.5), 0.0
    return (sx / total / width, sy / total / height), hits / (width * height)


# --- measurements in words ------------------------------------------------------------


def describe_mood(stats: PixelStats) -> tuple[str, str]:
    """Return (mood, tone) words for the measured brightness, saturation and contrast."""
    b, s, c = stats.brightness, stats.saturation, stats.contrast
    if s < 0.2:
        if b > 0.7:
            return "calm, airy", "minimal, understated"
        if b < 0.3:
            return (
                ("dramatic, bold", "stark, confident")
                if c > 0.25
                else ("moody, serious", "restrained, sophisticated")
            )
        return "calm, understated", "neutral, professional"
    if b > 0.6 and s > 0.5:
        return "energetic, playful", "bold, upbeat"
    if b < 0.35:
        if c > 0.25:
            return "dramatic, bold", "intense, confident"
        return "moody, mysterious", "serious, premium"
    if c > 0.3:
        return "dynamic, striking", "confident, high-contrast"
    if s > 0.5:
        return "vibrant, confident", "lively, expressive"
    return "balanced, approachable", "friendly, steady"


def aspect_label(width: int, height: int) -> str:
    """Name the aspect ratio: "16:9" when within 2% of a common one, else "1.23:1"."""
    ratio = width / height
    for a, b in _COMMON_RATIOS:
        for w, h in ((a, b), (b, a)):
            if abs(ratio / (w / h) - 1) < 0.02:
                return f"{w}:{h}"
    return f"{ratio:.2f}:1"


def direction_of(fx: float, fy: float) -> str:
    """Name where a point (0..1 each way) sits: "centre", "top", "upper left", "right"..."""
    vertical = "upper" if fy < 0.4 else "lower" if fy > 0.6 else ""
    horizontal = "left" if fx < 0.4 else "right" if fx > 0.6 else ""
    if vertical and horizontal:
        return f"{vertical} {horizontal}"
    if vertical:
        return "top" if vertical == "upper" else "bottom"
    return horizontal or "centre"
