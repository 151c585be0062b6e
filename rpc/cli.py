"""The ``vision-pipeline`` command: serve, worker, db, token, jobs, users (SEED_API §7).

Each group of subcommands lives in ``rpc/commands/`` with a ``register(sub)``; this module
only assembles the parser, reads the settings and runs the chosen command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import version

from rpc.commands import db, jobs, serving, token, users
from rpc.commands.common import HelpFormatter, use_help_formatter
from rpc.config import Settings


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vision-pipeline", description=__doc__.split("\n")[0], formatter_class=HelpFormatter
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {version('vision-pipeline')}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (serving, db, token, jobs, users):
        group.register(sub)
    use_help_formatter(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    _setup_logging(settings)
    return int(args.run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
