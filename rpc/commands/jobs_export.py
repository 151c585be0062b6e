"""``jobs export``: one line per job (inputs, both outputs, tokens, cost), JSON lines or CSV.

The outputs table is the design document's training data. The export walks the jobs in
keyset pages (``--page-size``), so a million jobs never sit in memory; a progress bar shows
on a terminal (stderr) and stays away from pipes and files."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rpc.commands.common import add_filters, job_filter, positive_int, with_store
from rpc.config import Settings
from storage.jobstate import JobStatus

if TYPE_CHECKING:
    from storage.store import JobStore

COLUMNS = (
    "id",
    "openId",
    "status",
    "createdAt",
    "completedAt",
    # the inputs
    "imageUrl",
    "imageContext",
    "analysisPurpose",
    "outputFormat",
    "creativityLevel",
    "additionalInstructions",
    # both outputs, and the structured output row (visionJobOutputs)
    "geminOutput",
    "deepseekOutput",
    "colors_primary",
    "colors_secondary",
    "colors_description",
    "mood",
    "tone",
    "composition_layout",
    "brand_personality",
    "perceived_industry",
    "target_audience",
    "content_pieces",
    "isTrainingData",
    # what it took
    "retryCount",
    "geminiInputTokens",
    "geminiOutputTokens",
    "deepseekInputTokens",
    "deepseekOutputTokens",
    "costUsd",
)


class Writer:
    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out = out
        self.csv = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
        if fmt == "csv":
            self.csv.writeheader()
        self.fmt = fmt

    def write(self, jobs: list[dict[str, Any]]) -> None:
        if self.fmt == "csv":
            self.csv.writerows(jobs)
            return
        self.out.writelines(
            json.dumps({c: job[c] for c in COLUMNS}, ensure_ascii=False) + "\n" for job in jobs
        )


@contextlib.contextmanager
def _opened(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as f:
        yield f


def _progress() -> Progress:
    err = Console(stderr=True)
    return Progress(
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    if args.out != "-":
        try:  # the file is the first thing that can be wrong: before any query
            open(args.out, "a").close()
        except OSError as exc:
            print(f"--out {args.out}: {exc.strerror}", file=sys.stderr)
            return 2

    async def body(store: JobStore) -> int:
        where = job_filter(args)
        exported = 0
        with _opened(args.out) as out, _progress() as progress:
            task = progress.add_task("export", total=await store.count_jobs(where))
            writer = Writer(out, args.format)
            async for jobs in store.export_pages(where, args.page_size):
                writer.write(jobs)
                exported += len(jobs)
                progress.advance(task, len(jobs))
        if args.out != "-":
            print(f"exported {exported} jobs to {args.out}", file=sys.stderr)
        return 0

    return with_store(settings, body)


def register(jobs_sub: Any) -> None:
    export = jobs_sub.add_parser(
        "export",
        help="one line per job: inputs, outputs, tokens, cost (jsonl or csv)",
        description="One line per job, oldest first: its inputs, both outputs, the structured "
        "output row,\ntokens and cost. Streams in pages: memory stays the same for any number "
        "of jobs.",
    )
    add_filters(export, [s.value for s in JobStatus])
    export.add_argument(
        "--format",
        choices=["jsonl", "csv"],
        default="jsonl",
        help="JSON lines or CSV (with a header line)",
    )
    export.add_argument(
        "--out", default="-", metavar="FILE", help="write to this file ('-': standard output)"
    )
    export.add_argument(
        "--page-size",
        type=positive_int,
        default=1000,
        help="jobs fetched per query (the memory the export holds)",
    )
    export.set_defaults(run=cmd_export)
