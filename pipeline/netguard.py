"""Where a user-supplied URL may make this server connect, and a transport that keeps to it.

The SSRF checklist is PROVIDERS.md §5.1; the items this module implements:

- §5.1.3 *Resolve DNS yourself and connect to the address you validated.* ``resolve`` is the
  only lookup; ``PinnedTransport`` connects only to addresses pinned for a hostname and never
  asks DNS itself, so a name that answers "public" to the check and "127.0.0.1" a moment
  later (DNS rebinding) still reaches the checked address. The URL's hostname stays in the
  ``Host`` header, the TLS SNI and the certificate check (httpcore passes the origin's
  hostname to ``start_tls``; only the TCP connect goes to the pinned IP).
- §5.1.4 *Block non-public addresses.* ``is_public_address`` unwraps IPv4-mapped, NAT64 and
  6to4 IPv6 before judging, and refuses loopback, private, link-local (169.254.169.254),
  multicast, reserved, unspecified and CGNAT (100.64/10) addresses.
- Numeric spellings of IPv4 (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) are what
  ``inet_aton`` and browsers accept; ``numeric_host`` reads them the same way so the caller
  can refuse them instead of letting a resolver quietly turn them into 127.0.0.1.

``describe_connect_error`` turns a failed connection into words a user can act on (never
the raw error, §5.1.8).

``resolve`` and ``dial`` are module attributes on purpose: they are the two seams through
which this module touches the network, and tests replace them (a fake DNS answer, a "public"
test IP that is really a local server).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
_SOCKET_OPTIONS = Iterable[
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
]


class NumericHostError(ValueError):
    """A host made of numbers that is not a valid IPv4 address in any spelling."""


def is_public_address(address: str) -> bool:
    """Return True only if ``address`` (an IPv4/IPv6 literal) is a public unicast address.

    IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they embed.
    ``is_global`` alone is not enough (224.0.0.1 is "global"; PROVIDERS.md §5.1.4), so the
    specific ranges are refused as well. A string that is not an IP address is not public.
    """
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # drop a zone id
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.is_site_local:
            return False
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IPv4 dotted quad or an IPv6 address (no brackets)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def numeric_host(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a non-canonical numeric host spells, or None for any other host.

    Follows the WHATWG URL "IPv4 parser" (what browsers and ``inet_aton`` do): a host whose
    last label is a number is an IPv4 address of 1 to 4 parts, each decimal, octal (leading
    0) or hex (0x), the last part filling the remaining bytes. ``2130706433``, ``0177.0.0.1``,
    ``0x7f.1`` and ``127.1`` are all 127.0.0.1. A canonical dotted quad returns None (it is
    an ordinary IP literal). Raises ``NumericHostError`` for a numeric host no parser
    accepts (``1.2.3.4.5``, ``0x7f.999999999``, ``08.1``).
    """
    if ":" in host:
        return None  # IPv6 (one with an embedded IPv4 is judged by is_public_address)
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not labels or not _NUMERIC_LABEL.match(labels[-1]):
        return None
    if len(labels) == 4 and all(_is_plain_decimal(label) for label in labels):
        return None  # a.b.c.d as written: checked as an IP literal
    if len(labels) > 4 or not all(_NUMERIC_LABEL.match(label) for label in labels):
        raise NumericHostError(host)
    numbers: list[int] = []
    for label in labels:
        try:
            if label[:2].lower() == "0x":
                numbers.append(int(label[2:] or "0", 16))
            elif len(label) > 1 and label.startswith("0"):
                numbers.append(int(label[1:], 8))
            else:
                numbers.append(int(label, 10))
        except ValueError:
            raise NumericHostError(host) from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise NumericHostError(host)
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(head))
    return ipaddress.IPv4Address(value)


def _is_plain_decimal(label: str) -> bool:
    return label.isascii() and label.isdigit() and (label == "0" or not label.startswith("0"))


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for TCP, in the resolver's order, without repeats.

    The one DNS lookup of a fetch (§5.1.3). Raises ``socket.gaierror`` (or ``UnicodeError``
    for a name IDNA cannot encode) when the name does not resolve.
    """
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def describe_connect_error(exc: BaseException) -> str:
    """Say in words why a connection failed, from the OS error under httpx's exception."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "the host name could not be resolved"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "the server's TLS certificate could not be verified"
        if isinstance(cause, ssl.SSLError):
            return "the TLS handshake failed"
        cause = cause.__cause__ or cause.__context__
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "the host name could not be resolved"
    return "could not connect to the server"


# --- the pinned transport --------------------------------------------------------------------

_CONNECTOR = httpcore.AnyIOBackend()


async def dial(
    address: str,
    port: int,
    *,
    timeout: float | None,  # noqa: ASYNC109 - httpcore's interface
    socket_options: _SOCKET_OPTIONS | None,
) -> httpcore.AsyncNetworkStream:
    """Open a TCP connection to the IP ``address``: the only place a fetch opens a socket.

    ``address`` is always an IP literal, so no DNS lookup happens here.
    """
    return await _CONNECTOR.connect_tcp(
        address, port, timeout=timeout, socket_options=socket_options
    )


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects a hostname only to its pinned addresses.

    A hostname without pins cannot be connected to at all (fail closed). Each pinned
    address is tried in order until one accepts.
    """

    def __init__(self, pins: Mapping[str, tuple[str, ...]]) -> None:
        self._pins = pins

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: _SOCKET_OPTIONS | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.get(host)
        if not addresses:
            raise httpcore.ConnectError(f"refusing to connect to unchecked host {host!r}")
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await dial(address, port, timeout=timeout, socket_options=socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


# httpcore exception -> httpx exception, most specific first (httpx's own transport maps the
# same way; the classification in pipeline.images relies on httpx's types).
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _as_httpx(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc), request=request) from exc
        raise


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: Any, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            with _as_httpx(self._request):
                await self._stream.aclose()


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport (HTTP/1.1, TLS verified) whose connections go to pinned IPs only.

    ``pin(host, addresses)`` says where ``host`` may connect; call it with checked addresses
    before each request to a new host. Proxies from the environment are never used (§5.1.8).
    """

    def __init__(self, *, max_connections: int = 4) -> None:
        self._pins: dict[str, tuple[str, ...]] = {}
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            network_backend=PinnedBackend(self._pins),
        )

    def pin(self, host: str, addresses: Iterable[str]) -> None:
        """Let connections to ``host`` (the URL's raw host) go to ``addresses``, and only there."""
        self._pins[host] = tuple(addresses)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx(request):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
