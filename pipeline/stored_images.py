"""The pipeline's side of the image store (``storage.images``): an inline image checked and
hashed for createJob, and the worker's reading of a job's stored image.

createJob refuses at once what the worker would refuse (not an image, a format we do not
take, too many pixels) with the worker's own message, from the image's header: no pixel is
decoded on the API's side. The worker then runs the same checks on the stored bytes as on any
image (``pipeline.images.check_image``), and never fetches ``/api/images/…`` over the network.
"""

from __future__ import annotations

import hashlib
from io import BytesIO

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from pipeline.decoding import without_png_text
from pipeline.errors import ImageError
from pipeline.images import (
    _SUPPORTED,
    ALLOWED_FORMATS,
    MALFORMED_BASE64,
    _not_an_image,
    check_image,
    decode_data_url,
)
from pipeline.providers.base import Image
from storage.images import INVALID_IMAGE_URL, image_sha
from storage.records import NewImage
from storage.store import JobStore

GONE = "The stored image no longer exists"


def too_many_pixels(max_pixels: int) -> str:
    return f"Image has too many pixels (the limit is {max_pixels:,})"


def read_header(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """(MIME type, width, height) from the image's header alone, or the ImageError the
    worker's checks (``pipeline.images._sniff``) would raise for the same bytes."""
    if not data:
        raise ImageError("The image is empty")
    try:
        # Text chunks dropped first: Pillow inflates them all on open (pipeline.decoding).
        probe_data = without_png_text(data)
        with PILImage.open(BytesIO(probe_data), formats=list(ALLOWED_FORMATS)) as probe:
            fmt = probe.format or ""
            width, height = probe.size
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ImageError(too_many_pixels(max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageError(_not_an_image(data)) from None
    except Exception:  # a header the plugin cannot parse (SyntaxError, OSError, struct.error…)
        raise ImageError("The image file is damaged or incomplete") from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageError(f"Unsupported image format {fmt or 'unknown'}; use {_SUPPORTED}")
    if width <= 0 or height <= 0:
        raise ImageError("The image has no pixels")
    if width * height > max_pixels:
        raise ImageError(too_many_pixels(max_pixels))
    return ALLOWED_FORMATS[fmt], width, height


def inline_image(url: str, *, max_bytes: int, max_pixels: int) -> NewImage:
    """A createJob's ``data:`` URL as an image for the store: decoded once (the size cap and
    base64 rules of ``decode_data_url``), its header read, its bytes hashed. CPU-bound (a
    10 MiB image is some milliseconds): callers run it in a thread."""
    data = decode_data_url(url.strip(), max_bytes)
    mime_type, width, height = read_header(data, max_pixels)
    return NewImage(hashlib.sha256(data).hexdigest(), mime_type, width, height, data)


class StoredImageLoader:
    """The worker's loader of a job whose imageUrl is ``/api/images/<sha256>``: the bytes of
    the job's user's image, from the database, checked as any image is."""

    def __init__(self, store: JobStore, *, max_pixels: int) -> None:
        self.store = store
        self.max_pixels = max_pixels

    async def __call__(self, user_id: int, url: str) -> Image:
        sha = image_sha(url)
        if sha is None:
            # The conversion's marker of a data: URL that did not decode: what the worker
            # said of such a URL before.
            raise ImageError(MALFORMED_BASE64 if url == INVALID_IMAGE_URL else GONE)
        image = await self.store.get_image(user_id, sha)
        if image is None or image.data is None:
            raise ImageError(GONE)
        return await check_image(image.data, max_pixels=self.max_pixels)
