"""Rows older versions wrote, whole data: URLs in visionJobs.imageUrl, are moved into the image
store when the new version first starts, or by `vision-pipeline db convert-images` (issue 13
item 3), on a copy of a database made as those versions made it, on both backends."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from storage.engine import open_driver
from storage.records import NewJob
from storage.schema import push
from storage.store import JobStore
from storage.urls import parse_database_url
from tests.support import (
    PG_ADMIN_DSN,
    ROOT,
    create_pg_database,
    drop_pg_database,
    png_bytes,
    server_env,
    sql,
    start_server,
    wait_for_status,
)

RED = png_bytes((230, 20, 20))
BLUE = png_bytes((20, 40, 220))
TEXT = b"hello, not an image"
CUSTOM = b"bytes Pillow does not know"
INVALID = "/api/images/invalid"

# What the versions before the image store lacked (their tables were otherwise the same).
_OLD_SHAPE = {
    "sqlite": [
        "DROP TRIGGER trg_job_deleted",
        "DROP INDEX idx_inline_image_jobs",
        "DROP INDEX idx_stored_image_jobs",
        'DROP TABLE "visionImages"',
        "DROP TABLE alembic_version",  # older versions had no versioned migrations
    ],
    "postgresql": [
        'DROP TRIGGER trg_job_deleted ON "visionJobs"',
        "DROP FUNCTION vision_jobs_deleted()",
        "DROP INDEX idx_inline_image_jobs",
        "DROP INDEX idx_stored_image_jobs",
        'DROP TABLE "visionImages"',
        "DROP TABLE alembic_version",  # older versions had no versioned migrations
    ],
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path(data: bytes) -> str:
    return "/api/images/" + sha(data)


# (user, imageUrl as an older version stored it, the imageUrl it must become)
ROWS: list[tuple[str, str, str]] = [
    ("alice", "data:image/png;base64," + b64(RED), path(RED)),
    ("alice", "data:image/png;base64," + b64(RED), path(RED)),  # the same image again
    ("alice", "DATA:image/png;base64," + b64(RED), path(RED)),
    (
        "alice",
        "data:image/png;base64,\n" + "\n".join(re.findall(".{1,76}", b64(BLUE))),
        path(BLUE),
    ),
    ("alice", "http://img.example/x.png", "http://img.example/x.png"),
    ("bob", "data:image/png;base64," + b64(RED), path(RED)),  # bob's own copy
    ("bob", "data:text/plain;base64," + b64(TEXT), path(TEXT)),
    ("bob", "data:image/x-custom;base64," + b64(CUSTOM), path(CUSTOM)),
    ("bob", "data:image/png;base64,!!!not*base64", INVALID),
]
# (user, sha256, mimeType, byteSize, width, height)
IMAGES = {
    ("alice", sha(RED), "image/png", len(RED), 64, 48),
    ("alice", sha(BLUE), "image/png", len(BLUE), 64, 48),
    ("bob", sha(RED), "image/png", len(RED), 64, 48),
    ("bob", sha(TEXT), "application/octet-stream", len(TEXT), None, None),
    ("bob", sha(CUSTOM), "image/x-custom", len(CUSTOM), None, None),
}
DATA_JOBS = sum(url.lower().startswith("data:") for _, url, _ in ROWS)


@dataclass
class OldDatabase:
    url: str
    path: Path  # the SQLite file (unused on PostgreSQL)
    job_ids: list[int]


async def _old_rows(url: str) -> list[int]:
    """The rows, written as the older versions' createJob wrote them (the same INSERT)."""
    store = JobStore(await open_driver(parse_database_url(url)))  # no schema check: old
    try:
        ids = []
        for user, image_url, _ in ROWS:
            user_id, _ = await store.user_seen(user, None)
            new = NewJob(user_id, image_url, None, "legacy", "bullet_points", 1.0, None, 3)
            ids.append(await store.create_job(new))
        return ids
    finally:
        await store.driver.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OldDatabase]:
    db_path = tmp_path / "old.db"
    if request.param == "sqlite":
        url = f"sqlite:///{db_path}"
    else:
        try:
            url = create_pg_database("vp_old")
        except Exception as exc:
            pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    try:
        anyio.run(push, parse_database_url(url))
        for statement in _OLD_SHAPE[request.param]:
            sql(url, statement)
        ids = anyio.run(_old_rows, url)
        # A finished job too: history shows every job, whatever its status.
        sql(url, """UPDATE "visionJobs" SET status = 'complete', progress = 100 WHERE id = ?""",
            ids[1])  # fmt: skip
        assert sql(url, 'SELECT COUNT(*) FROM "visionJobs" WHERE "imageUrl" LIKE ?', "data:%")
        yield OldDatabase(url, db_path, ids)
    finally:
        if request.param == "postgresql":
            drop_pg_database(url)


def _stored_images(url: str) -> set[tuple[Any, ...]]:
    found = sql(url, """SELECT u."openId", i.sha256, i."mimeType", i."byteSize", i.width, i.height
        FROM "visionImages" AS i JOIN users AS u ON u.id = i."userId" """)  # fmt: skip
    return set(found)


def check_converted(db: OldDatabase) -> None:
    urls = dict(sql(db.url, 'SELECT id, "imageUrl" FROM "visionJobs"'))
    assert [urls[i] for i in db.job_ids] == [expected for _, _, expected in ROWS]
    assert _stored_images(db.url) == IMAGES
    [(red,)] = sql(db.url, """SELECT i.data FROM "visionImages" AS i JOIN users AS u
        ON u.id = i."userId" WHERE u."openId" = 'alice' AND i.sha256 = ?""", sha(RED))  # fmt: skip
    assert bytes(red) == RED


def test_the_new_version_converts_stored_data_urls_when_it_first_starts(
    old_database: OldDatabase, tmp_path: Path
) -> None:
    db = old_database
    server = start_server(db.path, tmp_path / "server.log", DATABASE_URL=db.url)
    try:
        check_converted(db)
        for user in ("alice", "bob"):
            with server.client(user) as client:
                r = client.get("/visionPipeline.getJobHistory", params={"input": '{"limit":100}'})
                assert r.status_code == 200 and "data:" not in r.text
                history = r.json()["result"]["data"]
                mine = [(u, expected) for u, _, expected in ROWS if u == user]
                assert [j["imageUrl"] for j in history] == [e for _, e in mine]
        alice = server.client("alice")
        with alice:
            # The converted jobs run from the store: alice's red image is red.
            status = wait_for_status(alice, db.job_ids[0])
            assert status["status"] == "complete"
            assert "red" in status["geminOutput"]["colors"]["description"].lower()
            r = httpx.get(server.base + path(RED), headers=alice.headers)
            assert r.status_code == 200 and r.content == RED
        with server.client("bob") as bob:
            status = wait_for_status(bob, db.job_ids[-1])
            assert status["errorMessage"] == "gemini: The data URL's base64 data is malformed"
    finally:
        server.stop()
    # A second start has nothing left to convert.
    server = start_server(db.path, tmp_path / "again.log", DATABASE_URL=db.url)
    server.stop()
    assert _stored_images(db.url) == IMAGES


def _convert_command(db: OldDatabase) -> subprocess.Popen[str]:
    env = server_env(db.path, DATABASE_URL=db.url)
    return subprocess.Popen(
        [sys.executable, "-m", "rpc.cli", "db", "convert-images"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


_SAID = re.compile(r"converted (\d+) jobs with a data: URL into (\d+) stored images")


def test_db_convert_images_in_several_processes_at_once_converts_each_job_once(
    old_database: OldDatabase,
) -> None:
    db = old_database
    processes = [_convert_command(db) for _ in range(3)]
    said = []
    for process in processes:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out
        match = _SAID.search(out)
        assert match, out
        invalid = re.search(r"\((\d+) not valid base64: now /api/images/invalid\)", out)
        said.append((int(match[1]), int(match[2]), int(invalid[1]) if invalid else 0))
    assert [sum(column) for column in zip(*said, strict=True)] == [DATA_JOBS, len(IMAGES), 1]
    check_converted(db)
    out = _convert_command(db).communicate(timeout=120)[0]
    assert "converted 0 jobs with a data: URL into 0 stored images" in out
