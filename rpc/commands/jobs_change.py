"""``jobs retry`` and ``jobs cancel``: by ids, or by filter (``--status/--since/--user``).

A filter that matches more than ``CONFIRM_ABOVE`` jobs changes nothing unless ``--yes``; on a
terminal the command asks instead, elsewhere it refuses and says so (a script must say
``--yes``: nothing it did not mean can run on a guess)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rpc.commands.common import CommandError, add_filters, job_filter, with_store
from rpc.config import Settings
from storage.jobstate import RUNNING, JobStatus

if TYPE_CHECKING:
    from storage.store import JobStore

CONFIRM_ABOVE = 100
PAGE = 500  # ids changed per transaction


@dataclass(frozen=True, slots=True)
class Change:
    """What one of the two commands does."""

    verb: str  # "retry"
    done: str  # "retried"
    statuses: tuple[str, ...]  # the statuses it can change
    wrong_state: str  # why a job in another status is left alone
    apply: Callable[[JobStore, list[int]], Awaitable[dict[int, str]]]


async def _retry(store: JobStore, ids: list[int]) -> dict[int, str]:
    return {i: "pending again, retries reset" for i in await store.retry_jobs(ids)}


async def _cancel(store: JobStore, ids: list[int]) -> dict[int, str]:
    return await store.cancel_jobs(ids)


RETRY = Change(
    "retry", "retried", (JobStatus.ERROR.value,), "only a job in error can be retried", _retry
)
CANCEL = Change(
    "cancel",
    "cancelled",
    (JobStatus.PENDING.value, *sorted(s.value for s in RUNNING)),
    "only a waiting or running job can be cancelled",
    _cancel,
)


async def by_ids(store: JobStore, change: Change, ids: list[int], as_json: bool) -> int:
    wanted = list(dict.fromkeys(ids))
    states = await store.job_states(wanted)
    done = await change.apply(store, [i for i in wanted if i in states])
    if as_json:  # one object: what changed, what does not exist, what was in another state
        print(json.dumps({
            change.done: {str(i): done[i] for i in wanted if i in done},
            "missing": [i for i in wanted if i not in states],
            "leftAlone": {str(i): states[i] for i in wanted if i in states and i not in done},
        }))  # fmt: skip
        return 0 if len(done) == len(wanted) else 1
    for job_id in wanted:
        if job_id not in states:
            print(f"job {job_id} does not exist", file=sys.stderr)
        elif job_id in done:
            print(f"job {job_id} is {done[job_id]}")
        else:
            print(f"job {job_id} is {states[job_id]}: {change.wrong_state}", file=sys.stderr)
    print(f"{len(done)} of {len(wanted)} jobs {change.done}")
    return 0 if len(done) == len(wanted) else 1


def _confirmed(count: int, change: Change, yes: bool) -> bool:
    if yes or count <= CONFIRM_ABOVE:
        return True
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise CommandError(
            f"{count} jobs match: more than {CONFIRM_ABOVE}, so nothing was changed; "
            f"add --yes to {change.verb} them all"
        )
    answer = input(f"{change.verb} {count} jobs? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def by_filter(store: JobStore, change: Change, args: argparse.Namespace) -> int:
    where = job_filter(args, default=change.statuses)
    count = await store.count_jobs(where)
    if not _confirmed(count, change, args.yes):
        print("nothing changed")
        return 1
    changed: dict[int, str] = {}
    async for ids in store.job_id_pages(where, PAGE):
        changed.update(await change.apply(store, ids))
    outcomes = sorted(set(changed.values()))
    if args.json:
        tally = {o: sum(1 for v in changed.values() if v == o) for o in outcomes}
        print(json.dumps({change.done: len(changed), "matching": count, "outcomes": tally}))
        return 0
    detail = (
        ""
        if len(outcomes) < 2
        else " ("
        + ", ".join(f"{sum(1 for v in changed.values() if v == o)} {o}" for o in outcomes)
        + ")"
    )
    print(f"{len(changed)} jobs {change.done}{detail} of {count} matching")
    return 0


def run(change: Change, args: argparse.Namespace, settings: Settings) -> int:
    filtered = args.status is not None or args.user is not None or args.since is not None
    if args.job_ids and filtered:
        print("give job ids or a filter (--status/--since/--user), not both", file=sys.stderr)
        return 2
    if not args.job_ids and not filtered:
        print(
            f"which jobs? give their ids, or a filter: jobs {change.verb} --status "
            f"{change.statuses[0]} --since 1h",
            file=sys.stderr,
        )
        return 2

    async def body(store: JobStore) -> int:
        if args.job_ids:
            return await by_ids(store, change, args.job_ids, args.json)
        return await by_filter(store, change, args)

    return with_store(settings, body)


def register(jobs_sub: Any) -> None:
    helps = {
        RETRY: ("jobs in error back to pending, retries reset", "--status error"),
        CANCEL: (
            "cancel waiting jobs; running ones stop at their next stage",
            "--status pending, gemini_analyzing or deepseek_generating",
        ),
    }
    for change, (text, which) in helps.items():
        parser = jobs_sub.add_parser(
            change.verb,
            help=text,
            description=f"{text[0].upper()}{text[1:]}.\nBy ids, or by a filter (a filter "
            f"without --status means {which}).\nA filter matching more than {CONFIRM_ABOVE} "
            "jobs changes nothing without --yes (a terminal is asked).",
        )
        parser.add_argument(
            "job_ids", nargs="*", type=int, metavar="ID", help="the jobs' ids (or use a filter)"
        )
        add_filters(parser, list(change.statuses))
        parser.add_argument(
            "--yes",
            action="store_true",
            help=f"change more than {CONFIRM_ABOVE} jobs without asking",
        )
        parser.add_argument(
            "--json", action="store_true", help="print what changed as one JSON object"
        )
        parser.set_defaults(run=lambda args, settings, change=change: run(change, args, settings))
