"""The API's own CPU per request, without the noise around it: ``bench.inproc_driver`` sends a
tree's ASGI app the same tRPC GET requests as the wrk runs (a random job of a random client
user, or that user's history page), one after another, in a process of its own, and reads
that process's CPU time. No HTTP server, no wrk and no other process share the measured loop,
and ours and the baseline's processes take turns in short passes (``PASS`` requests each), so
the machine's drift, which moves wrk's req/s and the server's CPU per request by ±10% between
rounds here (bench/RESULTS.md §19, §23), falls on both alike. Not measured: uvicorn's HTTP
parsing and the socket writes, the same code in both trees. Runs with ``--baseline``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from statistics import median
from typing import IO, Any

from bench import dataset
from bench.common import ROOT, Section, process_env, token

DRIVER = ROOT / "bench" / "inproc_driver.py"
# The tree measured is the working directory: put it first on the path, whatever the venv's
# editable install points at, and run our driver script from there.
_RUN = (
    f"import runpy, sys; sys.path.insert(0, '.'); "
    f"runpy.run_path({str(DRIVER)!r}, run_name='__main__')"
)
PASS = 500  # requests per pass: ~0.1-0.2 s, short against the machine's drift
WARMUP = 1000


def job_spec(size: int, procedure: str) -> dict[str, Any]:
    return {
        "clients": [[u, token(dataset.open_id(u))] for u in dataset.client_users(size)],
        "users": dataset.users_for(size),
        "per_user": dataset.PER_USER,
        "procedure": procedure,
        "warmup": WARMUP,
    }


class Driver:
    """One tree's driver process, asked for one pass at a time."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def _line(self) -> dict[str, Any]:
        out: IO[str] | None = self.process.stdout
        assert out is not None
        line = out.readline()
        if not line:
            raise RuntimeError(f"in-process driver ended (exit {self.process.wait()})")
        figures: dict[str, Any] = json.loads(line)
        return figures

    def run(self, requests: int) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{requests}\n")
        self.process.stdin.flush()
        figures = self._line()
        if figures["non_200"]:
            raise RuntimeError(f"in-process API: {figures['non_200']} answers not 200")
        return float(figures["cpu_us"])


@contextmanager
def driver(url: str, cwd: Path, job: dict[str, Any], log: Path, **env: str) -> Iterator[Driver]:
    with open(log, "ab") as errors:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUN], cwd=cwd, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=errors,
            env=process_env(url, LOG_LEVEL="warning", **env),
        )  # fmt: skip
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps(job) + "\n")
        process.stdin.flush()
        one = Driver(process)
        if not one._line().get("ready"):
            raise RuntimeError(f"in-process driver in {cwd} did not start (see {log})")
        yield one
    finally:
        process.stdin.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def compare(
    section: Section, url: str, backend: str, size_label: str, size: int,
    before: tuple[str, Path], rounds: int, passes: int, tmp: Path, ours: Path = ROOT,
) -> None:  # fmt: skip
    """CPU µs per request of ``ours`` (this checkout unless told; the access log on, as by
    default, and off) and of ``before``, for each procedure: ``rounds`` rounds, each with a
    fresh process per tree (a process's own speed, its memory layout, differs from the next
    one's by a few percent: bench/RESULTS.md §30), started in an order that turns each round,
    running ``passes`` passes in turn, the order rotating. A row each and an after/before
    target (≤ 1.05) on the medians of all passes, with the access log on, and the median of
    the passes' paired ratios beside it."""
    rev, checkout = before
    trees = [
        ("python", ours, {"ACCESS_LOG": "true"}),
        ("python ACCESS_LOG=false", ours, {"ACCESS_LOG": "false"}),
        (f"python@{rev}", checkout, {}),
    ]
    for procedure in ("status", "history"):
        job = job_spec(size, procedure)
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in trees}
        for r in range(rounds):
            # The order the processes start in turns too: started first or last, the same
            # tree measured 0.96-1.07 of the others (bench/RESULTS.md §31).
            started = trees[r % len(trees) :] + trees[: r % len(trees)]
            with ExitStack() as stack:
                drivers = [
                    (name, stack.enter_context(driver(
                        url, cwd, job,
                        tmp / f"inproc_{backend}_{size_label}_{procedure}_{name}_{r}.log", **env,
                    )))
                    for name, cwd, env in started
                ]  # fmt: skip
                for p in range(passes):
                    shift = (r + p) % len(drivers)
                    for name, one in drivers[shift:] + drivers[:shift]:
                        cpu[name].append(one.run(PASS))
        for name, _, _ in trees:
            section.row(f"in-process {name} {backend} {size_label} {procedure}",
                        cpu_us=round(median(cpu[name]), 1), passes=len(cpu[name]))  # fmt: skip
        new, old = cpu["python"], cpu[f"python@{rev}"]
        ratio = median(new) / median(old)
        paired = median(a / b for a, b in zip(new, old, strict=True))
        off = median(cpu["python ACCESS_LOG=false"])
        section.target(
            f"API {backend} {size_label} {procedure}: in-process CPU after / before ({rev})",
            f"{ratio:.3f} ({median(new):.1f} vs {median(old):.1f} µs a request; "
            f"{off:.1f} with ACCESS_LOG=false); paired passes {paired:.3f}",
            "≤ 1.05",
            ratio <= 1.05,
        )
