"""Human output of the operators' commands: aligned tables (rich), plain when piped."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

# Piped output is not cut to 80 columns: a table row stays one line for grep and less.
PIPED_WIDTH = 250


def console() -> Console:
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=PIPED_WIDTH, no_color=True)
    else:
        out.width = max(out.width, shutil.get_terminal_size().columns)
    return out


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
    """An aligned table with a header line; numbers right-aligned."""
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False)
    materialised = [list(r) for r in rows]
    for i, name in enumerate(columns):
        numeric = bool(materialised) and all(
            isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in materialised
        )
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for r in materialised:
        table.add_row(*(cell(v) for v in r))
    console().print(table)


def print_fields(fields: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """Name/value pairs, one a line, the values aligned."""
    table = Table(box=None, show_header=False, title=title, title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in fields:
        table.add_row(name, cell(value))
    console().print(table)
