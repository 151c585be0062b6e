"""``python -m bench``: the queue and the API measured against the design document's worker, its
Node/tRPC stack and the peer queues, on SQLite and PostgreSQL, in one run. Prints tables, writes
``bench/results/bench-<time>.json``. Nothing is asserted: a missed target is printed as MISSED.

    .venv/bin/python -m bench --quick                    # a smoke run, a few minutes
    .venv/bin/python -m bench                            # the full run (under ~20 minutes)
    .venv/bin/python -m bench --only pickup,throughput   # some sections

Sections: pickup, throughput, fairness, realistic, api, baselines, memory, retention,
first_content. (``bench/sse_idle.py`` measures idle live-progress subscribers; run it on its own.)
"""

from __future__ import annotations

import argparse
import contextlib
import random
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import anyio

from bench import api, design_loop, fairness, first_content, pickup, report, retention, throughput
from bench.common import (
    BACKENDS,
    ROOT,
    Section,
    create_pg,
    drop_pg,
    median,
    percentile,
    spawn,
    wait_for_postgres,
)

SECTIONS = (
    "pickup",
    "throughput",
    "fairness",
    "realistic",
    "api",
    "baselines",
    "memory",
    "retention",
    "first_content",
)
FULL = {
    "pickup_jobs": 200,
    "jobs": 5000,
    "rounds": 3,
    "realistic_jobs": 640,
    "api_rows": 1_000_000,
    "api_small": 1000,
    "api_rounds": 3,
    "api_seconds": 4.0,
    "memory_jobs": 100_000,
    "design_seconds": 12.0,
    "design_pickups": 6,
    "retention_rounds": 10,
    "retention_jobs": 20_000,
    "first_content_jobs": 20,
    "fair_heavy": 10_000,
    "fair_waves": 3,
}
QUICK = {
    "pickup_jobs": 40,
    "jobs": 1000,
    "rounds": 1,
    "realistic_jobs": 128,
    "api_rows": 100_000,
    "api_small": 1000,
    "api_rounds": 1,
    "api_seconds": 2.0,
    "memory_jobs": 10_000,
    "design_seconds": 6.0,
    "design_pickups": 3,
    "retention_rounds": 3,
    "retention_jobs": 2000,
    "first_content_jobs": 5,
    "fair_heavy": 2000,
    "fair_waves": 1,
}


def alternating(backends: tuple[str, ...], rounds: int) -> list[str]:
    """Round r runs the backends in order, reversed every other round."""
    return [b for r in range(rounds) for b in (backends if r % 2 == 0 else backends[::-1])]


def versions(o: dict[str, Any]) -> list[tuple[str, Path]]:
    """The checkouts measured: ours (named ""), and the ``--baseline`` revision's if given."""
    before = o.get("before")
    return [("", ROOT)] + ([(f"@{before[0]}", before[1])] if before else [])


def _labelled(case: str, version: str) -> str:
    return f"{case} {version}" if version else case


async def sec_pickup(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    checkouts = versions(o)
    rounds = o["rounds"] if len(checkouts) > 1 else 1
    for backend in o["backends"]:
        for layout in ("serve", "serve + worker"):
            p50s: dict[str, list[float]] = {v: [] for v, _ in checkouts}
            last: dict[str, dict[str, Any]] = {}
            for r in range(rounds):
                for version, cwd in checkouts if r % 2 == 0 else checkouts[::-1]:
                    found_now = await pickup.measure(backend, layout, tmp, o["pickup_jobs"], cwd)
                    p50s[version].append(found_now["p50_ms"])
                    last[version] = found_now
            for version, values in p50s.items():
                s.row(
                    _labelled(f"{backend}, {layout}", version),
                    **{
                        **last[version],
                        "p50_ms": round(median(values), 2),
                        "rounds_p50": " / ".join(f"{v:.2f}" for v in values),
                    },
                )
            p50 = median(p50s[""])
            found[f"pickup {backend} {layout}"] = p50
            s.target(f"pickup p50 {backend} ({layout})", f"{p50:.2f} ms", "< 5 ms", p50 < 5)
            for version, values in p50s.items():
                if version:
                    old = median(values)
                    s.target(
                        f"pickup p50 {backend} ({layout}): after / before ({version[1:]})",
                        f"{p50 / old:.3f} ({p50:.2f} vs {old:.2f} ms)",
                        "≤ 1.05",
                        p50 / old <= 1.05,
                    )


async def sec_throughput(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    # The target is judged at the default WORKER_CONCURRENCY (16); the wider setting shows
    # how far the same worker goes when more jobs share each commit.
    # --tp-users: the same jobs spread over more users too (issue 17's fair claim), at 16.
    cases = [
        (b, c, v, cwd, u)
        for b in o["backends"]
        for c, u in [(16, u) for u in o["tp_users"]] + [(c, 1) for c in o["tp_more"]]
        for v, cwd in versions(o)
    ]
    runs: dict[tuple[str, int, str, int], list[dict[str, Any]]] = {
        (b, c, v, u): [] for b, c, v, _, u in cases
    }
    for r in range(o["rounds"]):
        for backend, concurrency, version, cwd, users in cases if r % 2 == 0 else cases[::-1]:
            result = await throughput.instant(backend, tmp, o["jobs"], concurrency, cwd, users)
            runs[(backend, concurrency, version, users)].append(result)
    for key, results in runs.items():
        _throughput_row(s, o, key, results, runs, found)


def _throughput_row(
    s: Section,
    o: dict[str, Any],
    key: tuple[str, int, str, int],
    results: list[dict[str, Any]],
    runs: dict[tuple[str, int, str, int], list[dict[str, Any]]],
    found: dict[str, float],
) -> None:
    goals = {"sqlite": 2000, "postgresql": 3000}
    backend, concurrency, version, users = key
    who = f", {users} users" if users != 1 else ""
    rate = median([r["jobs_per_s"] for r in results])
    last = results[-1]
    s.row(
        _labelled(f"{backend}, {o['jobs']:,} jobs{who}, concurrency {concurrency}", version),
        jobs_per_s=rate,
        rounds=" / ".join(f"{r['jobs_per_s']:,.0f}" for r in results),
        seconds=last["seconds"],
        create_s=last["create_seconds"],
        cpu_api_s=last["cpu_api_s"],
        cpu_worker_s=last["cpu_worker_s"],
        complete=last["complete"],
        outputs_rows=last["outputs_rows"],
        attempt_rows=last["attempt_rows"],
        mean_claim_size=last["mean_claim_size"],
        worker=last["worker"],
    )
    if version:
        ours = median([r["jobs_per_s"] for r in runs[(backend, concurrency, "", users)]])
        s.target(
            f"instant throughput {backend} c{concurrency}{who}: after / before ({version[1:]})",
            f"{ours / rate:.3f} ({ours:,.0f} vs {rate:,.0f} jobs/s)",
            "≥ 0.95",
            ours / rate >= 0.95,
        )
        if users != 1 and (backend, concurrency, version, 1) in runs:
            # Issue 17: many users against the baseline's single user, within 10%.
            one = median([r["jobs_per_s"] for r in runs[(backend, concurrency, version, 1)]])
            s.target(
                f"instant throughput {backend} c{concurrency}: {users} users / before's "
                f"1 user ({version[1:]})",
                f"{ours / one:.3f} ({ours:,.0f} vs {one:,.0f} jobs/s)",
                "≥ 0.90",
                ours / one >= 0.90,
            )
        return
    if users != 1:
        found[f"throughput {backend} {users} users"] = rate
        return
    if concurrency != 16:
        found[f"throughput {backend} concurrency {concurrency}"] = rate
        return
    found[f"throughput {backend}"] = rate
    s.target(
        f"instant throughput {backend}",
        f"{rate:,.0f} jobs/s",
        f"≥ {goals[backend]:,} jobs/s",
        rate >= goals[backend],
    )


async def sec_fairness(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    """Issue 17: lone users' jobs behind one user's 10,000 waiting ones, 200 ms providers
    (with --baseline, that revision too: first come, first served leaves them waiting)."""
    for backend in o["backends"]:
        for version, cwd in versions(o):
            r = await fairness.measure(
                backend, tmp, heavy=o["fair_heavy"], waves=o["fair_waves"], cwd=cwd
            )
            case = f"{backend}, {r['heavy_jobs']:,} jobs of one user + {r['lone_jobs']} lone users"
            s.row(_labelled(case, version), **r)
            if version:
                continue
            found[f"fairness p95 {backend}"] = r["p95_ms"]
            s.target(
                f"lone job start delay p95 {backend}",
                f"{r['p95_ms']:.0f} ms (p50 {r['p50_ms']:.0f}, max {r['max_ms']:.0f}; "
                f"{r['lone_started']}/{r['lone_jobs']} started)",
                "< 300 ms",
                r["lone_started"] == r["lone_jobs"] and r["p95_ms"] < 300,
            )


async def sec_realistic(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    for backend in o["backends"]:
        r = await throughput.realistic(backend, tmp, o["realistic_jobs"])
        s.row(f"{backend}, {r['jobs']} jobs, 1.5 s + 3 s, concurrency 64", **r)
        s.target(
            f"realistic throughput {backend}",
            f"{r['jobs_per_s']:.2f} jobs/s = {100 * r['vs_ideal']:.1f}% of "
            f"{r['ideal_jobs_per_s']:.2f}; {r['in_flight_median']:g} in flight",
            "≥ 90% of ideal",
            r["vs_ideal"] >= 0.9,
        )


async def sec_api(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    await api.run(
        s,
        tmp,
        (o["api_rows"], o["api_small"]),
        rounds=o["api_rounds"],
        seconds=o["api_seconds"],
        node=not o["no_node"],
        backends=tuple(o["backends"]),
        before=o.get("before"),
    )


async def _peer(queue: str, tmp: Path, jobs: int, pickups: int) -> dict[str, Any]:
    import json
    import os
    import sys

    url = await create_pg(queue)
    try:
        proc = spawn(
            [
                sys.executable,
                "-m",
                "bench.peers",
                queue,
                "--dsn",
                url,
                "--jobs",
                str(jobs),
                "--pickup",
                str(pickups),
            ],
            tmp / f"{queue}_{os.urandom(3).hex()}.log",
            dict(os.environ),
        )
        await anyio.to_thread.run_sync(proc.process.wait)
        found = [x for x in proc.log().splitlines() if x.startswith("BENCH-RESULT ")]
        line = found[-1] if found else ""
        if not line:
            raise RuntimeError(f"{queue} failed:\n{proc.log()[-2000:]}")
        return dict(json.loads(line.split(" ", 1)[1]))
    finally:
        await drop_pg(url)


async def sec_baselines(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    for backend in o["backends"]:
        r = await design_loop.measure(
            backend, tmp, pickups=o["design_pickups"], seconds=o["design_seconds"]
        )
        lat = r.pop("pickup_ms")
        s.row(
            f"design document's loop, {backend}",
            pickup_p50_ms=round(median(lat), 1),
            pickup_max_ms=round(max(lat), 1),
            **r,
        )
        found[f"design {backend}"] = r["jobs_per_s"]
        found[f"design pickup {backend}"] = median(lat)
        s.notes.append(
            f"design loop on {backend}: ran {r['ran_seconds']} s with a full queue "
            f"and extrapolated to 5,000 jobs ({r['extrapolated_5000_jobs_s']} s)"
        )
    if "postgresql" in o["backends"]:
        peers: dict[str, list[dict[str, Any]]] = {"pgqueuer": [], "procrastinate": []}
        for queue in alternating(("pgqueuer", "procrastinate"), o["rounds"]):
            try:
                peers[queue].append(await _peer(queue, tmp, o["jobs"], o["pickup_jobs"]))
            except Exception as exc:  # a failed round is reported, the others still count
                s.notes.append(f"{queue}: a round failed: {exc}"[:300])
        for queue, results in peers.items():
            if not results:
                continue
            lat = [v for r in results for v in r["pickup_ms"][5:]]  # first ones: warm-up
            rate = median([r["jobs_per_s"] for r in results])
            s.row(
                f"{queue} {results[0]['version']} (no-op, {results[0]['settings']})",
                jobs_per_s=round(rate),
                rounds=" / ".join(f"{r['jobs_per_s']:,.0f}" for r in results),
                pickup_p50_ms=round(percentile(lat, 50), 2),
                pickup_p95_ms=round(percentile(lat, 95), 2),
            )
            found[f"peer {queue}"] = rate
            found[f"peer pickup {queue}"] = percentile(lat, 50)
    _ratios(s, found)


def _ratios(s: Section, found: dict[str, float]) -> None:
    """Ours against each baseline, where both were measured in this run."""
    pairs = [
        ("throughput postgresql", "peer pgqueuer", "throughput PG: ours / pgqueuer"),
        ("throughput postgresql", "peer procrastinate", "throughput PG: ours / procrastinate"),
        ("throughput postgresql", "design postgresql", "throughput PG: ours / design loop"),
        ("throughput sqlite", "design sqlite", "throughput SQLite: ours / design loop"),
    ]
    for ours, theirs, what in pairs:
        if ours in found and theirs in found and found[theirs]:
            s.row(what, ratio=round(found[ours] / found[theirs], 2))
    for backend in ("sqlite", "postgresql"):
        mine = found.get(f"pickup {backend} serve")
        keys = {"design loop": f"design pickup {backend}"}
        if backend == "postgresql":
            keys.update(pgqueuer="peer pickup pgqueuer", procrastinate="peer pickup procrastinate")
        for name, key in keys.items():
            if mine and key in found:
                s.row(
                    f"pickup p50 {backend}: {name} / ours (serve)",
                    ratio=round(found[key] / mine, 2),
                )


async def sec_memory(s: Section, tmp: Path, o: dict[str, Any], found: dict[str, float]) -> None:
    total = o["memory_jobs"]
    points = sorted({p for p in (1000, total // 10, total // 2, total) if p >= 1000})
    for backend in o["backends"]:
        r = await throughput.memory(backend, tmp, points)
        s.row(
            f"{backend}, instant worker",
            **{f"rss_after_{k}": v for k, v in r["rss_mib"].items()},
            growth_mib=r["growth_mib"],
            growth_pct=r["growth_pct"],
            seconds=r["seconds"],
        )
        s.target(
            f"worker RSS flat {backend}",
            f"{r['rss_mib']['1000']} → {r['rss_mib'][str(total)]} MiB "
            f"({r['growth_pct']:+.1f}%) after {total:,} jobs",
            "≤ +10%",
            r["growth_pct"] <= 10,
        )


RUNNERS = {
    "pickup": sec_pickup,
    "throughput": sec_throughput,
    "fairness": sec_fairness,
    "realistic": sec_realistic,
    "api": sec_api,
    "baselines": sec_baselines,
    "memory": sec_memory,
    "retention": retention.section,
    "first_content": first_content.section,
}


def parse(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--no-node", action="store_true", help="API section without the Node server")
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="pickup, throughput, fairness, api: also run this git revision's processes in "
        "the same alternating rounds (before/after a change)",
    )
    p.add_argument("--out", type=Path, help="JSON path (default bench/results/bench-<time>.json)")
    p.add_argument(
        "--tp-more",
        default="64",
        help="instant throughput at these WORKER_CONCURRENCY values too, beside the default 16 "
        "(comma-separated; empty: none)",
    )
    p.add_argument(
        "--tp-users",
        default="1",
        help="instant throughput (concurrency 16) with the jobs spread over these numbers of "
        "users (comma-separated, e.g. 1,100: issue 17's many-users case beside the single user)",
    )
    for key, value in FULL.items():
        p.add_argument(
            "--" + key.replace("_", "-"),
            type=type(value),
            default=None,
            help=f"full run: {value}, --quick: {QUICK[key]}",
        )
    args = vars(p.parse_args(argv))
    sizes = QUICK if args["quick"] else FULL
    for key, value in sizes.items():
        if args[key] is None:
            args[key] = value
    args["only"] = [x.strip() for x in args["only"].split(",") if x.strip()]
    unknown = set(args["only"]) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    args["backends"] = tuple(b.strip() for b in args["backends"].split(","))
    args["tp_more"] = tuple(int(c) for c in args["tp_more"].split(",") if c.strip())
    args["tp_users"] = tuple(int(u) for u in args["tp_users"].split(",") if u.strip()) or (1,)
    return args


async def main(o: dict[str, Any]) -> None:
    facts = report.machine()
    print(
        f"bench on {facts['cpu']} ({facts['cores']} cores), Python {facts['python']}, "
        f"PostgreSQL {facts['postgresql']}, Node {facts['node']}, commit {facts['commit']} "
        f"(+{facts['uncommitted_changes']} uncommitted files); "
        f"load average {facts['load_average_at_start'][0]:.2f}"
    )
    sections: list[Section] = []
    found: dict[str, float] = {}
    random.seed(7)
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in o.items()}
    out = report.json_path(o["out"])
    with tempfile.TemporaryDirectory(prefix="vp-bench-") as tmp, contextlib.ExitStack() as stack:
        if o["baseline"]:  # every section runs that revision's processes beside ours
            o["before"] = stack.enter_context(api.baseline_checkout(o["baseline"], Path(tmp)))
        for name in [n for n in SECTIONS if n in o["only"]]:
            t0 = time.monotonic()
            section = Section(name)
            sections.append(section)
            try:
                if "postgresql" in o["backends"]:
                    await wait_for_postgres()
                await RUNNERS[name](section, Path(tmp), o, found)
            except Exception as exc:  # one broken section must not cost the others
                traceback.print_exc()
                section.notes.append(f"FAILED: {type(exc).__name__}: {exc}"[:500])
            section.notes.append(f"section took {time.monotonic() - t0:.0f} s")
            report.print_section(section)
            report.write_json(facts, args, sections, out)  # after every section
    report.print_targets(sections)
    print(f"\nresults: {out}")


if __name__ == "__main__":
    anyio.run(main, parse())
