"""The README's walkthrough works as written (issue 18, item 2): every shell block marked
``<!-- readme-test: run -->`` is run, in order, against a real server on a fresh SQLite
database with a fresh laptop's settings (offline providers, local mode, no test-only
relaxations), and each command's answer must have the shape the README shows.

How a marked block is read: lines starting with ``$ `` are commands, the lines after one are
what it prints (stdout and stderr). Blocks not marked (installs, benchmarks, several hosts,
the image on the internet) are not run. ``<!-- readme-test: run stop-server-first -->``
stops the server first, as the README tells the reader to (the block starts one itself).

What the test changes in a command, and nothing else:

- ``localhost:3000`` becomes the test server's port, and ``.venv/bin/vision-pipeline`` this
  interpreter's ``vision-pipeline`` (``serve`` gets ``--port`` that port);
- ``sleep N`` (the README's "wait a moment") waits until the server answers and no job is
  waiting or running, so a busy machine cannot make it flaky.

The commands run with bash in an empty folder (so the sample image must come from the
server), one bash per block; the variables a block sets (``export X=…``, ``X=…``) are kept
for the next blocks, as in the reader's shell.

How an answer is compared: when the README's output is JSON, the command's must be too, with
the same keys at every level, the same JSON types, lists of the same length compared element
by element, and the same values, except timestamps (ISO 8601 strings), which differ per run.
Any other output is compared line by line, exactly.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.jobstate import JobStatus
from tests.support import ROOT, Server, free_port, start_process

README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- readme-test: run(?P<options>[^>]*?) -->$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")
SLEEP = re.compile(r"^sleep\s+\d+(\.\d+)?$")
# A fresh laptop has none of these: tests/support.py's relaxations for other tests.
LAPTOP = {"IMAGE_FETCH_ALLOW_PRIVATE": "", "JOBS_PER_MINUTE_PER_USER": "",
          "MAX_WAITING_JOBS_PER_USER": "", "RETRY_DELAY_MS": "", "POLL_INTERVAL_MS": "",
          "JWT_SECRET": ""}  # fmt: skip


@dataclass
class Command:
    line: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    start: int  # the README's line number of the fence
    options: set[str]
    commands: list[Command]


def marked_blocks(text: str) -> list[Block]:
    """The README's blocks marked to run, in order, with their commands and shown output."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        found = MARKER.match(line.strip())
        if not found:
            continue
        fence = number + 1
        assert lines[fence].startswith("```"), f"README line {number + 1}: marker not on a block"
        commands: list[Command] = []
        for body in lines[fence + 1 :]:
            if body.startswith("```"):
                break
            if body.startswith("$ "):
                commands.append(Command(body[2:]))
            else:
                assert commands, f"README line {fence + 1}: a marked block starts with output"
                commands[-1].shown.append(body)
        blocks.append(Block(fence + 1, set(found["options"].split()), commands))
    return blocks


def shape_problems(shown: Any, got: Any, where: str = "$") -> list[str]:
    """Where the answer differs from the README's, by the rules in the module docstring."""
    if isinstance(shown, dict):
        if not isinstance(got, dict):
            return [f"{where}: README shows an object, got {json.dumps(got)[:80]}"]
        problems = []
        if set(shown) != set(got):
            problems.append(f"{where}: keys {sorted(shown)} in the README, {sorted(got)} got")
        for key in set(shown) & set(got):
            problems += shape_problems(shown[key], got[key], f"{where}.{key}")
        return problems
    if isinstance(shown, list):
        if not isinstance(got, list) or len(got) != len(shown):
            return [f"{where}: README shows a list of {len(shown)}, got {json.dumps(got)[:80]}"]
        return [p for i, (a, b) in enumerate(zip(shown, got, strict=True)) for p in
                shape_problems(a, b, f"{where}[{i}]")]  # fmt: skip
    if _json_type(shown) != _json_type(got):
        return [f"{where}: README shows {json.dumps(shown)}, got {json.dumps(got)}"]
    if isinstance(shown, str) and TIMESTAMP.match(shown) and TIMESTAMP.match(got):
        return []
    if shown != got:
        return [f"{where}: README shows {json.dumps(shown)}, got {json.dumps(got)}"]
    return []


def _json_type(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def output_problems(shown: list[str], got: str) -> list[str]:
    shown_text = "\n".join(shown).strip()
    try:
        shown_json = json.loads(shown_text)
    except ValueError:
        want = [line.rstrip() for line in shown_text.splitlines()]
        have = [line.rstrip() for line in got.strip().splitlines()]
        return [] if want == have else [f"README shows {want}, got {have}"]
    try:
        got_json = json.loads(got)
    except ValueError:
        return [f"README shows JSON, got {got.strip()[:300]!r}"]
    return shape_problems(shown_json, got_json)


SETTLE = """
import sqlite3, sys, time, urllib.request
base, db = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 60
def up():
    try:
        return urllib.request.urlopen(base + "/healthz", timeout=1).status == 200
    except OSError:
        return False
def busy():
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM visionJobs WHERE status IN (?, ?, ?)",
                            sys.argv[3:]).fetchone()[0]
while not up() or busy():
    if time.monotonic() > deadline:
        sys.exit("the server did not answer, or its jobs did not finish, within 60 s")
    time.sleep(0.05)
"""


class Walk:
    """The reader's shell: a folder, the variables set so far, the server on one port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cwd = tmp / "walkthrough"
        self.cwd.mkdir()
        self.port = free_port()
        self.db = tmp / "jobs.db"
        self.state = tmp / "variables.sh"
        self.state.write_text("")
        self.settle = tmp / "settle.py"
        self.settle.write_text(SETTLE)
        script = Path(sys.executable).with_name("vision-pipeline")
        self.cli = shlex.quote(str(script)) if script.exists() else (
            f"{shlex.quote(sys.executable)} -m rpc.cli")  # fmt: skip
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "DEEPSEEK"))}
        keep.pop("JWT_SECRET", None)
        self.env = {**keep, "DATABASE_URL": f"sqlite:///{self.db}", "PROVIDERS": "offline"}
        self.groups: list[int] = []  # process groups of the blocks (a server started in one)
        self.server: Server | None = None

    def start_server(self) -> None:
        args = ["serve", "--port", str(self.port)]
        self.server = start_process(args, self.db, self.tmp / "server.log", port=self.port,
                                    **LAPTOP)  # fmt: skip

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def rewrite(self, line: str) -> str:
        line = line.replace("localhost:3000", f"localhost:{self.port}")
        serve = f"{self.cli} serve --port {self.port}"
        line = re.sub(r"\.venv/bin/vision-pipeline( serve)?",
                      lambda m: serve if m[1] else self.cli, line)  # fmt: skip
        if SLEEP.match(line.strip()):
            base = shlex.quote(f"http://127.0.0.1:{self.port}")
            waiting = " ".join(s.value for s in (JobStatus.PENDING, JobStatus.ANALYZING,
                                                 JobStatus.GENERATING))  # fmt: skip
            settle = shlex.quote(str(self.settle))
            return f"{shlex.quote(sys.executable)} {settle} {base} {self.db} {waiting}"
        return line

    def run(self, block: Block) -> list[str]:
        """Runs a block's commands in one bash; returns what each printed."""
        names = [m[1] for c in block.commands for m in [ASSIGNMENT.match(c.line)] if m]
        parts = [f"source {shlex.quote(str(self.state))}"]
        for i, command in enumerate(block.commands):
            parts += [f"printf '\\n@@readme-command {i}@@\\n'", self.rewrite(command.line)]
        parts.append("printf '\\n@@readme-command end@@\\n'")
        state = shlex.quote(str(self.state))
        if names:
            parts.append(f"for v in {' '.join(names)}; do declare -p $v; done >> {state}")
        process = subprocess.Popen(
            ["bash", "-c", "\n".join(parts)], cwd=self.cwd, env=self.env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.groups.append(process.pid)
        out, _ = process.communicate(timeout=300)
        text = out.decode(errors="replace")
        pieces = re.split(r"\n@@readme-command (?:\d+|end)@@\n", text)
        assert len(pieces) == len(block.commands) + 2, f"a command did not finish:\n{text}"
        return pieces[1:-1]

    def close(self) -> None:
        self.stop_server()
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_the_readme_marks_the_walkthrough_to_run() -> None:
    """The walkthrough is marked (a test with nothing to run could not fail)."""
    blocks = marked_blocks(README.read_text())
    commands = [c.line for b in blocks for c in b.commands]
    assert len(blocks) >= 4
    assert any("sample-brand.png" in c for c in commands)
    assert any("stop-server-first" in b.options for b in blocks)
    assert any("visionPipeline.getJobStatus" in c and "TOKEN" in c for c in commands)


def test_shapes_are_compared() -> None:
    shown = {"result": {"data": {"jobId": 1, "at": "2026-12-04T10:01:04.406Z", "l": [1, "a"]}}}
    same = {"result": {"data": {"jobId": 1, "at": "2027-01-01T00:00:00.000Z", "l": [1, "a"]}}}
    assert shape_problems(shown, same) == []
    assert shape_problems(shown, {"result": {"data": {"jobId": 1, "at": "x", "l": [1, "a"]}}})
    assert shape_problems(shown, {"result": {"data": {"jobId": "1", "at": "x", "l": [1]}}})
    assert shape_problems(shown, {"result": {"data": {"jobId": 1, "l": [1, "a"]}}})
    assert shape_problems({"a": None}, {"a": 0}) and shape_problems({"a": 1}, {"a": True})
    assert output_problems(["HTTP/1.1 204 No Content"], "HTTP/1.1 200 OK\n")
    assert output_problems([], "") == [] and output_problems(["{}"], "not json")


def test_the_readme_walkthrough_answers_as_shown(tmp_path: Path) -> None:
    walk = Walk(tmp_path)
    problems: list[str] = []
    try:
        walk.start_server()
        for block in marked_blocks(README.read_text()):
            if "stop-server-first" in block.options:
                walk.stop_server()
            for command, got in zip(block.commands, walk.run(block), strict=True):
                problems += [f"README line {block.start}, `$ {command.line[:70]}`: {p}"
                             for p in output_problems(command.shown, got)]  # fmt: skip
    finally:
        walk.close()
    assert problems == [], "\n".join(problems)
