"""Turn a user-supplied image reference (a ``data:`` URL or an http(s) URL) into checked bytes.

Every failure is a ``StageError`` whose message can be shown to the job's owner as is:
``ImageError`` when no retry can help (bad URL, 4xx, not an image, too large, refused
address), ``RetryableError`` when it may pass (5xx, 429, timeouts, connection and DNS faults).

The http(s) fetch is ``pipeline.fetching``'s; its SSRF defence follows PROVIDERS.md §5.1, item
by item:

2. http/https only, no userinfo, ports 1-65535 (and only ``allowed_ports`` when given);
   numeric IPv4 spellings (``2130706433``, ``0177.0.0.1``, ``0x7f.1``) and IPv6 zone ids
   are refused outright.
3. The host is resolved once per hop (``pipeline.netguard.resolve``), every address is
   checked, and the connection is pinned to the checked addresses (``PinnedTransport``):
   no second lookup, so DNS rebinding cannot swap the address; the hostname stays in
   ``Host``, the TLS SNI and the certificate check.
4. Every address must be public (``is_public_address``) unless ``allow_private``.
5. Redirects are followed by hand, at most ``MAX_REDIRECTS``, each hop checked again.
6. A connect timeout and an overall deadline; ``Content-Length`` checked, the body capped
   while it streams; a clearly non-image ``Content-Type`` refused before reading.
7. Pillow sniffs the bytes (the MIME type comes from it, never from a header), only JPEG,
   PNG, WEBP and GIF pass, and ``max_pixels`` refuses decompression bombs.
8. Proxies from the environment are ignored; errors never carry the fetched body.
"""

from __future__ import annotations

from collections.abc import Collection
from io import BytesIO

import anyio.to_thread
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from pipeline.decoding import without_png_text
from pipeline.errors import ImageError
from pipeline.fetching import (
    MAX_REDIRECTS,
    FetchPolicy,
    check_url_offline,
    fetch_image,
    format_size,
)
from pipeline.netguard import is_public_address
from pipeline.providers.base import Image
from storage import dataurl

__all__ = ["ALLOWED_FORMATS", "MAX_REDIRECTS", "check_image", "check_url_offline",
           "decode_data_url", "format_size", "is_public_address", "load_image"]  # fmt: skip

# Pillow format name -> MIME type; the MIME type is derived from this, never from a header.
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}

_SUPPORTED = "JPEG, PNG, WEBP or GIF"

# Magic numbers of common formats we refuse, only to say which format it was.
_OTHER_FORMATS: tuple[tuple[bytes, int, str], ...] = (
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypheix", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
    (b"%PDF", 0, "PDF"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"8BPS", 0, "PSD"),
)


async def load_image(
    url: str,
    *,
    max_bytes: int,
    allow_private: bool,
    timeout: float = 15.0,  # noqa: ASYNC109 - the contract's name; applied via fail_after
    max_pixels: int = 40_000_000,
    allowed_ports: Collection[int] | None = None,
    connect_timeout: float = 10.0,
) -> Image:
    """Fetch or decode ``url`` and return it as an ``Image`` that Pillow has verified.

    ``url`` is ``data:image/<type>;base64,<data>`` or an http(s) URL. The result is a JPEG,
    PNG, WEBP or GIF of at most ``max_bytes`` bytes and ``max_pixels`` pixels, with
    ``mime_type`` taken from Pillow's reading of the bytes. An http fetch takes at most
    ``timeout`` seconds in total (each connect at most ``connect_timeout``), follows at most
    ``MAX_REDIRECTS`` redirects, uses only ``allowed_ports`` (None: any port), and connects
    only to the addresses it resolved and checked: public ones unless ``allow_private``.

    Raises ``ImageError`` for permanent problems and ``RetryableError`` for transient ones.
    """
    stripped = url.strip()
    if stripped[:5].lower() == "data:":
        data = decode_data_url(stripped, max_bytes)
    else:
        data = await fetch_image(
            stripped,
            FetchPolicy(max_bytes, allow_private, allowed_ports, min(timeout, connect_timeout)),
            deadline=timeout,
        )
    return await check_image(data, max_pixels=max_pixels)


async def check_image(data: bytes, *, max_pixels: int = 40_000_000) -> Image:
    """``load_image``'s Pillow checks of bytes from elsewhere (the image store)."""
    # verify() walks the whole file (PNG chunk CRCs, for one), so keep it off the event loop.
    return await anyio.to_thread.run_sync(_sniff, data, max_pixels)


# --- data: URLs -------------------------------------------------------------------------


MALFORMED_BASE64 = "The data URL's base64 data is malformed"


def data_url_payload(url: str) -> str:
    """The payload of a ``data:image/…;base64,…`` URL, its header checked (ImageError
    otherwise): what createJob's input validation and `decode_data_url` both apply."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ImageError("The data URL is malformed (no ',' before the data)")
    media_type, *params = (part.strip() for part in header.split(";"))
    media_type = media_type.lower()
    if not media_type.startswith("image/"):
        shown = media_type or "no media type"
        raise ImageError(f"The data URL is not an image ({shown})")
    if "base64" not in (p.lower() for p in params):
        raise ImageError("The data URL must be base64-encoded (data:image/...;base64,...)")
    return payload


def decode_data_url(url: str, max_bytes: int) -> bytes:
    """The bytes of a ``data:image/…;base64,…`` URL of at most ``max_bytes`` (ImageError
    otherwise): the rule createJob and the worker share."""
    payload = dataurl.clean_payload(data_url_payload(url))
    if not payload:
        raise ImageError("The data URL contains no image data")
    # Refuse before decoding: base64 is 4 characters per 3 bytes.
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise ImageError(f"Image is larger than the {format_size(max_bytes)} limit")
    try:
        data = dataurl.decode_base64(payload)
    except ValueError:
        raise ImageError(MALFORMED_BASE64) from None
    if len(data) > max_bytes:
        raise ImageError(f"Image is larger than the {format_size(max_bytes)} limit")
    return data


# --- sniffing ---------------------------------------------------------------------------


def too_many_pixels(max_pixels: int) -> str:
    return f"Image has too many pixels (the limit is {max_pixels:,})"


def read_header(data: bytes, max_pixels: int, *, verify: bool = False) -> tuple[str, int, int]:
    """(MIME type, width, height) of ``data`` as Pillow reads it, the format list bounding
    which parsers run, or the ImageError that describes the problem. The pixel cap is applied
    from the header, before any decoding. ``verify``: the whole file is checked too (Pillow's
    ``verify()``, which walks every chunk: the worker's check; createJob reads the header
    only).

    Pillow's ``DecompressionBombWarning`` is not turned into an error with
    ``warnings.catch_warnings``, because that mutates process-wide state from a worker
    thread; the explicit ``max_pixels`` check does the job, and both bomb exceptions are
    still caught in case a caller's warning filter raises them.
    """
    if not data:
        raise ImageError("The image is empty")
    formats = list(ALLOWED_FORMATS)
    too_many = too_many_pixels(max_pixels)
    readable = without_png_text(data)  # Pillow inflates text chunks (to 64 MB) on opening
    try:
        with PILImage.open(BytesIO(readable), formats=formats) as probe:
            fmt = probe.format or ""
            width, height = probe.size
            if width * height > max_pixels:  # §5.1.7: a bomb is refused from its header
                raise ImageError(too_many)
            if verify:
                probe.verify()
        if verify:  # verify() leaves the image unusable: its size is read again
            with PILImage.open(BytesIO(readable), formats=formats) as reopened:
                width, height = reopened.size
    except ImageError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ImageError(too_many) from None
    except UnidentifiedImageError:
        raise ImageError(_not_an_image(data)) from None
    except Exception:
        # verify() and the plugins signal corrupt data with assorted exception types
        # (SyntaxError, OSError, struct.error, ValueError...), all of which mean the same.
        raise ImageError("The image file is damaged or incomplete") from None
    if fmt not in ALLOWED_FORMATS:
        raise ImageError(f"Unsupported image format {fmt or 'unknown'}; use {_SUPPORTED}")
    if width <= 0 or height <= 0:
        raise ImageError("The image has no pixels")
    if width * height > max_pixels:
        raise ImageError(too_many)
    return ALLOWED_FORMATS[fmt], width, height


def _sniff(data: bytes, max_pixels: int) -> Image:
    """Check the whole of ``data`` with Pillow and describe it."""
    mime_type, width, height = read_header(data, max_pixels, verify=True)
    return Image(data=data, mime_type=mime_type, width=width, height=height)


def _not_an_image(data: bytes) -> str:
    for magic, offset, name in _OTHER_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            return f"Unsupported image format {name}; use {_SUPPORTED}"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return f"Unsupported image format SVG; use {_SUPPORTED}"
    return f"The data is not an image (expected {_SUPPORTED})"
