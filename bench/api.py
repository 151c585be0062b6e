"""API: getJobStatus and getJobHistory under ``wrk`` (64 connections), with a large and a small
table, beside the design document's own stack (``bench/node``: @trpc/server 11 standalone,
superjson, better-sqlite3) reading the same SQLite rows. Candidates run in alternating rounds
(the order reversed every other round), each round on freshly started servers (`Server`), each
warmed up first; medians over rounds are reported.

Our server is ``rpc.cli serve --no-worker`` (one process, uvicorn + uvloop); the Node server is
one process too. Each client acts as one of 50 users spread over the table (``bench.dataset``).
With ``--baseline``, ``bench.api_inproc`` then also measures our code's CPU per request and the
baseline's in process, in short passes taking turns: a few percent shows there that wrk's
rounds on this 2-core machine cannot tell from their spread.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench import api_inproc, dataset
from bench.common import (
    ROOT,
    SECRET,
    Proc,
    Section,
    database,
    free_port,
    median,
    spawn,
    start_serve,
    token,
    wait_for_log,
)

NODE_DIR = ROOT / "bench" / "node"
LUA = ROOT / "bench" / "wrk" / "trpc.lua"
PROCS = ("status", "history")
INPROC_PASSES = 6  # in-process passes per round (bench.api_inproc), each tree in turn


@dataclass
class Server:
    """One server of the run, started afresh for each round (`start`): a process's own
    speed, its memory layout, differs from the next one's by a few percent (bench/RESULTS.md
    §30), so a comparison of two trees must not rest on one process of each."""

    start: Callable[[], Awaitable[Proc]]
    proc: Proc | None = None

    async def restart(self) -> None:
        self.stop()
        self.proc = await self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@dataclass
class Candidate:
    server: str  # "python" | "node" | "python@<rev>" (a baseline checkout, --baseline)
    backend: str
    size: int
    procedure: str
    host: Server
    tokens: Path
    runs: list[dict[str, float]]

    @property
    def base(self) -> str:
        assert self.host.proc is not None
        return self.host.proc.base

    @property
    def pid(self) -> int:
        """The server's process: its CPU time per request is read around each run."""
        assert self.host.proc is not None
        return self.host.proc.pid

    @property
    def name(self) -> str:
        return f"{self.server} {self.backend} {label(self.size)} {self.procedure}"


def _stop_all(hosts: list[Server]) -> None:
    for host in hosts:
        host.stop()


def _serve(url: str, log: Path, checkout: Path) -> Server:
    return Server(lambda: start_serve(url, log, "--no-worker", cwd=checkout, LOG_LEVEL="warning"))


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def ensure_node_modules(force: bool = False) -> None:
    """``npm ci`` when node_modules is missing or older than the lockfile (it compiles
    better-sqlite3 from source here: about two minutes)."""
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if force or not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
        )


@contextlib.contextmanager
def baseline_checkout(rev: str, tmp: Path) -> Iterator[tuple[str, Path]]:
    """A detached worktree of ``rev`` (its short name and path), removed afterwards: its
    server runs in the same rounds as ours, so before and after share the machine's state."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = tmp / f"baseline-{short}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), rev],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield short, path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT,
                       capture_output=True)  # fmt: skip


async def start_node(db_path: str, log_path: Path) -> Proc:
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "DATABASE_PATH": db_path,
        "JWT_SECRET": SECRET,
        "PORT": str(port),
        "NODE_ENV": "production",
    }
    proc = spawn(["node", str(NODE_DIR / "server.mjs")], log_path, env)
    proc.base = f"http://127.0.0.1:{port}"
    await wait_for_log(proc, "listening")
    return proc


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    if not rps or not p99 or not p50:
        raise RuntimeError(f"wrk output not understood:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": float(p50.group(1)) * _UNITS[p50.group(2)],
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)],
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
        "requests": float(total.group(1)) if total else 0.0,
    }


async def run_wrk(c: Candidate, seconds: float, connections: int) -> dict[str, float]:
    users = dataset.users_for(c.size)
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(LUA),
        c.base,
        "--",
        str(c.tokens),
        c.procedure,
        str(users),
        str(dataset.PER_USER),
    ]
    cpu_before = cpu_seconds(c.pid)
    done = await anyio.run_process(argv, check=True)
    figures = parse_wrk(done.stdout.decode())
    if c.pid and figures["requests"]:
        spent = cpu_seconds(c.pid) - cpu_before
        figures["cpu_us"] = 1e6 * spent / figures["requests"]
    return figures


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc; 0 where there is none.

    Why: on this 2-core machine wrk, the server and PostgreSQL share the cores, so req/s moves
    by ±10% between rounds with the machine's other load; the server's own CPU per request
    does not, and it is what a change of the server's code changes."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def check(c: Candidate) -> int:
    """One request of the candidate's kind, answered 200 with the caller's data: body size."""
    uid_text, tok = c.tokens.read_text().splitlines()[0].split(" ")
    if c.procedure == "status":
        path, raw = "visionPipeline.getJobStatus", f'{{"json":{{"jobId":{uid_text}}}}}'
    else:
        path, raw = "visionPipeline.getJobHistory", '{"json":{"limit":20,"offset":0}}'
    async with httpx.AsyncClient(base_url=c.base) as client:
        r = await client.get(
            f"/api/trpc/{path}", params={"input": raw}, headers={"authorization": f"Bearer {tok}"}
        )
    if r.status_code != 200:
        raise RuntimeError(f"{c.name}: {r.status_code} {r.text[:300]}")
    return len(r.content)


async def run(
    section: Section,
    tmp: Path,
    sizes: tuple[int, int],
    *,
    rounds: int,
    seconds: float,
    connections: int = 64,
    node: bool = True,
    backends: tuple[str, ...] = ("sqlite", "postgresql"),
    before: tuple[str, Path] | None = None,
) -> None:
    """``before``: a git revision's (short name, checkout) whose server also runs, in the same
    alternating rounds (the before/after comparison of a change on the hot path)."""
    if shutil.which("wrk") is None:
        section.notes.append("wrk is not installed (apt-get install wrk): section skipped")
        return
    if node:
        ensure_node_modules()
    candidates: list[Candidate] = []
    databases: list[tuple[str, str, int]] = []
    hosts: list[Server] = []
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(_stop_all, hosts)
        for backend in backends:
            for size in sizes:
                tag = f"api_{backend}_{label(size)}"
                url = await stack.enter_async_context(database(backend, tmp, tag))
                databases.append((url, backend, size))
                t0 = time.monotonic()
                await dataset.load(url, size)
                section.notes.append(
                    f"{backend}: {size:,} jobs loaded in {time.monotonic() - t0:.1f} s"
                )
                tokens = tmp / f"{tag}.tokens"
                tokens.write_text(
                    "".join(
                        f"{u} {token(dataset.open_id(u))}\n" for u in dataset.client_users(size)
                    )
                )
                servers = [("python", _serve(url, tmp / f"{tag}.log", ROOT))]
                if before is not None:
                    rev, checkout = before
                    old_log = tmp / f"{tag}_{rev}.log"
                    servers.append((f"python@{rev}", _serve(url, old_log, checkout)))
                if node and backend == "sqlite":
                    node_log = tmp / f"{tag}_node.log"
                    db_path = url.split(":///", 1)[1]
                    servers.append(
                        ("node", Server(functools.partial(start_node, db_path, node_log)))
                    )
                for server, host in servers:
                    hosts.append(host)
                    for procedure in PROCS:
                        candidates.append(
                            Candidate(server, backend, size, procedure, host, tokens, [])
                        )
        sizes_seen: dict[str, int] = {}
        for r in range(rounds):
            # Fresh processes for each round (see Server), started in the order the round
            # runs them: a process started first or last differs by a few percent (§31).
            for host in hosts if r % 2 == 0 else list(reversed(hosts)):
                await host.restart()
            order = candidates if r % 2 == 0 else list(reversed(candidates))
            for c in order:
                if c.name not in sizes_seen:
                    sizes_seen[c.name] = await check(c)
                await run_wrk(c, min(2.0, seconds), connections)  # warm-up, not counted
            for c in order:
                c.runs.append(await run_wrk(c, seconds, connections))
        _stop_all(hosts)  # idle servers would share the cores with the in-process drivers
        if before is not None:  # our code's own cost, out of wrk's noise (bench.api_inproc)
            for url, backend, size in databases:
                api_inproc.compare(section, url, backend, label(size), size, before,
                                   rounds, INPROC_PASSES, tmp)  # fmt: skip
    _report(section, candidates, sizes_seen, sizes)
    if before is not None:
        _against_baseline(section, candidates, before[0])


def _report(
    section: Section, candidates: list[Candidate], body: dict[str, int], sizes: tuple[int, int]
) -> None:
    by_name: dict[str, dict[str, Any]] = {}
    for c in candidates:
        figures = {
            "rps": round(median([r["rps"] for r in c.runs])),
            "p50_ms": round(median([r["p50_ms"] for r in c.runs]), 2),
            "p99_ms": round(median([r["p99_ms"] for r in c.runs]), 2),
            "non_2xx": int(sum(r["non_2xx"] for r in c.runs)),
            "rounds_rps": [round(r["rps"]) for r in c.runs],
            "cpu_us": round(median([r.get("cpu_us", 0.0) for r in c.runs]), 1),
            "body_bytes": body[c.name],
        }
        by_name[c.name] = figures
        section.row(c.name, **figures)
    big, small = label(sizes[0]), label(sizes[1])
    for procedure in PROCS:
        for size in (big, small):
            ours, node = (
                by_name.get(f"python sqlite {size} {procedure}"),
                by_name.get(f"node sqlite {size} {procedure}"),
            )
            if ours and node:
                ratio = ours["rps"] / node["rps"]
                section.target(
                    f"API {procedure} {size}: ours (SQLite) vs Node",
                    f"{ratio:.2f}× ({ours['rps']:,} vs {node['rps']:,} req/s)",
                    "≥ 2×",
                    ratio >= 2,
                )
        for backend in ("sqlite", "postgresql"):
            a, b = (
                by_name.get(f"python {backend} {big} {procedure}"),
                by_name.get(f"python {backend} {small} {procedure}"),
            )
            if a and b:
                gap = b["rps"] / a["rps"] - 1
                section.target(
                    f"API {procedure} {backend}: {small} vs {big} rows",
                    f"{small} {100 * gap:+.0f}% ({b['rps']:,} vs {a['rps']:,} req/s)",
                    "≤ +20%",
                    gap <= 0.20,
                )


def _against_baseline(section: Section, candidates: list[Candidate], rev: str) -> None:
    """Ours / the baseline's median req/s, per backend, size and procedure."""
    by_name = {c.name: c for c in candidates}
    for c in candidates:
        before = by_name.get(c.name.replace("python ", f"python@{rev} ", 1))
        if c.server != "python" or before is None:
            continue
        new, old = median([r["rps"] for r in c.runs]), median([r["rps"] for r in before.runs])
        ratio = new / old
        # Each round's pair, measured back to back, cancels the drift between rounds.
        paired = median([a["rps"] / b["rps"] for a, b in zip(c.runs, before.runs, strict=True)])
        section.target(
            f"API {c.backend} {label(c.size)} {c.procedure}: after / before ({rev})",
            f"{ratio:.3f} ({new:,.0f} vs {old:,.0f} req/s); paired rounds {paired:.3f}",
            "≥ 0.95",
            ratio >= 0.95,
        )
        if c.runs[0].get("cpu_us") and before.runs[0].get("cpu_us"):
            cpu_new = median([r["cpu_us"] for r in c.runs])
            cpu_old = median([r["cpu_us"] for r in before.runs])
            section.target(
                f"API {c.backend} {label(c.size)} {c.procedure}: server CPU after / before",
                f"{cpu_new / cpu_old:.3f} ({cpu_new:.0f} vs {cpu_old:.0f} µs a request)",
                "≤ 1.05",
                cpu_new / cpu_old <= 1.05,
            )
