"""Fetch an image's bytes over http(s), defended against SSRF (PROVIDERS.md §5.1; the list
is in ``pipeline.images``): each hop's URL checked, its host resolved once and every address
checked (``is_public_address``, looked up at call time: the seam tests widen), the connection
pinned to those addresses, redirects followed by hand, the body capped while it streams.
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

import anyio
import httpx

from pipeline import netguard
from pipeline.errors import ImageError, RetryableError
from pipeline.netguard import is_public_address

MAX_REDIRECTS = 3
"""How many redirects ``load_image`` follows before refusing the URL."""

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Only a clearly non-image Content-Type is refused before sniffing: many hosts (object
# stores, CDNs) serve images as octet-stream or without a type, and Pillow decides anyway.
_NEUTRAL_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"  # a DNS label; "_" occurs in real names
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,254}}$){_LABEL}(?:\.{_LABEL})*\.?$", re.IGNORECASE)
_PRIVATE = "Image URL points to a private or local address"


def format_size(num_bytes: int) -> str:
    """Render a byte count for people: "10 MiB", "500 KiB", "900 bytes"."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if num_bytes >= size:
            return f"{round(num_bytes / size, 1):g} {unit}"
    return f"{num_bytes} bytes"


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    max_bytes: int
    allow_private: bool
    allowed_ports: Collection[int] | None  # None: any port
    connect_timeout: float


async def fetch_image(url: str, policy: FetchPolicy, *, deadline: float) -> bytes:
    """The body of the http(s) ``url``, fetched as ``policy`` allows within ``deadline``
    seconds (``pipeline.images.load_image`` checks that it is an image)."""
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


def _check_url(url: str | httpx.URL, policy: FetchPolicy) -> httpx.URL:
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


def check_url_offline(
    url: str, *, allow_private: bool, allowed_ports: Collection[int] | None
) -> None:
    """What can be decided about ``url`` without the network, with the message the fetch
    would give: scheme, userinfo, a malformed host, the port, and an address written out
    (``127.0.0.1``, ``[::1]``) that is not public. Names that need DNS are left to the fetch."""
    parsed = _check_url(url, FetchPolicy(0, allow_private, allowed_ports, 0.0))
    host = parsed.raw_host.decode("ascii", "replace")
    # `is_public_address` is looked up at call time, the seam tests widen (as in `_addresses`).
    if not allow_private and netguard.is_ip_literal(host) and not is_public_address(host):
        raise ImageError(_PRIVATE)


def _host_of(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).hostname
    except ValueError:
        return None


def _check_numeric(host: str, policy: FetchPolicy) -> None:
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


async def _check_location(policy: FetchPolicy, response: httpx.Response) -> None:
    """httpx reads a redirect's Location even with follow_redirects off, and one it cannot
    parse ("0177.0.0.1") becomes a RemoteProtocolError, a "dropped connection"; its response
    hooks run before that, so the hop is checked (and refused for what it is) here first."""
    if response.status_code in _REDIRECT_STATUSES:
        _next_hop(response.url, response, policy)


def _next_hop(current: httpx.URL, response: httpx.Response, policy: FetchPolicy) -> httpx.URL:
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
