"""Turn a user-supplied image reference (a ``data:`` URL or an http(s) URL) into checked bytes.

Every failure is a ``StageError`` whose message can be shown to the job's owner as is:
``ImageError`` when no retry can help (bad URL, 4xx, not an image, too large, refused
address), ``RetryableError`` when it may pass (5xx, 429, timeouts, connection and DNS faults).

The SSRF defence follows PROVIDERS.md §5.1, item by item:

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

import math
import re
import urllib.parse
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from io import BytesIO

import anyio
import anyio.to_thread
import httpx
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from pipeline import netguard
from pipeline.decoding import without_png_text
from pipeline.errors import ImageError, RetryableError
from pipeline.netguard import is_public_address
from pipeline.providers.base import Image
from storage import dataurl

__all__ = ["ALLOWED_FORMATS", "MAX_REDIRECTS", "check_image", "decode_data_url", "format_size",
           "is_public_address", "load_image"]  # fmt: skip

MAX_REDIRECTS = 3
"""How many redirects ``load_image`` follows before refusing the URL."""

# Pillow format name -> MIME type; the MIME type is derived from this, never from a header.
ALLOWED_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Only a clearly non-image Content-Type is refused before sniffing: many hosts (object
# stores, CDNs) serve images as octet-stream or without a type, and Pillow decides anyway.
_NEUTRAL_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"  # a DNS label; "_" occurs in real names
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,254}}$){_LABEL}(?:\.{_LABEL})*\.?$", re.IGNORECASE)
_PRIVATE = "Image URL points to a private or local address"
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
        data = await _fetch(
            stripped,
            _Policy(max_bytes, allow_private, allowed_ports, min(timeout, connect_timeout)),
            deadline=timeout,
        )
    return await check_image(data, max_pixels=max_pixels)


async def check_image(data: bytes, *, max_pixels: int = 40_000_000) -> Image:
    """``load_image``'s Pillow checks of bytes from elsewhere (the image store)."""
    # verify() walks the whole file (PNG chunk CRCs, for one), so keep it off the event loop.
    return await anyio.to_thread.run_sync(_sniff, data, max_pixels)


def format_size(num_bytes: int) -> str:
    """Render a byte count for people: "10 MiB", "500 KiB", "900 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if num_bytes >= size:
            return f"{round(num_bytes / size, 1):g} {unit}"
    return f"{num_bytes} bytes"


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


# --- http(s) ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Policy:
    max_bytes: int
    allow_private: bool
    allowed_ports: Collection[int] | None  # None: any port
    connect_timeout: float


async def _fetch(url: str, policy: _Policy, *, deadline: float) -> bytes:
    client_timeout = httpx.Timeout(deadline, connect=policy.connect_timeout)
    headers = {
        "Accept": "image/jpeg,image/png,image/webp,image/gif;q=0.9,*/*;q=0.1",
        # Raw bytes are counted against the cap; a compressed body could inflate past it.
        "Accept-Encoding": "identity",
        "User-Agent": "vision-pipeline/0.1 (image fetcher)",
    }
    max_bytes = policy.max_bytes
    try:
        with anyio.fail_after(deadline):  # §5.1.6: the overall deadline, DNS included
            transport = netguard.PinnedTransport()
            async with httpx.AsyncClient(
                transport=transport, trust_env=False, follow_redirects=False,
                timeout=client_timeout, headers=headers,
                event_hooks={"response": [partial(_check_location, policy)]},
            ) as client:  # fmt: skip
                target = _check_url(url, policy)
                for _hop in range(MAX_REDIRECTS + 1):  # §5.1.5: every hop checked again
                    host = target.raw_host.decode("ascii")
                    transport.pin(host, await _addresses(target, policy.allow_private))
                    async with client.stream("GET", target) as response:
                        if response.status_code in _REDIRECT_STATUSES:
                            target = _next_hop(target, response, policy)
                            continue
                        _check_response(response, max_bytes)
                        return await _read_capped(response, max_bytes)
                raise ImageError(f"Image URL redirected more than {MAX_REDIRECTS} times")
    except TimeoutError:
        raise RetryableError(
            f"Could not fetch the image: it did not arrive within {deadline:g} seconds"
        ) from None
    except httpx.TimeoutException as exc:
        what = "connecting timed out" if isinstance(exc, httpx.ConnectTimeout) else "timed out"
        raise RetryableError(f"Could not fetch the image: {what}") from None
    except httpx.ConnectError as exc:
        reason = netguard.describe_connect_error(exc)
        raise RetryableError(f"Could not fetch the image: {reason}") from None
    except httpx.RemoteProtocolError:
        raise RetryableError(
            "Could not fetch the image: the server closed the connection unexpectedly"
        ) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise ImageError("Image URL is not a valid http(s) URL") from None
    except httpx.HTTPError:
        raise RetryableError("Could not fetch the image: a network error occurred") from None


def _check_url(url: str | httpx.URL, policy: _Policy) -> httpx.URL:
    """§5.1.2: scheme, userinfo, a host a resolver could answer for, the port."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        # httpx refuses "0177.0.0.1" itself; say why when it is a numeric spelling.
        host = _host_of(str(url))
        if host is not None:
            _check_numeric(host, policy)
        raise ImageError("Image URL is not a valid http(s) URL") from None
    if parsed.scheme not in ("http", "https"):
        raise ImageError("Image URL must start with http:// or https:// (or be a data: URL)")
    if parsed.userinfo:
        raise ImageError("Image URL must not contain a user name or password")
    if not parsed.host:
        raise ImageError("Image URL has no host name")
    host = parsed.raw_host.decode("ascii", "replace")
    # Reject hosts no resolver could answer for before asking one (httpx percent-encodes
    # odd characters rather than refusing them); "%" also rules out IPv6 zone ids.
    if "%" in host or not (_HOSTNAME_RE.match(host) or netguard.is_ip_literal(host)):
        raise ImageError("Image URL is not a valid http(s) URL")
    _check_numeric(host, policy)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not 1 <= port <= 65535:
        raise ImageError("Image URL has an invalid port")
    allowed = policy.allowed_ports
    if allowed and port not in allowed:
        ports = " and ".join(str(p) for p in sorted(allowed))
        raise ImageError(f"Image URL uses port {port}; only port{'s' if len(allowed) > 1 else ''}"
                         f" {ports} may be used")  # fmt: skip
    return parsed


def _host_of(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).hostname
    except ValueError:
        return None


def _check_numeric(host: str, policy: _Policy) -> None:
    """Refuse ``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``: numeric IPv4 spellings
    that resolvers and browsers read as an address (netguard.numeric_host)."""
    try:
        address = netguard.numeric_host(host)
    except netguard.NumericHostError:
        raise ImageError("Image URL is not a valid http(s) URL") from None
    if address is None:
        return
    if not policy.allow_private and not is_public_address(str(address)):
        raise ImageError(_PRIVATE)
    raise ImageError(f"Image URL must write its IP address as {address} (four decimal numbers)")


async def _addresses(url: httpx.URL, allow_private: bool) -> list[str]:
    """§5.1.3-4: the host's addresses, each checked; the connection will go to these only."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await netguard.resolve(host, port)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        raise RetryableError(
            "Could not fetch the image: the host name could not be resolved"
        ) from None
    if not addresses:
        raise RetryableError("Could not fetch the image: the host name could not be resolved")
    # `is_public_address` is looked up here, at call time: it is the seam tests widen.
    if not allow_private and not all(is_public_address(a) for a in addresses):
        raise ImageError(_PRIVATE)
    return addresses


async def _check_location(policy: _Policy, response: httpx.Response) -> None:
    """httpx reads a redirect's Location even with follow_redirects off, and one it cannot
    parse ("0177.0.0.1") becomes a RemoteProtocolError, a "dropped connection"; its response
    hooks run before that, so the hop is checked (and refused for what it is) here first."""
    if response.status_code in _REDIRECT_STATUSES:
        _next_hop(response.url, response, policy)


def _next_hop(current: httpx.URL, response: httpx.Response, policy: _Policy) -> httpx.URL:
    location = response.headers.get("location", "").strip()
    if not location:
        raise ImageError(f"Image URL returned HTTP {response.status_code} without a target")
    try:
        joined = current.join(location)
    except (httpx.InvalidURL, ValueError):
        with suppress(ValueError):  # the message the same URL gets when submitted directly
            _check_url(urllib.parse.urljoin(str(current), location), policy)
        raise ImageError("Image URL is not a valid http(s) URL") from None
    return _check_url(joined, policy)


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if status == 429 or status >= 500 or status == 408:
        retry_after = _retry_after(response) if status in (429, 503) else None
        raise RetryableError(
            f"Could not fetch the image: the server returned HTTP {status}",
            retry_after=retry_after,
        )
    if not 200 <= status < 300:
        raise ImageError(f"Image URL returned HTTP {status}")
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in _NEUTRAL_CONTENT_TYPES and not content_type.startswith("image/"):
        raise ImageError(f"The URL did not return an image ({content_type})")
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageError(f"Image is larger than the {format_size(max_bytes)} limit")


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    buffer = bytearray()
    async for chunk in response.aiter_raw():
        buffer += chunk
        if len(buffer) > max_bytes:
            raise ImageError(f"Image is larger than the {format_size(max_bytes)} limit")
    return bytes(buffer)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if usable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# --- sniffing ---------------------------------------------------------------------------


def _sniff(data: bytes, max_pixels: int) -> Image:
    """Check ``data`` with Pillow and describe it; the format list bounds which parsers run.

    Pillow's ``DecompressionBombWarning`` is not turned into an error with
    ``warnings.catch_warnings``, because that mutates process-wide state from a worker
    thread; the explicit ``max_pixels`` check does the job, and both bomb exceptions are
    still caught in case a caller's warning filter raises them.
    """
    if not data:
        raise ImageError("The image is empty")
    formats = list(ALLOWED_FORMATS)
    too_many = f"Image has too many pixels (the limit is {max_pixels:,})"
    readable = without_png_text(data)  # Pillow inflates text chunks (to 64 MB) on opening
    try:
        with PILImage.open(BytesIO(readable), formats=formats) as probe:
            fmt = probe.format or ""
            width, height = probe.size
            if width * height > max_pixels:  # §5.1.7: a bomb is refused from its header
                raise ImageError(too_many)
            probe.verify()
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
    return Image(data=data, mime_type=ALLOWED_FORMATS[fmt], width=width, height=height)


def _not_an_image(data: bytes) -> str:
    for magic, offset, name in _OTHER_FORMATS:
        if data[offset : offset + len(magic)] == magic:
            return f"Unsupported image format {name}; use {_SUPPORTED}"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return f"Unsupported image format SVG; use {_SUPPORTED}"
    return f"The data is not an image (expected {_SUPPORTED})"
