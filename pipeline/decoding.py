"""Decoding images within a memory budget.

Pillow decodes a whole image before it can shrink it (only JPEG can be decoded at 1/2 to 1/8
scale), so a 130 KB PNG that declares 6000x6600 pixels takes 150 MB to measure, and sixteen
at once took the server past 2.5 GB. ``DecodeBudget`` bounds the bytes the decodes in flight
may hold, counted from what each image declares in its header before any pixel is decoded;
``ImageDecoder.sample`` is the one way the process decodes pixels (the offline vision
provider's small copy for measuring).

The budget is made where the pipeline is assembled (``pipeline.service``) from
IMAGE_DECODE_MEMORY_MB and handed to what decodes; there is no process-wide instance.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from io import BytesIO

import anyio
import anyio.to_thread
from PIL import Image as PILImage

from pipeline.errors import ImageError

__all__ = [
    "DEFAULT_MEMORY",
    "DecodeBudget",
    "ImageDecoder",
    "Sample",
    "decode_cost",
    "without_png_text",
]

DEFAULT_MEMORY = 256 << 20
"""IMAGE_DECODE_MEMORY_MB's default, in bytes."""

# pipeline.images.ALLOWED_FORMATS; named here as well because the costs below know only these
# (and pipeline.images imports this module).
_FORMATS = ["JPEG", "PNG", "WEBP", "GIF"]
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
# Bytes a pixel takes in Pillow's memory, by mode: 8-bit single-band modes 1, 16-bit 2,
# everything else (RGB included, padded to 4) 4.
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Resampling these premultiplies into a second full-size image ("RGBa", "La") first.
_PREMULTIPLIED = frozenset({"LA", "RGBA"})
# libwebp's canvas and its copy of the previous frame, the frame's bytes handed to Pillow
# and Pillow's image: four full-size 4-byte buffers (measured: 16.0 bytes a pixel).
_WEBP_BYTES = 16
# libjpeg keeps every DCT coefficient (2 bytes a sample) of a progressive or multi-scan
# file; counted for every JPEG, as what Pillow reads of the header does not tell them apart.
_JPEG_COEFFICIENT_BYTES = 2
# Whatever the size: decoder buffers, the reduced intermediate copy, the thread's arena.
_FIXED_BYTES = 4 << 20


def decode_cost(image: PILImage.Image) -> int:
    """Bytes that decoding ``image`` (opened, not loaded) and shrinking it may hold at its peak,
    from its header only; conservative (measured peaks are at most this)."""
    width, height = image.size
    pixels = width * height
    if image.format == "WEBP":
        return pixels * _WEBP_BYTES + _FIXED_BYTES
    per_pixel = _PIXEL_BYTES.get(image.mode, 4)
    if image.mode in _PREMULTIPLIED:
        per_pixel *= 2
    if image.format == "JPEG":
        per_pixel += _JPEG_COEFFICIENT_BYTES * len(image.getbands())
    return pixels * per_pixel + _FIXED_BYTES


class DecodeBudget:
    """At most ``limit`` bytes of decodes in flight; used from one event loop.

    Reservations are granted in arrival order (a large one waiting is not overtaken by small
    ones that would fit, so it is never starved), and one larger than the whole budget runs
    alone once everything before it has finished."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("a decode budget must be positive")
        self.limit = limit
        self.in_use = 0
        self._waiting: deque[_Waiter] = deque()

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes of the budget for the body of the ``async with``, waiting (in
        arrival order) until they are free; released on exit, error or cancellation."""
        take = min(max(size, 1), self.limit)
        await self._acquire(take)
        try:
            yield
        finally:
            self._release(take)

    async def _acquire(self, take: int) -> None:
        if not self._waiting and self.in_use + take <= self.limit:
            self.in_use += take
            return
        waiter = _Waiter(take, anyio.Event())
        self._waiting.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():  # granted while the cancellation was on its way
                self._release(take)
            else:
                self._waiting.remove(waiter)
                self._admit()  # the waiter it held up may fit now
            raise

    def _release(self, take: int) -> None:
        self.in_use -= take
        self._admit()

    def _admit(self) -> None:
        while self._waiting and self.in_use + self._waiting[0].take <= self.limit:
            waiter = self._waiting.popleft()
            self.in_use += waiter.take
            waiter.granted.set()


@dataclass(frozen=True, slots=True)
class _Waiter:
    take: int
    granted: anyio.Event


@dataclass(frozen=True, slots=True)
class Sample:
    """A small RGBA copy of an image, and the size of the original."""

    pixels: PILImage.Image
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class ImageDecoder:
    """Decodes images for measuring, within ``budget`` and the ``max_pixels`` cap."""

    budget: DecodeBudget
    max_pixels: int = 40_000_000

    async def sample(self, data: bytes, side: int) -> Sample:
        """Decode ``data`` (JPEG, PNG, WEBP or GIF) to an RGBA copy at most ``side`` pixels a
        side, as ``Image.thumbnail`` makes it (JPEG decoded at a reduced scale).

        The pixel cap is applied from the header before any decode, the header's
        ``decode_cost`` is reserved from the budget for the decode, and the work runs in a
        worker thread. Raises ``ImageError`` when the image has too many pixels or cannot be
        decoded."""
        width, height, cost = await anyio.to_thread.run_sync(self._inspect, data)
        async with self.budget.reserve(cost):
            pixels = await anyio.to_thread.run_sync(_shrink, data, side)
        return Sample(pixels, width, height)

    def _inspect(self, data: bytes) -> tuple[int, int, int]:
        # The wording load_image uses for the same cap.
        too_many = f"Image has too many pixels (the limit is {self.max_pixels:,})"
        try:
            with _open(data) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    raise ImageError(too_many)
                cost = decode_cost(image)
        except ImageError:
            raise
        except PILImage.DecompressionBombError:
            raise ImageError(too_many) from None
        except Exception:
            raise ImageError("The image could not be decoded") from None
        if width <= 0 or height <= 0:
            raise ImageError("The image has no pixels")
        return width, height, cost


def without_png_text(data: bytes) -> bytes:
    """``data`` without its PNG text chunks (anything else as is).

    Pillow inflates every text chunk before the pixels when it opens a PNG, up to 64 MB of
    text for one file of 60 KB; nothing here reads them. A truncated or damaged chunk list is
    left for Pillow to judge: what follows it is kept unparsed."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    view = memoryview(data)
    kept: list[memoryview] = []
    start = pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if kind in _PNG_TEXT_CHUNKS:
            kept.append(view[start:pos])
            start = end
        pos = end
        if kind == b"IEND":
            break
    if not kept:
        return data
    kept.append(view[start:])
    return data[: len(_PNG_SIGNATURE)] + b"".join(kept)


def _open(data: bytes) -> PILImage.Image:
    return PILImage.open(BytesIO(without_png_text(data)), formats=_FORMATS)


def _shrink(data: bytes, side: int) -> PILImage.Image:
    try:
        with _open(data) as image:
            image.thumbnail((side, side))  # JPEG: draft mode, decoded at 1/2 to 1/8 scale
            return image.convert("RGBA")
    except Exception:
        raise ImageError("The image could not be decoded") from None
