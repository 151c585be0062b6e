"""Every option and positional of `vision-pipeline`, in every subcommand however deep, has
help text, and every parser shows defaults; `--version` prints the package's version.

The tree is walked, not listed: a subcommand added later is checked without editing this."""

from __future__ import annotations

import argparse
from importlib.metadata import version
from pathlib import Path

import pytest

from rpc.cli import parser
from rpc.commands.common import HelpFormatter, walk_parsers

SELF_EXPLAINED = (argparse._HelpAction, argparse._VersionAction)


def missing_help(root: argparse.ArgumentParser) -> list[str]:
    missing = []
    for each in walk_parsers(root):
        for action in each._actions:
            if isinstance(action, argparse._SubParsersAction):
                named = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{each.prog} {name}" for name in action.choices
                            if name not in named]  # fmt: skip
            elif not isinstance(action, SELF_EXPLAINED) and not action.help:
                missing.append(f"{each.prog} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_positional_and_subcommand_has_help() -> None:
    assert missing_help(parser()) == []


def test_the_walk_finds_what_lacks_help() -> None:
    root = argparse.ArgumentParser(prog="x")
    sub = root.add_subparsers()
    deep = sub.add_parser("a", help="has help").add_subparsers()
    leaf = deep.add_parser("b")  # no help
    leaf.add_argument("--flag", action="store_true")
    leaf.add_argument("thing", help="explained")
    assert missing_help(root) == ["x a b", "x a b --flag"]


def test_every_parser_shows_defaults() -> None:
    parsers = list(walk_parsers(parser()))
    assert len(parsers) > 10
    assert {p.prog: p.formatter_class for p in parsers} == dict.fromkeys(
        (p.prog for p in parsers), HelpFormatter
    )
    text = parser()._subparsers._group_actions[0].choices["jobs"]  # type: ignore[union-attr]
    listing = text._subparsers._group_actions[0].choices["list"]  # type: ignore[union-attr]
    assert "how many jobs at most (default: 50)" in " ".join(listing.format_help().split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"vision-pipeline {version('vision-pipeline')}\n"


# Documents a reader of this repository does not have (the design's working papers).
OUTSIDE_DOCUMENTS = ("SEED_API", "PROVIDERS.md", "TRPC_WIRE", "TEMPLATE_FLOWS", "PERF_NOTES",
                     "STYLE.md", "shared/")  # fmt: skip


def test_no_help_text_cites_a_document_outside_the_repository() -> None:
    texts = [each.format_help() for each in walk_parsers(parser())]
    assert len(texts) > 10
    cited = [(text.splitlines()[0], name) for text in texts for name in OUTSIDE_DOCUMENTS
             if name in text]  # fmt: skip
    assert cited == []


@pytest.mark.parametrize("document", ["README.md", "ARCHITECTURE.md"])
def test_the_readme_and_the_map_cite_only_what_the_repository_holds(document: str) -> None:
    text = (Path(__file__).parent.parent / document).read_text()
    assert [name for name in OUTSIDE_DOCUMENTS if name in text] == []
