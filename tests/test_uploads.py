"""visionPipeline.uploadImage (issue 16 item 1), the app in this process on both backends: a
form (what ``curl -F file=@x.png`` and httpLink's FormData send) and raw bytes (a Blob) answer
in superjson's shape and land in the user's image store; cross-site uploads, wrong methods and
content types, oversized bodies (refused while they stream), files that are not images and the
limits are refused and store nothing; the housekeeping deletes uploads no job uses."""

from __future__ import annotations

import hashlib
import io
import subprocess
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from PIL import Image

from pipeline.retention import Housekeeping
from pipeline.stored_images import uploaded_image
from rpc.app import App
from rpc.auth.tokens import mint_token
from rpc.config import Settings
from rpc.wire.errors import TRPCError
from rpc.wire.nonjson import form_file
from storage.driver import Work, execute
from storage.engine import open_store
from storage.images import image_path
from storage.records import NewJob
from storage.retention import _prune_image_batch
from storage.store import JobStore
from storage.timeutil import utcnow
from tests.inprocess import running_app
from tests.support import CLIENT_DIR, Server, adhoc, install_client, png_bytes, reset_database, rows

pytestmark = pytest.mark.anyio

UPLOAD = "/api/trpc/visionPipeline.uploadImage"
CREATE = "/api/trpc/visionPipeline.createJob"
OCTET = {"content-type": "application/octet-stream"}
RED = png_bytes((230, 20, 20))
BLUE = png_bytes((20, 20, 230))
SECRET = "test-secret-for-uploads-0123456789abcdef"


@asynccontextmanager
async def app(database_url: str, **settings: Any) -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    """The app on ``database_url`` (local mode unless ``jwt_secret`` is given)."""
    config = Settings(database_url=database_url, _env_file=None, **settings)  # type: ignore[call-arg]
    async with running_app(config) as running:
        yield running


def store(running: App) -> JobStore:
    return running.state.services.store  # type: ignore[no-any-return]


def answer(r: httpx.Response) -> dict[str, Any]:
    """The superjson-shaped result of a successful call."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["result"]["data"]) == {"json"}, body  # superjson, no meta to apply
    return body["result"]["data"]["json"]  # type: ignore[no-any-return]


def refusal(r: httpx.Response, code: str, status: int) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]["json"]  # superjson's shape, as the answers
    assert error["data"]["code"] == code and error["data"]["httpStatus"] == status, error
    return str(error["message"])


async def stored(running: App) -> list[tuple[Any, ...]]:
    return await rows(store(running), 'SELECT "userId", sha256, "byteSize" FROM "visionImages"')


def form(data: bytes, name: str = "file") -> dict[str, Any]:
    return {"files": {name: ("brand.png", data, "image/png")}}


async def test_a_form_and_raw_bytes_are_stored_and_answered_in_superjson(database_url: str) -> None:
    async with app(database_url) as (running, client):
        from_form = answer(await client.post(UPLOAD, **form(RED), data={"note": "hi"}))
        from_bytes = answer(await client.post(UPLOAD, content=BLUE, headers=OCTET))
        again = answer(await client.post(UPLOAD, content=RED, headers=OCTET))
        sha = hashlib.sha256(RED).hexdigest()
        assert from_form == again == {
            "imageUrl": f"/api/images/{sha}", "sha256": sha, "bytes": len(RED),
            "mimeType": "image/png", "width": 64, "height": 48,
        }  # fmt: skip
        assert from_bytes["sha256"] == hashlib.sha256(BLUE).hexdigest()
        assert sorted(r[1] for r in await stored(running)) == sorted([sha, from_bytes["sha256"]])
        served = await client.get(from_form["imageUrl"])
        assert served.status_code == 200 and served.content == RED
        job = await client.post(CREATE, json={"imageUrl": from_form["imageUrl"],
                                              "analysisPurpose": "brand",
                                              "outputFormat": "bullet_points"})  # fmt: skip
        assert job.status_code == 200, job.text


async def test_plain_json_only_when_the_server_says_so(database_url: str) -> None:
    async with app(database_url, trpc_transformer="json") as (_, client):
        r = await client.post(UPLOAD, content=RED, headers=OCTET)
        assert r.status_code == 200 and r.json()["result"]["data"]["mimeType"] == "image/png"
        r = await client.get(UPLOAD)
        assert r.json()["error"]["data"]["code"] == "METHOD_NOT_SUPPORTED"


async def test_cross_site_uploads_are_refused_and_store_nothing(database_url: str) -> None:
    allowed = "https://app.example.com"
    async with app(database_url, cors_allow_origins=allowed) as (running, client):
        for headers in (
            {"origin": "https://evil.example"},
            {"origin": "null"},
            {"origin": "http://127.0.0.1:8080"},  # another port: another origin
            {"origin": "http://127.0.0.1", "sec-fetch-site": "cross-site"},
            {"sec-fetch-site": "cross-site"},
        ):
            message = refusal(await client.post(UPLOAD, **form(RED), headers=headers),
                              "FORBIDDEN", 403)  # fmt: skip
            assert "Cross-site" in message
        assert await stored(running) == []
        for headers in (
            {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"},
            {"origin": "http://127.0.0.1:80"},
            {"origin": allowed, "sec-fetch-site": "cross-site"},  # listed: trusted by name
            {"x-forwarded-proto": "https", "origin": "https://127.0.0.1"},
        ):
            answer(await client.post(UPLOAD, **form(RED), headers=headers))


async def test_refusals_before_the_body(database_url: str) -> None:
    async with app(database_url) as (running, client):
        message = refusal(await client.get(UPLOAD), "METHOD_NOT_SUPPORTED", 405)
        assert message.startswith("Unsupported GET-request to mutation procedure")
        for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
            r = await client.post(UPLOAD, content=RED, headers={"content-type": content_type})
            assert content_type in refusal(r, "UNSUPPORTED_MEDIA_TYPE", 415)
        r = await client.post(UPLOAD, content=RED, headers={"content-type": ""})
        refusal(r, "UNSUPPORTED_MEDIA_TYPE", 415)
        r = await client.post(UPLOAD + "?batch=1", content=RED, headers=OCTET)
        assert "cannot be batched" in refusal(r, "BAD_REQUEST", 400)
        r = await client.post(UPLOAD, content=RED, headers={"content-type": "multipart/form-data"})
        assert "boundary" in refusal(r, "BAD_REQUEST", 400)
        # In a JSON batch the procedure is refused per call, its neighbours still run.
        r = await client.post("/api/trpc/visionPipeline.uploadImage,auth.logout?batch=1",
                              json={"0": {}, "1": {}})  # fmt: skip
        assert r.status_code == 207
        assert r.json()[0]["error"]["data"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert await stored(running) == []


async def test_not_an_image_is_a_bad_request(database_url: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "BMP")
    async with app(database_url, image_max_pixels=5000) as (running, client):
        cases = {
            b"just some text, not an image": "The data is not an image",
            buf.getvalue(): "Unsupported image format BMP",
            RED[:60]: "damaged or incomplete",
            png_bytes((1, 2, 3), (100, 100)): "too many pixels",
            b"": "The upload is empty",
        }
        for data, words in cases.items():
            r = await client.post(UPLOAD, content=data, headers=OCTET)
            assert words in refusal(r, "BAD_REQUEST", 400)
        assert "no \"file\" field" in refusal(await client.post(UPLOAD, **form(RED, "image")),
                                              "BAD_REQUEST", 400)  # fmt: skip
        assert await stored(running) == []


async def test_an_oversized_body_is_refused_while_it_streams(database_url: str) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b"\0" * 16_384

    async with app(database_url, image_max_bytes=64 * 1024) as (running, client):
        r = await client.post(UPLOAD, content=body(), headers=OCTET)  # chunked: no length
        assert refusal(r, "PAYLOAD_TOO_LARGE", 413) == "Image is larger than the 64 KiB limit"
        assert sent < 10  # the rest was never read
        r = await client.post(UPLOAD, content=b"\0" * 70_000, headers=OCTET)  # Content-Length
        refusal(r, "PAYLOAD_TOO_LARGE", 413)
        big = png_bytes((9, 9, 9), (2000, 2000))  # compresses well: make it noisy
        big = big + b"\0" * (64 * 1024 - len(big) + 1)
        refusal(await client.post(UPLOAD, **form(big)), "PAYLOAD_TOO_LARGE", 413)
        assert await stored(running) == []


async def test_the_guard_comes_before_the_body(database_url: str) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        sent += 1
        yield RED

    async with app(database_url, jwt_secret=SECRET) as (running, client):
        r = await client.post(UPLOAD, content=body(), headers=OCTET)
        refusal(r, "UNAUTHORIZED", 401)
        assert sent == 0 and await stored(running) == []
        token = {"authorization": f"Bearer {mint_token(SECRET, 'uploader')}"}
        answer(await client.post(UPLOAD, content=RED, headers=OCTET | token))
        assert len(await stored(running)) == 1


async def test_uploads_per_minute_per_user(database_url: str) -> None:
    async with app(database_url, uploads_per_minute_per_user=2) as (running, client):
        answer(await client.post(UPLOAD, content=RED, headers=OCTET))
        refusal(await client.post(UPLOAD, content=b"nope", headers=OCTET), "BAD_REQUEST", 400)
        r = await client.post(UPLOAD, content=BLUE, headers=OCTET)
        message = refusal(r, "TOO_MANY_REQUESTS", 429)
        assert message.startswith("Too many uploads: at most 2 per minute")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert len(await stored(running)) == 1


async def test_stored_images_per_user(database_url: str) -> None:
    limit_mb = (len(RED) + len(BLUE) // 2) / (1 << 20)  # room for RED, not for BLUE too
    async with app(database_url, max_stored_images_mb_per_user=limit_mb) as (running, client):
        answer(await client.post(UPLOAD, content=RED, headers=OCTET))
        r = await client.post(UPLOAD, content=BLUE, headers=OCTET)
        assert refusal(r, "TOO_MANY_REQUESTS", 429).startswith("Too many stored images")
        answer(await client.post(UPLOAD, content=RED, headers=OCTET))  # already theirs
        assert [r[1] for r in await stored(running)] == [hashlib.sha256(RED).hexdigest()]


async def _age_images(running: App, hours: float) -> None:
    when = utcnow() - timedelta(hours=hours)
    statement = adhoc('UPDATE "visionImages" SET "createdAt" = $1')
    await store(running).driver.write(execute(statement, when))


async def test_unused_uploads_go_after_the_retention_time(database_url: str) -> None:
    async with app(database_url, upload_retention_hours=24) as (running, client):
        used = answer(await client.post(UPLOAD, content=RED, headers=OCTET))
        answer(await client.post(UPLOAD, content=BLUE, headers=OCTET))
        job = await client.post(CREATE, json={"imageUrl": used["imageUrl"],
                                              "analysisPurpose": "brand",
                                              "outputFormat": "bullet_points"})  # fmt: skip
        assert job.status_code == 200
        housekeeping = Housekeeping(store(running), running.state.services.settings)
        pruned = await housekeeping.run_once()
        assert pruned is not None and pruned.uploads == 0  # both are new
        await _age_images(running, 25)
        fresh = png_bytes((1, 200, 1))
        answer(await client.post(UPLOAD, content=fresh, headers=OCTET))  # a new one stays
        pruned = await housekeeping.run_once()
        assert pruned is not None and pruned.uploads == 1
        left = {r[1] for r in await stored(running)}
        assert left == {used["sha256"], hashlib.sha256(fresh).hexdigest()}
        # Uploading an image again starts its time again.
        await _age_images(running, 25)
        answer(await client.post(UPLOAD, content=fresh, headers=OCTET))
        pruned = await housekeeping.run_once()
        assert pruned is not None and pruned.uploads == 0
        assert len(await stored(running)) == 2


def test_form_parsing() -> None:
    def body(*parts: bytes) -> bytes:
        return (
            b"preamble\r\n" + b"".join(b"--XyZ\r\n" + p + b"\r\n" for p in parts) + b"--XyZ--\r\n"
        )

    plain = b'Content-Disposition: form-data; name="note"\r\n\r\nhello'
    file = (b'Content-Disposition: form-data; name="file"; filename="a \\"b\\"; c.png"\r\n'
            b"Content-Type: image/png\r\n\r\n\r\n--Xy data\r\n")  # fmt: skip
    assert form_file(body(plain, file), b"XyZ") == b"\r\n--Xy data\r\n"
    tricky = b'Content-Disposition: form-data; name="x"; filename="name=\\"file\\""\r\n\r\nno'
    with pytest.raises(TRPCError, match='no "file" field'):
        form_file(body(plain, tricky), b"XyZ")
    with pytest.raises(TRPCError):
        form_file(b"--XyZ\r\n" + file[:40], b"XyZ")  # cut short
    unquoted = b"content-disposition: form-data; name=file\r\n\r\n"
    assert form_file(body(unquoted), b"XyZ") == b""


async def create_job(url: str, sha256: str) -> None:
    """A job of user 7 made from their stored image, through a store of its own."""
    other = await open_store(url)
    try:
        await other.create_job(NewJob(user_id=7, image_url=image_path(sha256), image_context=None,
                                      analysis_purpose="brand", output_format="bullet_points",
                                      creativity_level=1.0, additional_instructions=None,
                                      max_retries=3))  # fmt: skip
    finally:
        await other.driver.close()


async def test_a_job_committed_while_the_prune_runs_keeps_its_image(pg_url: str) -> None:
    """PostgreSQL (READ COMMITTED): a job committed after the prune found its image unused
    keeps the image: the delete, a statement of its own, looks at the jobs again."""
    await anyio.to_thread.run_sync(reset_database, pg_url)
    jobs = await open_store(pg_url, create=True)
    image = uploaded_image(RED, max_pixels=1_000_000)

    def work() -> Work[tuple[int, int]]:
        batch = _prune_image_batch(utcnow() - timedelta(hours=24), 10)
        found = yield next(batch)  # unused_images: the image, locked
        assert len(found) == 1
        # A createJob on another connection commits its job meanwhile.
        other = threading.Thread(target=anyio.run, args=(create_job, pg_url, image.sha256))
        other.start()
        other.join()
        deleted = yield batch.send(found)  # delete_unused_images
        try:
            batch.send(deleted)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        raise AssertionError("a batch is two statements")

    try:
        assert (await jobs.keep_upload(7, image)).kept
        await jobs.driver.write(execute(adhoc('UPDATE "visionImages" SET "createdAt" = $1'),
                                        utcnow() - timedelta(days=2)))  # fmt: skip
        assert await jobs.driver.run(work) == (1, 0)
        assert await jobs.get_image(7, image.sha256, with_data=False) is not None
    finally:
        await jobs.driver.close()


@pytest.mark.node
def test_the_genuine_trpc_client_uploads_and_makes_a_job(server: Server, tmp_path: Path) -> None:
    """tests/client/upload.mjs: @trpc/client 11 as tRPC documents it for superjson apps
    sends FormData, Blob and Uint8Array inputs, makes a job from the imageUrl that comes back
    and sees it complete; it reads the errors too. A real server on each backend."""
    install_client()
    png = tmp_path / "red.png"
    png.write_bytes(RED)
    result = subprocess.run(
        ["node", "upload.mjs", server.trpc, server.token("upload-user", "Uploader"), str(png)],
        cwd=CLIENT_DIR, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    failures = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert result.returncode == 0 and not failures, (
        "\n".join(failures) or result.stdout[-3000:] + result.stderr[-3000:]
    )
    assert result.stdout.splitlines()[-1] == "10 passed, 0 failed"


def test_curl_style_form_upload_answers_superjson(server: Server, tmp_path: Path) -> None:
    """``curl -F file=@red.png`` against a real server (httpx's multipart, as curl sends it)."""
    with server.client("curl-user") as client:
        r = client.post("/visionPipeline.uploadImage", files={"file": ("red.png", RED)})
        assert answer(r)["sha256"] == hashlib.sha256(RED).hexdigest()
        r = client.post("/visionPipeline.uploadImage", files={"file": ("red.png", RED)},
                        headers={"origin": "https://evil.example"})  # fmt: skip
        refusal(r, "FORBIDDEN", 403)
