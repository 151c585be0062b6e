"""Human output of the operators' commands: aligned tables (rich), plain text when piped."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

# Piped output is not cut to 80 columns: a table row stays one line for grep and less.
PIPED_WIDTH = 250


def emit(renderable: RenderableType) -> None:
    """On a terminal, rich as usual; piped, plain text without colours or padding."""
    screen = Console(highlight=False)
    if screen.is_terminal:
        screen.print(renderable)
        return
    buffer = io.StringIO()
    Console(file=buffer, highlight=False, width=PIPED_WIDTH, no_color=True).print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def cell(value: Any, limit: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    text = str(value)
    if limit and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None
) -> None:
    """An aligned table under a header line; numbers right-aligned."""
    if title:
        print(title)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    materialised = [list(r) for r in rows]
    for i, name in enumerate(columns):
        numeric = bool(materialised) and all(
            isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in materialised
        )
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for r in materialised:
        table.add_row(*(cell(v) for v in r))
    emit(table)


def print_listing(
    columns: Sequence[str], rows: Sequence[dict[str, Any]], noun: str, limit: int, which: str
) -> None:
    """A list command's table and its count; ``which`` says which rows a full page holds
    ("the newest") when ``--limit`` may have cut the list."""
    print_table(columns, ([row[c] for c in columns] for row in rows))
    cut = f" ({which}; --limit for more)" if len(rows) == limit else ""
    print(f"{len(rows)} {noun}{cut}")


def print_fields(fields: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """Name/value pairs, one a line, the values aligned."""
    if title:
        print(title)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in fields:
        table.add_row(name, cell(value))
    emit(table)
