"""What the operators' commands share: the help formatter, ``--since`` and ``--json``, the
job filters, and running a command against the store with one-line errors."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from rpc.config import Settings

if TYPE_CHECKING:
    from storage.operators import JobFilter
    from storage.store import JobStore


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help shows its default; descriptions keep their line breaks.

    An option without a default (None) or an off switch (False) shows none: "(default: None)"
    on every filter says nothing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def subparsers_of(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.values())
    return found


def walk_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every parser below it (subcommands of subcommands included)."""
    yield parser
    for child in subparsers_of(parser):
        yield from walk_parsers(child)


def use_help_formatter(parser: argparse.ArgumentParser) -> None:
    """Give every parser of the tree the formatter: a subparser does not inherit its parent's."""
    for each in walk_parsers(parser):
        each.formatter_class = HelpFormatter


class CommandError(Exception):
    """A command's refusal: one line on stderr and this exit code, nothing changed."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``1h``, ``2d``, ``1w`` (that long ago) or an ISO-8601 time (UTC if no zone)."""
    now = now or datetime.now(UTC)
    span = _SPAN.match(text.strip().lower())
    if span:
        return now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use 30m, 1h, 2d, 1w or an ISO time like 2025-01-31T12:00"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")


def add_filters(parser: argparse.ArgumentParser, statuses: list[str]) -> None:
    """``--status``, ``--user``, ``--since``: which jobs a command means."""
    parser.add_argument("--status", choices=statuses, help="only jobs in this status")
    parser.add_argument("--user", metavar="OPEN_ID", help="only this user's jobs (an openId)")
    parser.add_argument(
        "--since",
        type=parse_since,
        metavar="WHEN",
        help="only jobs created since: 30m, 1h, 2d, 1w or an ISO time",
    )


def job_filter(args: argparse.Namespace, default: tuple[str, ...] | None = None) -> JobFilter:
    from storage.operators import JobFilter

    statuses = (args.status,) if args.status else default
    return JobFilter(statuses=statuses, open_id=args.user, since=args.since)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def with_store(settings: Settings, body: Callable[[JobStore], Awaitable[int]]) -> int:
    """Open the store, run ``body`` with it, close it; a ``CommandError`` is one line on
    stderr and its exit code."""
    from storage.engine import open_store

    async def main() -> int:
        store = await open_store(settings.database_url)
        try:
            return await body(store)
        finally:
            await store.driver.close()

    try:
        return anyio.run(main)
    except CommandError as refused:
        print(refused, file=sys.stderr)
        return refused.code
