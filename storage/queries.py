"""Every SQL statement the queue and the API run, loaded once from ``storage/sql/``.

The statements are plain SQL, one file per dialect (``postgres.sql``, ``sqlite.sql``; read
them to know what "claim a job" or "complete a job" means), each under a ``-- name: NAME --``
line and a one-line ``-- `` description. ``QUERIES`` maps each name to a ``Query`` holding
its text for each dialect that has it; a statement one dialect does not need is simply absent
from its file, and the store does not ask for it there. Nothing builds SQL at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

_HEADER = re.compile(r"^-- name: ([a-z_]+) --$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Query:
    """A named statement: its text per dialect (None where that dialect has none)."""

    name: str
    description: str
    postgres: str | None = None
    sqlite: str | None = None


def parse(text: str) -> dict[str, tuple[str, str]]:
    """A dialect file's statements: name -> (description, statement without its ``;``)."""
    found: dict[str, tuple[str, str]] = {}
    marks = list(_HEADER.finditer(text))
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        name = mark.group(1)
        end = following.start() if following is not None else len(text)
        lines = text[mark.end() : end].strip("\n").splitlines()
        if not lines or not lines[0].startswith("-- "):
            raise ValueError(f"statement {name}: a one-line '-- ' description must follow")
        body = [line for line in lines[1:] if line.strip()]
        while body and body[0].startswith("--"):
            body.pop(0)  # the description's further lines
        while body and body[-1].startswith("--"):
            body.pop()  # the next section's heading
        statement = "\n".join(body)
        if not statement.endswith(";") or ";" in statement[:-1]:
            raise ValueError(f"statement {name}: one statement, ended by ';'")
        if name in found:
            raise ValueError(f"statement {name} is named twice")
        found[name] = (lines[0][3:], statement[:-1])
    return found


def load() -> dict[str, Query]:
    """Both dialect files, merged by name."""
    folder = files("storage") / "sql"
    postgres = parse((folder / "postgres.sql").read_text(encoding="utf-8"))
    sqlite = parse((folder / "sqlite.sql").read_text(encoding="utf-8"))
    queries: dict[str, Query] = {}
    for name in [*postgres, *(n for n in sqlite if n not in postgres)]:
        pg, lite = postgres.get(name), sqlite.get(name)
        description = (pg or lite or ("", ""))[0]
        queries[name] = Query(name, description, pg[1] if pg else None, lite[1] if lite else None)
    return queries


QUERIES = load()
