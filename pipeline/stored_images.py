"""The pipeline's side of the image store (``storage.images``): an inline image checked and
hashed for createJob, an uploaded one checked and hashed for uploadImage, and the worker's
reading of a job's stored image.

createJob refuses at once what the worker would refuse (not an image, a format we do not
take, too many pixels) with the worker's own message, from the image's header: no pixel is
decoded on the API's side. The worker then runs the same checks on the stored bytes as on any
image (``pipeline.images.check_image``), and never fetches ``/api/images/…`` over the network.
"""

from __future__ import annotations

import hashlib
import threading

from pipeline.errors import ImageError
from pipeline.images import MALFORMED_BASE64, check_image, decode_data_url, read_header
from pipeline.providers.base import Image
from storage.images import INVALID_IMAGE_URL, image_sha
from storage.records import NewImage
from storage.store import JobStore

GONE = "The stored image no longer exists"


class HeaderCache:
    """The headers of images already read, by SHA-256 and pixel cap: the same image sent
    again (a brand's logo with another purpose, a retried upload) skips Pillow. Only images
    that passed are kept; bounded, the oldest entry goes first.

    Why: reading the header is three quarters of createJob's CPU for a small inline image
    (bench/RESULTS.md §12); the hash is computed anyway, for the store's key."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._headers: dict[tuple[str, int], tuple[str, int, int]] = {}
        self._lock = threading.Lock()

    def read(self, sha256: str, data: bytes, max_pixels: int) -> tuple[str, int, int]:
        key = (sha256, max_pixels)
        header = self._headers.get(key)
        if header is None:
            header = read_header(data, max_pixels)
            with self._lock:  # large images are read in threads
                while len(self._headers) >= self.size:
                    del self._headers[next(iter(self._headers))]
                self._headers[key] = header
        return header


HEADERS = HeaderCache()


def inline_image(
    url: str, *, max_bytes: int, max_pixels: int, headers: HeaderCache = HEADERS
) -> NewImage:
    """A createJob's ``data:`` URL as an image for the store: decoded once (the size cap and
    base64 rules of ``decode_data_url``), its bytes hashed, its header read (or known).
    CPU-bound for a large image (a 10 MiB one is some milliseconds): callers run those in a
    thread."""
    data = decode_data_url(url.strip(), max_bytes)
    sha256 = hashlib.sha256(data).hexdigest()
    mime_type, width, height = headers.read(sha256, data, max_pixels)
    return NewImage(sha256, mime_type, width, height, data)


def uploaded_image(data: bytes, *, max_pixels: int) -> NewImage:
    """uploadImage's bytes as an image for the store: the worker's whole check of the file
    (Pillow's ``verify()`` as well as the header: a damaged file is refused before it is
    stored, with the worker's message), then hashed. No pixel is decoded (the pixel cap
    applies from the header), so no decode budget is taken. CPU-bound for a large image:
    callers run it in a thread."""
    mime_type, width, height = read_header(data, max_pixels, verify=True)
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
