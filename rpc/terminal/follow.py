"""Following a job live: its stage by a human name, the time since following began, and,
while the content is written, the content as it streams in (``partialPieces``, or the raw
``partialContent``, when the server sends them; nothing when it does not).

On a terminal a rich ``Live`` display redraws in place (and is cleared at the end); elsewhere
(a pipe, a file, a CI log) plain lines, one per change, without escape codes. The live
display stays on screen when it stops, showing the final stage and the time it took."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from rpc.terminal.events import JobStream
from storage.jobstate import JobStatus

STAGE_NAMES: dict[str, str] = {
    JobStatus.PENDING: "waiting in the queue",
    JobStatus.ANALYZING: "analysing the image",
    JobStatus.GENERATING: "writing the content",
    JobStatus.COMPLETE: "done",
    JobStatus.ERROR: "failed",
}
# The streamed content shown on a terminal: its last lines only.
TAIL_LINES = 12


def stage_name(status: object) -> str:
    return STAGE_NAMES.get(str(status), str(status))


def _pieces(state: dict[str, Any]) -> list[dict[str, Any]]:
    pieces = state.get("partialPieces")
    if not isinstance(pieces, list):
        return []
    return [p for p in pieces if isinstance(p, dict)]


def _partial_text(state: dict[str, Any]) -> str:
    """What has streamed in so far, as text: the pieces parsed so far, else the raw text."""
    pieces = _pieces(state)
    if pieces:
        return "\n".join(f"{p.get('title', '')}: {p.get('body', '')}".strip(": ") for p in pieces)
    text = state.get("partialContent")
    return text if isinstance(text, str) else ""


class PlainProgress:
    """One line per change of stage, and one per piece as it streams in."""

    def __init__(self, console: Console, job_id: int) -> None:
        self.console = console
        self.job_id = job_id
        self.start = time.monotonic()
        self.status: str | None = None
        self.pieces_shown = 0

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.start:.1f}s"

    def show(self, state: dict[str, Any]) -> None:
        status = str(state.get("status"))
        if status != self.status:
            self.status = status
            self.console.print(f"[{self.elapsed()}] job {self.job_id}: {stage_name(status)} "
                               f"({state.get('progress', 0)}%)", markup=False)  # fmt: skip
        if status != JobStatus.GENERATING:
            return
        pieces = _pieces(state)
        for number, piece in enumerate(pieces[self.pieces_shown :], self.pieces_shown + 1):
            title = str(piece.get("title") or "").strip() or "(untitled)"
            self.console.print(f"[{self.elapsed()}]   piece {number}: {title}", markup=False)
        self.pieces_shown = max(self.pieces_shown, len(pieces))

    def close(self) -> None:
        pass


class _LiveView:
    """What the live display shows; rebuilt at each refresh, so the time keeps running."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.start = time.monotonic()
        self.stage_start = self.start
        self.state: dict[str, Any] = {}

    def update(self, state: dict[str, Any]) -> None:
        if state.get("status") != self.state.get("status"):
            self.stage_start = time.monotonic()
        self.state = state

    def __rich__(self) -> RenderableType:
        now = time.monotonic()
        status = self.state.get("status", JobStatus.PENDING)
        line = Text.assemble(
            ("● ", "cyan"), (f"job {self.job_id}: ", "bold"), (stage_name(status), "bold cyan"),
            f"  {self.state.get('progress', 0)}%",
            (f"  {now - self.stage_start:.1f}s in this stage, {now - self.start:.1f}s in all",
             "dim"),
        )  # fmt: skip
        content = _partial_text(self.state) if status == JobStatus.GENERATING else ""
        if not content:
            return line
        tail = "\n".join(content.splitlines()[-TAIL_LINES:])
        return Group(line, Text(tail, style="italic"))


class LiveProgress:
    """The rich live display of a terminal, redrawn in place; its last state stays on screen."""

    def __init__(self, console: Console, job_id: int) -> None:
        self.view = _LiveView(job_id)
        self.live = Live(self.view, console=console, refresh_per_second=8, transient=False)
        self.live.start()

    def show(self, state: dict[str, Any]) -> None:
        self.view.update(state)
        self.live.refresh()

    def close(self) -> None:
        self.live.stop()


def follow(stream: JobStream, console: Console) -> dict[str, Any] | None:
    """Show each state of the job until its final one; that state (None if the stream ended
    with nothing new: the final state was sent before, the caller reads it)."""
    display: LiveProgress | PlainProgress
    if console.is_terminal:
        display = LiveProgress(console, stream.job_id)
    else:
        display = PlainProgress(console, stream.job_id)
    last: dict[str, Any] | None = None
    try:
        for state in stream.states():
            display.show(state)
            last = state
    finally:
        display.close()
    return last
