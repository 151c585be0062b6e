"""The image store in the database (issue 13 item 3): one row per (user, SHA-256), reused by its
user and never shared; deleted by the trigger with the last job of its user that refers to it,
whoever deletes the job; never deleted under a job being created with it (PostgreSQL's
concurrent transactions); and the worker reading a job's image from it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from pipeline.config import PipelineSettings
from pipeline.images import load_image
from pipeline.service import build_stages
from pipeline.stored_images import inline_image
from pipeline.worker import Worker
from storage.driver import execute
from storage.engine import open_store
from storage.images import INVALID_IMAGE_URL, image_path
from storage.records import NewImage, NewJob
from storage.store import JobStore
from tests.support import adhoc, png_bytes, reset_database, rows, scalar

pytestmark = pytest.mark.anyio
RED = png_bytes((230, 20, 20))
BLUE = png_bytes((20, 40, 220))


def image_of(data: bytes) -> NewImage:
    return NewImage(hashlib.sha256(data).hexdigest(), "image/png", 64, 48, data)


def job_of(user_id: int, url: str = "data:image/png;base64,AAAA") -> NewJob:
    return NewJob(user_id, url, None, "p", "bullet_points", 1.0, None, 3)


async def delete_jobs(store: JobStore, *job_ids: int) -> None:
    """One DELETE statement, as an operator (or a retention command) would run it."""
    marks = ", ".join(f"${i}" for i in range(1, len(job_ids) + 1))
    delete = adhoc(f'DELETE FROM "visionJobs" WHERE id IN ({marks})')
    await store.driver.write(execute(delete, *job_ids))


async def images(store: JobStore) -> list[tuple[Any, ...]]:
    return await rows(store, 'SELECT "userId", sha256, "byteSize" FROM "visionImages" ORDER BY id')


async def test_a_user_s_image_is_stored_once_and_another_user_s_copy_is_their_own(
    store: JobStore,
) -> None:
    alice, _ = await store.user_seen("alice", None)
    bob, _ = await store.user_seen("bob", None)
    red = image_of(RED)
    first = await store.create_job_with_image(job_of(alice), red)
    again = await store.create_job_with_image(job_of(alice), red)
    bobs = await store.create_job_with_image(job_of(bob), red)
    assert await images(store) == [(alice, red.sha256, len(RED)), (bob, red.sha256, len(RED))]
    for job_id in (first, again, bobs):
        url = await scalar(store, 'SELECT "imageUrl" FROM "visionJobs" WHERE id = $1', job_id)
        assert url == image_path(red.sha256)
    # Naming a stored image: the caller's own only.
    assert await store.create_job_with_stored_image(job_of(alice), red.sha256) is not None
    blue = image_of(BLUE)
    await store.create_job_with_image(job_of(bob), blue)
    assert await store.create_job_with_stored_image(job_of(alice), blue.sha256) is None
    assert await store.create_job_with_stored_image(job_of(alice), "0" * 64) is None
    assert await store.get_image(alice, blue.sha256) is None
    got = await store.get_image(None, blue.sha256)  # an admin's read
    assert got is not None and (got.user_id, got.data) == (bob, BLUE)
    info = await store.get_image(bob, blue.sha256, with_data=False)
    assert info is not None and (info.data, info.byte_size, info.mime_type) == (
        None, len(BLUE), "image/png",
    )  # fmt: skip


async def test_an_image_is_deleted_with_the_last_job_of_its_user_that_uses_it(
    store: JobStore,
) -> None:
    alice, _ = await store.user_seen("alice", None)
    bob, _ = await store.user_seen("bob", None)
    red, blue = image_of(RED), image_of(BLUE)
    a1 = await store.create_job_with_image(job_of(alice), red)
    a2 = await store.create_job_with_image(job_of(alice), red)
    a3 = await store.create_job_with_stored_image(job_of(alice), red.sha256)
    assert a3 is not None
    a_blue = await store.create_job_with_image(job_of(alice), blue)
    b1 = await store.create_job_with_image(job_of(bob), red)
    plain = await store.create_job(job_of(alice, "http://img/x.png"))
    await delete_jobs(store, a1)
    await delete_jobs(store, a2, plain)  # still used by a3
    assert {(u, s) for u, s, _ in await images(store)} == {
        (alice, red.sha256), (alice, blue.sha256), (bob, red.sha256),
    }  # fmt: skip
    await delete_jobs(store, a3, a_blue)  # the last ones, in one statement
    assert await images(store) == [(bob, red.sha256, len(RED))]  # bob's copy stays
    await delete_jobs(store, b1)
    assert await images(store) == []


async def _waiting(url: str, query_start: str, done: anyio.Event | None = None) -> None:
    """Until a session of this database waits for a lock in a statement starting so (or
    ``done`` is set: the statement did not have to wait)."""
    import asyncpg

    monitor = await asyncpg.connect(url)
    try:
        with anyio.fail_after(20):
            while not await monitor.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND query LIKE $1", query_start + "%"
            ):  # fmt: skip
                if done is not None and done.is_set():
                    return
                await anyio.sleep(0.02)
    finally:
        await monitor.close()


@pytest.fixture
def pg_fresh(pg_url: str) -> str:
    reset_database(pg_url)
    return pg_url


@pytest.fixture
async def pg_store(pg_fresh: str) -> AsyncIterator[JobStore]:
    s = await open_store(pg_fresh, create=True)
    try:
        yield s
    finally:
        await s.driver.close()


async def test_postgresql_an_image_is_not_deleted_under_a_job_being_created_with_it(
    pg_fresh: str, pg_store: JobStore
) -> None:
    """A createJob reusing alice's image is in its transaction (held up here by a lock on the
    events table its job's trigger writes) when another request deletes her last job using
    the image: the deletion waits for it, then sees the new job and keeps the image."""
    import asyncpg

    store = pg_store
    alice, _ = await store.user_seen("alice", None)
    red = image_of(RED)
    last = await store.create_job_with_image(job_of(alice), red)
    blocker = await asyncpg.connect(pg_fresh)
    deleter = await asyncpg.connect(pg_fresh)
    try:
        hold_up = blocker.transaction()
        await hold_up.start()
        await blocker.execute('LOCK TABLE "visionJobEvents" IN EXCLUSIVE MODE')
        created: list[int] = []
        async with anyio.create_task_group() as tg:

            async def create() -> None:
                created.append(await store.create_job_with_image(job_of(alice), red))

            tg.start_soon(create)
            await _waiting(pg_fresh, 'INSERT INTO "visionJobs"')  # image held, job unwritten
            deleted = anyio.Event()

            async def delete() -> None:
                await deleter.execute('DELETE FROM "visionJobs" WHERE id = $1', last)
                deleted.set()

            tg.start_soon(delete)
            await _waiting(pg_fresh, 'DELETE FROM "visionJobs"', deleted)  # its trigger waits
            await hold_up.commit()
    finally:
        await blocker.close()
        await deleter.close()
    url = await scalar(store, 'SELECT "imageUrl" FROM "visionJobs" WHERE id = $1', created[0])
    assert url == image_path(red.sha256)
    assert await images(store) == [(alice, red.sha256, len(RED))]


async def test_postgresql_a_job_created_while_its_image_is_being_deleted_stores_it_again(
    pg_fresh: str, pg_store: JobStore
) -> None:
    import asyncpg

    store = pg_store
    alice, _ = await store.user_seen("alice", None)
    red = image_of(RED)
    last = await store.create_job_with_image(job_of(alice), red)
    deleter = await asyncpg.connect(pg_fresh)
    try:
        deleting = deleter.transaction()
        await deleting.start()
        await deleter.execute('DELETE FROM "visionJobs" WHERE id = $1', last)  # image gone too
        created: list[int] = []
        async with anyio.create_task_group() as tg:

            async def create() -> None:
                created.append(await store.create_job_with_image(job_of(alice), red))

            tg.start_soon(create)
            await _waiting(pg_fresh, 'SELECT id FROM "visionImages"')
            await deleting.commit()
    finally:
        await deleter.close()
    assert await images(store) == [(alice, red.sha256, len(RED))]
    assert await scalar(store, 'SELECT COUNT(*) FROM "visionJobs"') == 1


# --- the worker -----------------------------------------------------------------------------


@asynccontextmanager
async def worker_on(store: JobStore, database_url: str) -> AsyncIterator[None]:
    settings = PipelineSettings(database_url=database_url, providers="offline",
                                retry_delay_ms=1, poll_interval_ms=50)  # fmt: skip
    worker = Worker(store, build_stages(settings, store), settings)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        yield
        worker.stop()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(30):
        while not await check():
            await anyio.sleep(0.02)


async def _final(store: JobStore, job_id: int) -> tuple[str, str | None, int]:
    async def done() -> bool:
        status = await store.get_job_status(job_id)
        return status is not None and status.status in ("complete", "error")

    await until(done)
    status = await store.get_job_status(job_id)
    assert status is not None
    return status.status, status.error_message, status.retry_count


async def test_the_worker_reads_a_job_s_image_from_the_store_by_its_user(
    store: JobStore, database_url: str
) -> None:
    alice, _ = await store.user_seen("alice", None)
    bob, _ = await store.user_seen("bob", None)
    red, blue = image_of(RED), image_of(BLUE)
    await store.create_job_with_image(job_of(bob), blue)
    ok = await store.create_job_with_image(job_of(alice), red)
    gone = await store.create_job(job_of(alice, image_path(hashlib.sha256(b"x").hexdigest())))
    bobs_for_alice = await store.create_job(job_of(alice, image_path(blue.sha256)))
    invalid = await store.create_job(job_of(alice, INVALID_IMAGE_URL))
    async with worker_on(store, database_url):
        status, _, _ = await _final(store, ok)
        assert status == "complete"
        output = await scalar(store, 'SELECT "geminOutput" FROM "visionJobs" WHERE id = $1', ok)
        assert "red" in output.lower()
        for job_id in (gone, bobs_for_alice):
            assert await _final(store, job_id) == (
                "error", "gemini: The stored image no longer exists", 1,
            )  # fmt: skip
        assert await _final(store, invalid) == (
            "error", "gemini: The data URL's base64 data is malformed", 1,
        )  # fmt: skip


async def test_create_job_refuses_what_the_worker_would_with_the_worker_s_message() -> None:
    """pipeline.stored_images.inline_image reads only the header; its refusals are load_image's."""
    import base64
    import io
    import struct
    import zlib

    from PIL import Image

    from pipeline.errors import ImageError

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    # A PNG declaring 10000 x 10000 pixels: its header is all there is.
    header = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    bmp = io.BytesIO()
    Image.new("RGB", (4, 4)).save(bmp, "BMP")
    # (Pillow warns of a bomb when it opens a header this big; the cap refuses it either way.)
    for data in (b"just some text", bmp.getvalue(), bomb, b"\x89PNG\r\n\x1a\n"):
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        with pytest.raises(ImageError) as at_create:
            inline_image(url, max_bytes=1 << 20, max_pixels=40_000_000)
        with pytest.raises(ImageError) as at_worker:
            await load_image(url, max_bytes=1 << 20, allow_private=False)
        assert at_create.value.message == at_worker.value.message, data[:20]
    good = inline_image("data:image/png;base64," + base64.b64encode(RED).decode(),
                        max_bytes=1 << 20, max_pixels=40_000_000)  # fmt: skip
    assert (good.mime_type, good.width, good.height, good.data) == ("image/png", 64, 48, RED)
    assert good.sha256 == hashlib.sha256(RED).hexdigest()


async def test_image_creates_of_the_same_moment_share_a_transaction_and_fail_alone(
    store: JobStore,
) -> None:
    """createJob calls with inline images (and with stored-image paths) arriving together are
    one transaction: each distinct image kept once, the jobs in one INSERT; a path naming an
    image its caller does not have gets None and writes nothing, the others are unaffected."""
    alice, _ = await store.user_seen("batch-alice", None)
    bob, _ = await store.user_seen("batch-bob", None)
    red, blue = image_of(RED), image_of(BLUE)
    await store.create_job_with_image(job_of(bob), blue)  # bob's blue: not alice's
    results: dict[int, int | None] = {}

    async def create(n: int) -> None:
        if n % 5 == 4:
            results[n] = await store.create_job_with_stored_image(job_of(alice), blue.sha256)
        elif n % 5 == 3:
            results[n] = await store.create_job_with_stored_image(job_of(alice), red.sha256)
        else:
            results[n] = await store.create_job_with_image(job_of(bob if n % 2 else alice), red)

    before = store._image_creates.batches
    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(create, n)
    assert store._image_creates.batches - before < 20  # shared, not one transaction each
    assert all(results[n] is None for n in range(4, 20, 5))  # blue is bob's, not alice's
    made = {n: job_id for n, job_id in results.items() if job_id is not None}
    assert len(made) == 16 and len(set(made.values())) == 16
    for n, job_id in made.items():
        url = await scalar(store, f'SELECT "imageUrl" FROM "visionJobs" WHERE id = {job_id}')
        owner = await scalar(store, f'SELECT "userId" FROM "visionJobs" WHERE id = {job_id}')
        assert url == image_path(red.sha256)
        assert owner == (bob if n % 5 != 3 and n % 2 else alice)
    assert await images(store) == [(bob, blue.sha256, len(BLUE)), (alice, red.sha256, len(RED)),
                                   (bob, red.sha256, len(RED))]  # fmt: skip
    jobs = await scalar(store, 'SELECT COUNT(*) FROM "visionJobs"')
    assert jobs == 17  # bob's first job, and the 16 made here


def test_an_image_sent_again_skips_pillow_and_a_refused_one_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """createJob's header cache (pipeline.stored_images.HeaderCache): Pillow reads a given
    image once per pixel cap; what it refuses is read (and refused) every time; bounded."""
    import pipeline.stored_images as stored_images
    from pipeline.errors import ImageError

    def data_url(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode()

    reads: list[int] = []
    real = stored_images.read_header

    def counting(data: bytes, max_pixels: int) -> tuple[str, int, int]:
        reads.append(max_pixels)
        return real(data, max_pixels)

    monkeypatch.setattr(stored_images, "read_header", counting)
    cache = stored_images.HeaderCache(size=2)

    def check(url: str, max_pixels: int = 10_000) -> NewImage:
        return inline_image(url, max_bytes=1 << 20, max_pixels=max_pixels, headers=cache)

    red = check(data_url(RED))
    assert check(data_url(RED)) == red and len(reads) == 1
    assert (red.mime_type, red.width, red.height) == ("image/png", 64, 48)
    with pytest.raises(ImageError, match="too many pixels"):
        check(data_url(RED), max_pixels=100)  # another cap: read again, and refused
    with pytest.raises(ImageError, match="too many pixels"):
        check(data_url(RED), max_pixels=100)
    assert reads == [10_000, 100, 100]
    check(data_url(BLUE))
    check(data_url(png_bytes((1, 2, 3))))  # a third image: the oldest (red) goes
    check(data_url(RED))
    assert reads == [10_000, 100, 100, 10_000, 10_000, 10_000]
