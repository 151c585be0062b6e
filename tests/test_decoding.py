"""pipeline.decoding: the decode budget, the pixel cap from the header, and PNG text chunks."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import zlib
from typing import Any

import anyio
import pytest
from PIL import Image as PILImage
from PIL import PngImagePlugin
from pydantic import ValidationError

from pipeline import decoding
from pipeline.config import PipelineSettings
from pipeline.decoding import DecodeBudget, ImageDecoder, decode_cost, without_png_text
from pipeline.errors import ImageError
from pipeline.images import ALLOWED_FORMATS, load_image
from pipeline.providers.offline import OfflineVision
from pipeline.service import build_providers

pytestmark = pytest.mark.anyio
MiB = 1 << 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def encode(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **kw: Any) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (200, 40, 60)).convert(mode).save(buffer, fmt, **kw)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


class Holder:
    """A task that holds ``size`` bytes of a budget until told to let go."""

    def __init__(self, budget: DecodeBudget, size: int) -> None:
        self.budget, self.size = budget, size
        self.granted = False
        self.done = anyio.Event()

    async def run(self) -> None:
        async with self.budget.reserve(self.size):
            self.granted = True
            await self.done.wait()


# --- the budget ---------------------------------------------------------------------------


async def test_a_reservation_over_what_is_left_waits_for_a_release() -> None:
    budget = DecodeBudget(100)
    first, second = Holder(budget, 60), Holder(budget, 50)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second.run)
        await anyio.wait_all_tasks_blocked()
        assert (first.granted, second.granted, budget.in_use) == (True, False, 60)
        first.done.set()
        await anyio.wait_all_tasks_blocked()
        assert (second.granted, budget.in_use) == (True, 50)
        second.done.set()
    assert budget.in_use == 0


async def test_reservations_are_granted_in_arrival_order() -> None:
    # The small one would fit beside the first, but the large one came before it: a stream
    # of small decodes cannot starve a large one.
    budget = DecodeBudget(100)
    first, large, small = Holder(budget, 60), Holder(budget, 50), Holder(budget, 10)
    async with anyio.create_task_group() as tg:
        for holder in (first, large, small):
            tg.start_soon(holder.run)
            await anyio.wait_all_tasks_blocked()
        assert (first.granted, large.granted, small.granted) == (True, False, False)
        first.done.set()
        await anyio.wait_all_tasks_blocked()
        assert (large.granted, small.granted, budget.in_use) == (True, True, 60)
        large.done.set()
        small.done.set()
    assert budget.in_use == 0


async def test_a_decode_larger_than_the_whole_budget_runs_alone() -> None:
    budget = DecodeBudget(100)
    small, huge, after = Holder(budget, 10), Holder(budget, 500), Holder(budget, 1)
    async with anyio.create_task_group() as tg:
        for holder in (small, huge, after):
            tg.start_soon(holder.run)
            await anyio.wait_all_tasks_blocked()
        assert (small.granted, huge.granted) == (True, False)  # waits for the budget to empty
        small.done.set()
        await anyio.wait_all_tasks_blocked()
        assert (huge.granted, after.granted, budget.in_use) == (True, False, 100)
        huge.done.set()
        await anyio.wait_all_tasks_blocked()
        assert after.granted
        after.done.set()
    assert budget.in_use == 0


async def test_a_reservation_is_released_when_its_body_fails() -> None:
    budget = DecodeBudget(100)
    with pytest.raises(RuntimeError):
        async with budget.reserve(80):
            assert budget.in_use == 80
            raise RuntimeError("the decode failed")
    assert budget.in_use == 0
    async with budget.reserve(100):  # and the whole budget is there again
        assert budget.in_use == 100


async def test_a_reservation_is_released_when_its_holder_is_cancelled() -> None:
    budget = DecodeBudget(100)
    holder = Holder(budget, 70)
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder.run)
        await anyio.wait_all_tasks_blocked()
        assert budget.in_use == 70
        tg.cancel_scope.cancel()
    assert budget.in_use == 0


async def test_a_waiter_cancelled_in_the_queue_leaves_it_and_lets_the_next_one_in() -> None:
    budget = DecodeBudget(100)
    first, blocked, small = Holder(budget, 60), Holder(budget, 50), Holder(budget, 30)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as waiting:
            async with anyio.create_task_group() as inner:
                inner.start_soon(blocked.run)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(small.run)  # queued behind the one about to be cancelled
                await anyio.wait_all_tasks_blocked()
                assert not small.granted
                waiting.cancel()
        await anyio.wait_all_tasks_blocked()
        assert (blocked.granted, small.granted, budget.in_use) == (False, True, 90)
        first.done.set()
        small.done.set()
    assert budget.in_use == 0


async def test_a_grant_that_meets_a_cancellation_is_handed_back() -> None:
    # anyio's cancel scopes wait for such a task's next checkpoint; a plain asyncio
    # cancellation (a timeout in a library) does not, and lands on the granted wait.
    budget = DecodeBudget(100)
    holding = budget.reserve(100)
    await holding.__aenter__()
    waiter = Holder(budget, 40)
    task = asyncio.ensure_future(waiter.run())
    await anyio.wait_all_tasks_blocked()
    await holding.__aexit__(None, None, None)  # grants the waiter's 40 ...
    assert budget.in_use == 40
    task.cancel()  # ... and cancels it before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not waiter.granted and budget.in_use == 0


def test_the_decoder_takes_the_formats_load_image_takes() -> None:
    assert decoding._FORMATS == list(ALLOWED_FORMATS)


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DecodeBudget(0)


# --- the setting --------------------------------------------------------------------------


def test_the_setting_defaults_to_256_mb_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_env_file: dict[str, Any] = {"_env_file": None}
    monkeypatch.delenv("IMAGE_DECODE_MEMORY_MB", raising=False)
    settings = PipelineSettings(**no_env_file, providers="offline")
    assert settings.image_decode_memory_mb == 256
    vision, _ = build_providers(settings)
    assert isinstance(vision, OfflineVision)
    assert vision.decoder.budget.limit == 256 * MiB
    assert vision.decoder.max_pixels == settings.image_max_pixels
    monkeypatch.setenv("IMAGE_DECODE_MEMORY_MB", "64")
    vision, _ = build_providers(PipelineSettings(**no_env_file, providers="offline"))
    assert isinstance(vision, OfflineVision) and vision.decoder.budget.limit == 64 * MiB
    for bad in ("0", "-5"):
        monkeypatch.setenv("IMAGE_DECODE_MEMORY_MB", bad)
        with pytest.raises(ValidationError, match="image_decode_memory_mb"):
            PipelineSettings(**no_env_file)


# --- decoding a sample ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
async def test_the_pixel_cap_is_applied_from_the_header_before_any_decode(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decode(data: bytes, side: int) -> PILImage.Image:
        raise AssertionError("decoded an image over the pixel cap")

    monkeypatch.setattr(decoding, "_shrink", no_decode)
    budget = DecodeBudget(MiB)
    decoder = ImageDecoder(budget, max_pixels=40 * 30 - 1)
    with pytest.raises(ImageError, match=r"^Image has too many pixels \(the limit is 1,199\)$"):
        await decoder.sample(encode(fmt), 128)
    assert budget.in_use == 0


async def test_a_header_declaring_a_bomb_is_refused_without_decoding() -> None:
    # 40 megapixels and one more, declared by a file of 57 bytes with no pixel data at all.
    with pytest.raises(ImageError, match="too many pixels"):
        await ImageDecoder(DecodeBudget(MiB)).sample(png_claiming(8000, 5001), 128)
    # Past Pillow's own bomb limit (Pillow raises on opening): the same message.
    with pytest.raises(ImageError, match="too many pixels"):
        await ImageDecoder(DecodeBudget(MiB)).sample(png_claiming(30_000, 30_000), 128)


async def test_a_sample_waits_for_its_declared_size_in_the_budget() -> None:
    png = encode("PNG", (400, 300))
    with PILImage.open(io.BytesIO(png)) as image:
        cost = decode_cost(image)
    budget = DecodeBudget(cost + 1000)
    decoder = ImageDecoder(budget)
    found: list[tuple[int, int]] = []

    async def sample() -> None:
        result = await decoder.sample(png, 128)
        found.append(result.pixels.size)

    holder = Holder(budget, 1001)  # leaves one byte short of the sample's cost
    async with anyio.create_task_group() as tg:
        tg.start_soon(holder.run)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(sample)
        await anyio.wait_all_tasks_blocked()
        assert found == []
        holder.done.set()
    assert found == [(128, 96)] and budget.in_use == 0


async def test_undecodable_and_truncated_images_release_the_budget() -> None:
    budget = DecodeBudget(64 * MiB)
    decoder = ImageDecoder(budget)
    with pytest.raises(ImageError, match="could not be decoded"):
        await decoder.sample(b"not an image", 128)
    truncated = encode("PNG", (600, 400), mode="RGB", compress_level=0)[:-5000]
    with pytest.raises(ImageError, match="could not be decoded"):
        await decoder.sample(truncated, 128)
    with pytest.raises(ImageError, match="could not be decoded"):  # a format not taken
        await decoder.sample(encode("BMP"), 128)
    assert budget.in_use == 0


@pytest.mark.parametrize(
    ("fmt", "mode", "per_pixel"),
    [
        ("PNG", "RGB", 4),
        ("PNG", "L", 1),
        ("PNG", "P", 1),
        ("PNG", "RGBA", 8),  # resizing premultiplies into a second full-size image
        ("PNG", "LA", 8),
        ("GIF", "P", 1),
        ("JPEG", "RGB", 4 + 2 * 3),  # the pixels and libjpeg's coefficients
        ("JPEG", "L", 1 + 2),
        ("JPEG", "CMYK", 4 + 2 * 4),
        ("WEBP", "RGB", 16),
        ("WEBP", "RGBA", 16),
    ],
)
def test_decode_cost_counts_what_the_decode_holds(fmt: str, mode: str, per_pixel: int) -> None:
    with PILImage.open(io.BytesIO(encode(fmt, (100, 50), mode))) as image:
        assert decode_cost(image) == 100 * 50 * per_pixel + decoding._FIXED_BYTES


# --- PNG text chunks --------------------------------------------------------------------------


def png_with_text(chunks: int, size: int = MiB - 100) -> bytes:
    """A small PNG carrying ``chunks`` compressed text chunks of ``size`` bytes each."""
    info = PngImagePlugin.PngInfo()
    for n in range(chunks):
        info.add_text(f"note{n}", "a" * size, zip=True)
    info.add_itxt("title", "a logo", zip=True)
    info.add_text("plain", "kept out too")
    buffer = io.BytesIO()
    PILImage.new("RGB", (40, 30), (10, 120, 200)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def test_png_text_chunks_are_dropped_and_the_pixels_kept() -> None:
    data = png_with_text(3, 1000)
    stripped = without_png_text(data)
    assert len(stripped) < len(data)
    with PILImage.open(io.BytesIO(stripped)) as image:
        image.verify()
    with PILImage.open(io.BytesIO(stripped)) as image, PILImage.open(io.BytesIO(data)) as original:
        assert "note0" in original.info and "note0" not in image.info
        assert image.tobytes() == original.tobytes()
    plain = encode("PNG")
    assert without_png_text(plain) is plain  # nothing to drop: not copied
    assert without_png_text(b"\x89PNG\r\n\x1a\n\x00\x00") == b"\x89PNG\r\n\x1a\n\x00\x00"
    jpeg = encode("JPEG")
    assert without_png_text(jpeg) is jpeg


async def test_a_png_full_of_text_is_loaded_and_measured() -> None:
    # 60 chunks of 1 MB of text in 60 KB: Pillow would inflate all of it on every open.
    data = png_with_text(60)
    assert len(data) < 100_000
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    image = await load_image(url, max_bytes=MiB, allow_private=False)
    assert (image.width, image.height, image.data) == (40, 30, data)
    sample = await ImageDecoder(DecodeBudget(MiB)).sample(data, 128)
    assert sample.pixels.getpixel((0, 0)) == (10, 120, 200, 255)
