"""The vision-pipeline command: run the service, and operate its queue and users.

Each group of subcommands lives in ``rpc/commands/`` with a ``register(sub)``; this module
only assembles the parser, reads the settings and runs the chosen command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version

from pydantic import ValidationError

from rpc.commands import analyze, db, jobs, serving, token, users, workers
from rpc.commands.common import HelpFormatter, use_help_formatter
from rpc.config import Settings, settings_problem
from rpc.logs import setup_logging
from storage.errors import StoreUnusable

log = logging.getLogger("rpc.cli")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vision-pipeline", description=__doc__.split("\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version('vision-pipeline')}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (serving, db, token, jobs, users, workers, analyze):
        group.register(sub)
    use_help_formatter(p)
    return p


def _refuse(problem: str, *, traceback: bool) -> int:
    """A problem an operator can fix, as one line on stderr and exit 2; with LOG_LEVEL=debug
    the traceback behind it first."""
    if traceback:
        log.exception("the traceback behind the error below")
    print(f"vision-pipeline: {problem}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "standalone", False):  # a client of a running server: no settings
        return int(args.run(args))
    try:
        settings = Settings()
    except ValidationError as exc:
        debug = os.environ.get("LOG_LEVEL", "").lower() == "debug"
        if debug:
            logging.basicConfig(level=logging.DEBUG)
        return _refuse(settings_problem(exc), traceback=debug)
    setup_logging(settings)
    try:
        return int(args.run(args, settings))
    except StoreUnusable as exc:
        return _refuse(str(exc), traceback=settings.log_level == "debug")


if __name__ == "__main__":
    sys.exit(main())
