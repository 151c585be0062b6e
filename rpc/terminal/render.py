"""A finished job for a person: the palette as coloured swatches with their hex codes, the
mood, the composition, the brand insights, the content pieces, and the tokens and cost.

Colour is rich's to decide: true colour where the terminal says it has it, fewer colours where
not, and no escape codes at all when the output is not a terminal (or ``NO_COLOR`` is set);
then a swatch is left out and the hex code stays. The vision output is read loosely (fields a
real model adds or leaves out are shown or skipped, never an error)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from storage.jobstate import JobStatus

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
SECTIONS = (("mood_and_tone", "Mood and tone"), ("composition", "Composition"),
            ("brand_insights", "Brand insights"))  # fmt: skip


def _label(key: str) -> str:
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", key).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _scalar(value: Any) -> str | None:
    """A value worth one line: text, a number, a list of those; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int | str):
        return str(value).strip() or None
    if isinstance(value, list) and value and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return None


def _heading(console: Console, title: str) -> None:
    console.print()
    console.print(Text(title, style="bold underline"))


def palette_of(colors: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """(hex, name, share) of each colour: the ``palette`` list when given, else the primary
    then the secondary hex codes."""
    found: list[tuple[str, str, float | None]] = []
    palette = colors.get("palette")
    if isinstance(palette, list):
        for c in palette:
            if isinstance(c, dict) and isinstance(c.get("hex"), str) and HEX.match(c["hex"]):
                share = c.get("share")
                share = float(share) if isinstance(share, int | float) else None
                found.append((c["hex"].lower(), str(c.get("name") or ""), share))
    if found:
        return found
    for key in ("primary", "secondary"):
        codes = colors.get(key)
        if isinstance(codes, list):
            found += [(c.lower(), key, None) for c in codes if isinstance(c, str) and HEX.match(c)]
    return found


def render_palette(console: Console, colors: dict[str, Any]) -> None:
    _heading(console, "Palette")
    swatches = console.color_system is not None and not console.no_color
    for hex_code, name, share in palette_of(colors):
        line = Text("  ")
        if swatches:
            line.append("      ", style=f"on {hex_code}")
            line.append(" ")
        line.append(hex_code, style="bold")
        if name:
            line.append(f"  {name}")
        if share is not None:
            line.append(f"  {share:.0%}", style="dim")
        console.print(line)
    description = _scalar(colors.get("description"))
    if description:
        console.print(Text(f"  {description}"))


def render_section(console: Console, title: str, section: Any) -> None:
    if not isinstance(section, dict):
        return
    lines = [(key, text) for key, value in section.items() if (text := _scalar(value))]
    if not lines:
        return
    _heading(console, title)
    for key, text in lines:
        console.print(Text.assemble("  ", (f"{_label(key)}: ", "bold"), text))


def render_analysis(console: Console, analysis: Any) -> None:
    if not isinstance(analysis, dict):
        return
    if isinstance(analysis.get("colors"), dict):
        render_palette(console, analysis["colors"])
    for key, title in SECTIONS:
        render_section(console, title, analysis.get(key))


def render_piece(console: Console, number: int, piece: Any) -> None:
    if not isinstance(piece, dict):
        line = piece if isinstance(piece, str) else json.dumps(piece, ensure_ascii=False)
        console.print(Text(f"  {number}. {line}"))
        return
    title = _scalar(piece.get("title")) or f"Piece {number}"
    console.print(Text(f"  {number}. {title}", style="bold"))
    body = piece.get("body")
    if isinstance(body, str) and body.strip():
        console.print(Text(f"     {body.strip()}"))
    for key, value in piece.items():
        if key not in ("title", "body") and (text := _scalar(value)):
            console.print(Text(f"     {_label(key)}: {text}", style="dim"))


def render_content(console: Console, content: Any) -> None:
    if content is None:
        return
    _heading(console, "Content")
    pieces = content if isinstance(content, list) else [content]
    for number, piece in enumerate(pieces, 1):
        render_piece(console, number, piece)


def render_usage(console: Console, status: dict[str, Any], usage: dict[str, Any] | None) -> None:
    _heading(console, "Usage")
    if usage is not None:
        for stage, name in (("gemini", "Image analysis"), ("deepseek", "Writing")):
            tokens_in = usage.get(f"{stage}InputTokens") or 0
            tokens_out = usage.get(f"{stage}OutputTokens") or 0
            console.print(Text(f"  {name}: {tokens_in:,} tokens in, {tokens_out:,} out"))
        console.print(Text(f"  Attempts: {usage.get('attempts', 1)}"))
    cost = (usage or {}).get("costUsd", status.get("costUsd"))
    cost_text = f"${cost:.4f}" if isinstance(cost, int | float) else "not reported"
    console.print(Text(f"  Cost: {cost_text}"))


def took(status: dict[str, Any]) -> str:
    """ " in 2.4s" from createdAt to completedAt, or nothing when either is missing."""
    try:
        start = datetime.fromisoformat(str(status["createdAt"]))
        end = datetime.fromisoformat(str(status["completedAt"]))
    except (KeyError, ValueError):
        return ""
    return f" in {(end - start).total_seconds():.1f}s"


def render_result(console: Console, status: dict[str, Any], usage: dict[str, Any] | None) -> None:
    """The whole result of a finished job (complete, or error with its message)."""
    job_id, state = status.get("jobId"), status.get("status")
    if state == JobStatus.ERROR:
        stage = f" (stage: {status['errorStage']})" if status.get("errorStage") else ""
        console.print(Text(f"Job {job_id} failed{stage}: {status.get('errorMessage')}",
                           style="bold red"))  # fmt: skip
    else:
        console.print(Text(f"Job {job_id} {state}{took(status)}", style="bold green"))
    render_analysis(console, status.get("geminOutput"))
    render_content(console, status.get("deepseekOutput"))
    render_usage(console, status, usage)
