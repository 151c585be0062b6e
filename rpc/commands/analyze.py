"""``analyze``: the terminal way to use a running server. A local file goes through
uploadImage (a URL as is) into createJob; the job is followed live over its SSE stream; the
result is printed for a person (or, with ``--json``, getJobStatus's answer).

Progress goes to stderr and the result to stdout, so ``--json | jq`` and ``> result.txt``
keep only the result. Exit codes: 0 complete; 1 the job ended in error; 2 bad usage or input
(a missing file, refused by the server as bad input); 3 the server could not be reached, or
refused the credentials or a quota (or failed itself); 130 on Ctrl-C (the job goes on)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.text import Text

from rpc.commands.common import positive_int
from rpc.terminal.client import (
    EXIT_BAD_INPUT,
    EXIT_COMPLETE,
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    Api,
    ClientError,
)
from rpc.terminal.events import JobStream, failed
from rpc.terminal.follow import follow
from rpc.terminal.render import render_result

DEFAULT_SERVER = "http://localhost:3000"
TOKEN_VARIABLE = "VISION_PIPELINE_TOKEN"
FORMATS = ("bullet_points", "detailed_analysis", "social_media_post")
SENT_AS_IS = ("http://", "https://", "data:")
DESCRIPTION = """\
Analyse an image on a running server and follow the job live: a local file is uploaded
first, a URL is sent as is. Progress goes to stderr (plain lines when it is not a terminal),
the result to stdout: the palette, mood, composition, brand insights, the content pieces,
tokens and cost, or with --json the getJobStatus answer. Ctrl-C stops following; the job
goes on (follow it again with --job N).

exit codes: 0 complete; 1 the job ended in error; 2 bad usage or input (a missing file,
refused by the server as bad input); 3 the server could not be reached, refused the
credentials or a quota, or failed itself; 130 stopped with Ctrl-C."""


def creativity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 2")
    return value


def server_url(text: str) -> str:
    if not text.lower().startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s) URL like {DEFAULT_SERVER}")
    return text


def image_url(api: Api, given: str) -> str:
    """What createJob gets: a URL as is, a local file's uploaded ``/api/images/<sha256>``."""
    if given.lower().startswith(SENT_AS_IS):
        return given
    path = Path(given).expanduser()
    if not path.exists():
        if given.startswith("/api/images/"):  # an image already on the server
            return given
        raise ClientError(f"{given}: no such file (give an image file or an http(s) URL)",
                          EXIT_BAD_INPUT)  # fmt: skip
    if not path.is_file():
        raise ClientError(f"{given}: not a file", EXIT_BAD_INPUT)
    return api.upload(path)


def job_input(args: argparse.Namespace, url: str) -> dict[str, Any]:
    job: dict[str, Any] = {
        "imageUrl": url,
        "analysisPurpose": args.purpose,
        "outputFormat": args.format,
        "creativityLevel": args.creativity,
    }
    if args.context is not None:
        job["imageContext"] = args.context
    if args.instructions is not None:
        job["additionalInstructions"] = args.instructions
    return job


def lookup_hint(job_id: int, server: str, token_from: str | None) -> str:
    """How to find the job again after Ctrl-C: this command, or curl. ``token_from``: where
    the token came from ("option", "environment", or None): the hint names it, never shows it."""
    where = "" if server.rstrip("/") == DEFAULT_SERVER else f" --server {server}"
    bearer = "TOKEN" if token_from == "option" else f"${TOKEN_VARIABLE}"
    again = " --token TOKEN" if token_from == "option" else ""
    auth = f'-H "authorization: Bearer {bearer}" ' if token_from else ""
    query = quote(json.dumps({"jobId": job_id}, separators=(",", ":")))
    url = f"{server.rstrip('/')}/api/trpc/visionPipeline.getJobStatus?input={query}"
    return (f"Stopped following job {job_id}; it goes on. Look it up with:\n"
            f"  vision-pipeline analyze --job {job_id}{where}{again}\n"
            f"  curl {auth}'{url}'")  # fmt: skip


class Run:
    """One ``analyze``: its consoles, its server, and how far it got (for Ctrl-C)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.token = args.token or os.environ.get(TOKEN_VARIABLE) or None
        self.token_from = "option" if args.token else "environment" if self.token else None
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)
        self.out.soft_wrap = not self.out.is_terminal  # a pipe gets whole lines
        self.err.soft_wrap = not self.err.is_terminal
        self.api = Api(args.server, self.token)
        self.job_id: int | None = args.job
        self.creating = False

    def say(self, message: str, style: str | None = None) -> None:
        self.err.print(Text(message, style=style or ""), soft_wrap=True)

    def submit(self) -> int:
        url = image_url(self.api, self.args.image)
        self.creating = True
        job_id = self.api.create_job(job_input(self.args, url))
        self.creating = False
        return job_id

    def result(self, job_id: int) -> int:
        follow(JobStream(self.api, job_id), self.err)
        status = self.api.status(job_id)
        try:
            if self.args.json:
                print(json.dumps(status, indent=2, ensure_ascii=False), flush=True)
            else:
                render_result(self.out, status, self.api.usage(job_id))
        except BrokenPipeError:  # `| head`: the reader has gone; say nothing more
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_JOB_FAILED if failed(status) else EXIT_COMPLETE

    def interrupted(self) -> int:
        if self.job_id is not None:
            self.say(lookup_hint(self.job_id, self.api.base, self.token_from))
        elif self.creating:
            self.say("Stopped while the job was being created: it may exist; see "
                     "visionPipeline.getJobHistory.")  # fmt: skip
        else:
            self.say("Stopped before a job was created.")
        return EXIT_INTERRUPTED

    def __call__(self) -> int:
        try:
            if self.job_id is None:
                self.job_id = self.submit()
                self.say(f"job {self.job_id} created on {self.api.base}", style="dim")
            return self.result(self.job_id)
        except KeyboardInterrupt:
            return self.interrupted()
        except ClientError as exc:
            self.say(f"vision-pipeline analyze: {exc.message}", style="red")
            return exc.code
        finally:
            self.api.close()


def cmd_analyze(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.job is None):
        print("vision-pipeline analyze: give an image (a file or a URL) or --job N, not both",
              file=sys.stderr)  # fmt: skip
        return EXIT_BAD_INPUT
    return Run(args)()


def register(sub: Any) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse an image on a running server, following the job live",
        description=DESCRIPTION,
    )
    p.add_argument("image", nargs="?", metavar="PATH_OR_URL",
                   help="a local image file (uploaded first), or an http(s) or data:image URL "
                        "(sent as is)")  # fmt: skip
    p.add_argument("--job", type=positive_int, metavar="N",
                   help="follow job N (already created) instead of creating one")  # fmt: skip
    p.add_argument("--purpose", default="Brand analysis", help="what the analysis is for")
    p.add_argument("--format", choices=FORMATS, default="bullet_points",
                   help="the kind of content to write")  # fmt: skip
    p.add_argument("--creativity", type=creativity, default=1.0, metavar="0..2",
                   help="how free the writing is, from 0 to 2")  # fmt: skip
    p.add_argument("--context", metavar="TEXT", help="what the image is, for the analysis")
    p.add_argument("--instructions", metavar="TEXT", help="additional instructions for the writing")
    p.add_argument(
        "--server",
        type=server_url,
        default=DEFAULT_SERVER,
        metavar="URL",
        help="the server's address",
    )
    p.add_argument(
        "--token",
        help=f"a session token (`vision-pipeline token`); default: ${TOKEN_VARIABLE}; none in "
        "the server's local mode",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print getJobStatus's answer as JSON instead of the result for a person",
    )
    p.set_defaults(run=cmd_analyze, standalone=True)
