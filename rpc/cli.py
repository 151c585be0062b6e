"""The ``vision-pipeline`` command: serve, worker, db, token, jobs, users (SEED_API §7).

Each group of subcommands lives in ``rpc/commands/`` with a ``register(sub)``; this module
only assembles the parser, reads the settings and runs the chosen command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rpc.commands import db, jobs, serving, token, users
from rpc.config import Settings
from rpc.logs import setup_logging


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vision-pipeline", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for group in (serving, db, token, jobs, users):
        group.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    setup_logging(settings)
    return int(args.run(args, settings))


if __name__ == "__main__":
    sys.exit(main())
