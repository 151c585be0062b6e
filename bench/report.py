"""The machine's facts, the printed tables, and the JSON file of a bench run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import PG_ADMIN, ROOT, Section

RESULTS = ROOT / "bench" / "results"


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    import importlib.metadata as md

    versions: dict[str, str | None] = {}
    for name in ("uvicorn", "uvloop", "starlette", "asyncpg", "anyio", "procrastinate", "pgqueuer"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "sqlite": __import__("sqlite3").sqlite_version,
        "postgresql": _run("psql", PG_ADMIN, "-Atc", "SHOW server_version"),
        "node": _run("node", "--version"),
        "wrk": _run("wrk", "--version").split("[")[0].strip(),
        "commit": _run("git", "rev-parse", "--short", "HEAD"),
        "uncommitted_changes": len(_run("git", "status", "--porcelain").splitlines()),
        "load_average_at_start": list(os.getloadavg()),
        "packages": versions,
    }


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def print_section(section: Section) -> None:
    print(f"\n== {section.name} ==")
    if section.rows:
        keys: list[str] = []
        for row in section.rows:
            for k, v in row.items():
                if k != "case" and not isinstance(v, list | dict) and k not in keys:
                    keys.append(k)
        rows = [[str(r["case"]), *(_fmt(r.get(k, "")) for k in keys)] for r in section.rows]
        print(_table(["case", *keys], rows))
    for note in section.notes:
        print(f"  note: {note}")


def print_targets(sections: list[Section]) -> None:
    rows = [
        [t["target"], t["measured"], t["goal"], {True: "met", False: "MISSED", None: "-"}[t["met"]]]
        for s in sections
        for t in s.targets
    ]
    if rows:
        print("\n== targets ==")
        print(_table(["target", "measured", "goal", ""], rows))


def json_path(path: Path | str | None) -> Path:
    if path:
        return Path(path)
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"


def write_json(
    facts: dict[str, Any], args: dict[str, Any], sections: list[Section], path: Path
) -> Path:
    body = {
        "machine": facts,
        "args": args,
        "sections": {
            s.name: {"rows": s.rows, "targets": s.targets, "notes": s.notes} for s in sections
        },
    }
    path.write_text(json.dumps(body, indent=1, default=str))
    return path


def markdown(path: Path) -> str:
    """A results file as Markdown tables (for bench/RESULTS.md)."""
    body = json.loads(path.read_text())
    m = body["machine"]
    out = [
        f"Run of {m['date']} on commit {m['commit']} (+{m.get('uncommitted_changes', 0)} "
        f"uncommitted files): {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}, "
        f"PostgreSQL {m['postgresql']}, Node {m['node']}; load average at start "
        f"{m['load_average_at_start'][0]:.2f}.",
    ]
    for name, section in body["sections"].items():
        out.append(f"\n### {name}\n")
        rows = section["rows"]
        keys: list[str] = []
        for row in rows:
            for k, v in row.items():
                if k != "case" and not isinstance(v, list | dict) and k not in keys:
                    keys.append(k)
        if rows:
            out.append("| case | " + " | ".join(keys) + " |")
            out.append("|---" * (len(keys) + 1) + "|")
            for row in rows:
                cells = [_fmt(row.get(k, "")) for k in keys]
                out.append(f"| {row['case']} | " + " | ".join(cells) + " |")
        for note in section["notes"]:
            out.append(f"\n- {note}")
    targets = [t for s in body["sections"].values() for t in s["targets"]]
    if targets:
        out.append("\n### targets\n")
        out.append("| target | measured | goal | |")
        out.append("|---|---|---|---|")
        for t in targets:
            verdict = {True: "met", False: "**missed**", None: "-"}[t["met"]]
            out.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {verdict} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(Path(sys.argv[1])))
