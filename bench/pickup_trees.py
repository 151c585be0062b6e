"""Pickup (``bench.pickup``) of several checkouts in the same alternating rounds.

``python -m bench --only pickup --baseline REV`` compares this checkout with one revision. This
compares any number of trees, each a folder holding a checkout (a ``git worktree``, perhaps
with a patch applied), so that a change can be measured alone: e.g. issue 14's reorganisation
with its own pickup fix, without what later issues added (bench/RESULTS.md §26)::

    git worktree add --detach /tmp/w14 39ec8f2
    git -C /tmp/w14 apply "$PWD/bench/trees/issue14-pickup-fix-on-39ec8f2.patch"
    git worktree add --detach /tmp/w31 31b426c
    .venv/bin/python -m bench.pickup_trees --rounds 5 --jobs 120 \\
        issue14=/tmp/w14 head=. before=/tmp/w31

The last tree named is the one the others are divided by. Each round runs every tree on every
backend and layout, the trees' order reversed every other round; a tree other than this
checkout makes its own schema (its ``serve`` would rightly refuse a newer one).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import anyio

from bench import pickup

LAYOUTS = ("serve", "serve + worker")


async def _run(trees: dict[str, Path], rounds: int, jobs: int, backends: list[str]) -> None:
    p50: dict[tuple[str, str, str], list[float]] = {}
    names = list(trees)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = names if r % 2 == 0 else names[::-1]
            for backend in backends:
                for layout in LAYOUTS:
                    for name in order:
                        measured = await pickup.measure(backend, layout, Path(tmp), jobs,
                                                        cwd=trees[name])  # fmt: skip
                        p50.setdefault((backend, layout, name), []).append(measured["p50_ms"])
                        print(f"round {r}: {backend}, {layout}, {name}: p50 "
                              f"{measured['p50_ms']} ms", flush=True)  # fmt: skip
    last = names[-1]
    print(f"\n| case | {' | '.join(names)} | {' | '.join(f'{n} / {last}' for n in names[:-1])} |")
    print("|---" * (2 * len(names)) + "|")
    for backend in backends:
        for layout in LAYOUTS:
            med = {n: statistics.median(p50[(backend, layout, n)]) for n in names}
            cells = [f"{med[n]:.2f} ms" for n in names]
            ratios = [f"{med[n] / med[last]:.3f}" for n in names[:-1]]
            print(f"| {backend}, {layout} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    print("\nrounds (p50 ms):")
    for (backend, layout, name), values in sorted(p50.items()):
        print(f"  {backend}, {layout}, {name}: {' '.join(f'{v:.2f}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", help="NAME=FOLDER, the baseline last")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--jobs", type=int, default=120, help="jobs per case (default 120)")
    parser.add_argument("--backends", default="postgresql,sqlite",
                        help="comma-separated (default postgresql,sqlite)")  # fmt: skip
    args = parser.parse_args()
    trees = {}
    for spec in args.trees:
        name, _, folder = spec.partition("=")
        trees[name] = Path(folder).resolve()
    anyio.run(_run, trees, args.rounds, args.jobs, args.backends.split(","))


if __name__ == "__main__":
    main()
