"""SSRF: load_image cannot be turned against the network the server sits in (issue 8 item 1,
PROVIDERS.md §5.1).

No test needs the internet. Two seams of ``pipeline.netguard`` stand in for it:

- ``netguard.resolve`` (the only DNS lookup) is replaced by ``FakeDNS``, which answers from
  a table and counts its calls.
- ``netguard.dial`` (the only place a socket opens) is replaced by ``FakeNet``: a connection
  to one of the public-looking test IPs below really goes to a local server, so a name that
  "resolves" to 93.184.216.34 is fetched from 127.0.0.1. Every dial is recorded; a dial to
  any other address fails the test's expectations (and never reaches the network).
"""

from __future__ import annotations

import datetime as dt
import io
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import anyio
import httpcore
import httpx
import pytest
from PIL import Image as PILImage

from pipeline import netguard
from pipeline.config import PipelineSettings
from pipeline.errors import ImageError, RetryableError
from pipeline.images import load_image
from pipeline.providers.base import Image

PUBLIC_A = "93.184.216.34"  # what the fake DNS gives public names; really the local server
PUBLIC_B = "198.41.0.4"
PUBLIC_TLS = "151.101.1.69"  # really the local TLS server
PRIVATE = "private or local address"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def encode(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (10, 120, 200)).save(buffer, fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


PNG = encode("PNG")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


# --- the local servers ------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str]]] = []  # (Host header, path) of every request

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, status: int, body: bytes, ctype: str = "image/png", **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append((self.headers.get("host", ""), self.path))
        url = urlsplit(self.path)
        try:
            if url.path == "/image.png":
                self.send(200, PNG)
            elif url.path == "/to":  # /to?url=<where>: a redirect anywhere
                self.send(302, b"", "text/plain", Location=parse_qs(url.query)["url"][0])
            elif url.path == "/bomb.png":
                self.send(200, png_claiming(30_000, 30_000))
            elif url.path == "/large.png":
                self.send(200, png_claiming(5_000, 5_000))
            elif url.path == "/logo.svg":
                self.send(200, SVG, "image/svg+xml")
            elif url.path == "/endless":  # streams until the client hangs up
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                block = b"\0" * 65536
                for _ in range(100_000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            else:
                self.send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass


def serve(context: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, int(httpd.server_address[1])


def self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    """A certificate for ``name`` signed by its own key (the test trusts it explicitly)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def plain_port() -> Iterator[int]:
    httpd, port = serve()
    yield port
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, list[str]]]:
    """A local https server for secure.example.com: (port, its certificate, SNI names seen)."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"), "secure.example.com")
    sni: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def remember_sni(sock: Any, name: str | None, ctx: Any) -> None:
        sni.append(name or "")

    context.sni_callback = remember_sni
    httpd, port = serve(context)
    yield port, cert, sni
    httpd.shutdown()
    httpd.server_close()


# --- the fake network -------------------------------------------------------------------------


class FakeDNS:
    """``netguard.resolve`` from a table: name -> addresses, or a list of successive answers."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self.table.get(host)
        if answer is None:
            if netguard.is_ip_literal(host):
                return [host]  # what getaddrinfo does with a literal
            raise OSError(f"no such name {host}")
        if answer and isinstance(answer[0], list):  # successive answers: rebinding
            return list(answer.pop(0) if len(answer) > 1 else answer[0])
        return list(answer)


class FakeNet:
    """``netguard.dial``: the test IPs reach local servers; every dial is recorded."""

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        self.dialed: list[tuple[str, int]] = []
        self.real = netguard.dial
        self.hang = False

    async def __call__(
        self, address: str, port: int, *, timeout: float | None, socket_options: Any
    ) -> httpcore.AsyncNetworkStream:
        self.dialed.append((address, port))
        if self.hang:
            await anyio.sleep(30)
        local = self.routes.get(address)
        if local is None:
            raise httpcore.ConnectError(f"test network: {address} is unreachable")
        return await self.real("127.0.0.1", local, timeout=timeout, socket_options=socket_options)


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch, plain_port: int) -> FakeNet:
    fake = FakeNet({PUBLIC_A: plain_port, PUBLIC_B: plain_port})
    monkeypatch.setattr(netguard, "dial", fake)
    return fake


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS(
        {
            "images.example.com": [PUBLIC_A],
            "cdn.example.com": [PUBLIC_B],
            "localhost": ["127.0.0.1", "::1"],
        }
    )
    monkeypatch.setattr(netguard, "resolve", fake)

    async def no_other_lookup(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a DNS lookup outside netguard.resolve: {args}")

    monkeypatch.setattr(anyio, "getaddrinfo", no_other_lookup)
    return fake


async def fetch(url: str, **kwargs: Any) -> Image:
    kwargs.setdefault("max_bytes", 1 << 20)
    kwargs.setdefault("allow_private", False)
    kwargs.setdefault("allowed_ports", {80, 443})
    return await load_image(url, **kwargs)


# --- a public name is fetched through the address that was checked ---------------------------


@pytest.mark.anyio
async def test_a_public_name_is_fetched_from_its_checked_address_with_its_host_header(
    dns: FakeDNS, net: FakeNet
) -> None:
    Handler.seen.clear()
    image = await fetch("http://images.example.com/image.png")
    assert (image.mime_type, image.width) == ("image/png", 40)
    assert net.dialed == [(PUBLIC_A, 80)]
    assert dns.calls == ["images.example.com"]
    assert Handler.seen == [("images.example.com", "/image.png")]


@pytest.mark.anyio
async def test_dns_rebinding_cannot_swap_the_address(dns: FakeDNS, net: FakeNet) -> None:
    # The name answers public once, then 127.0.0.1: the one lookup is the one connected to.
    dns.table["rebind.example.com"] = [[PUBLIC_A], ["127.0.0.1"]]
    image = await fetch("http://rebind.example.com/image.png")
    assert image.width == 40
    assert dns.calls == ["rebind.example.com"]  # no second lookup
    assert net.dialed == [(PUBLIC_A, 80)]


@pytest.mark.anyio
async def test_a_rebinding_name_is_refused_on_its_next_hop(dns: FakeDNS, net: FakeNet) -> None:
    # A redirect back to the same name resolves it again, and the private answer is refused.
    dns.table["rebind.example.com"] = [[PUBLIC_A], ["127.0.0.1"]]
    with pytest.raises(ImageError, match=PRIVATE):
        await fetch("http://rebind.example.com/to?url=/image.png")
    assert net.dialed == [(PUBLIC_A, 80)]


@pytest.mark.anyio
async def test_the_transport_refuses_a_host_nobody_checked() -> None:
    backend = netguard.PinnedBackend({"checked.example.com": (PUBLIC_A,)})
    with pytest.raises(httpcore.ConnectError, match="unchecked host"):
        await backend.connect_tcp("other.example.com", 80)


# --- refused addresses ------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1",  # loopback
    "127.8.9.10",
    "::1",
    "10.1.2.3",  # private
    "172.16.5.4",
    "192.168.0.10",
    "fd00::1",
    "169.254.169.254",  # link-local: cloud metadata
    "fe80::1",
    "224.0.0.1",  # multicast
    "ff02::1",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "0.0.0.0",  # unspecified
    "::",
    "100.64.0.1",  # CGNAT
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:c0a8:1::1",  # 6to4 of 192.168.0.1
    "192.0.2.1",  # documentation
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
@pytest.mark.anyio
async def test_a_name_resolving_to_a_non_public_address_is_refused(
    dns: FakeDNS, net: FakeNet, address: str
) -> None:
    dns.table["evil.example.com"] = [address]
    with pytest.raises(ImageError, match=PRIVATE):
        await fetch("http://evil.example.com/image.png")
    assert net.dialed == []


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
@pytest.mark.anyio
async def test_a_non_public_ip_literal_is_refused(dns: FakeDNS, net: FakeNet, address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(ImageError, match=PRIVATE):
        await fetch(f"http://{host}/image.png")
    assert net.dialed == []


@pytest.mark.anyio
async def test_every_address_of_a_name_is_checked(dns: FakeDNS, net: FakeNet) -> None:
    dns.table["mixed.example.com"] = [PUBLIC_A, "10.0.0.7"]
    with pytest.raises(ImageError, match=PRIVATE):
        await fetch("http://mixed.example.com/image.png")
    assert net.dialed == []


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f000001",
        "127.1",
        "017700000001",
        "0x7f.0.0.1",
        "0xa9.0xfe.0xa9.0xfe",
        "2852039166",
    ],
)
@pytest.mark.anyio
async def test_numeric_spellings_of_private_addresses_are_refused(
    dns: FakeDNS, net: FakeNet, host: str
) -> None:
    with pytest.raises(ImageError, match=PRIVATE):
        await fetch(f"http://{host}/image.png")
    assert net.dialed == [] and dns.calls == []


@pytest.mark.anyio
async def test_a_numeric_spelling_of_a_public_address_is_refused_too(
    dns: FakeDNS, net: FakeNet
) -> None:
    with pytest.raises(ImageError, match=r"write its IP address as 8\.8\.8\.8"):
        await fetch("http://134744072/image.png")
    assert net.dialed == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://images.example.com/image.png", "must start with http"),
        ("file:///etc/passwd", "must start with http"),
        ("gopher://images.example.com/", "must start with http"),
        ("http://user:secret@images.example.com/image.png", "user name or password"),
        ("http://user@images.example.com/image.png", "user name or password"),
        ("http://images.example.com:8080/image.png", "port 8080; only ports 80 and 443"),
        ("https://images.example.com:22/image.png", "port 22"),
        ("http://images.example.com:99999/image.png", "invalid port|not a valid"),
        ("http://[fe80::1%25eth0]/image.png", "not a valid"),
        ("http://1.2.3.4.5/image.png", "not a valid"),
        ("http://images.example.com%00.evil/image.png", "not a valid"),
    ],
)
@pytest.mark.anyio
async def test_urls_that_are_refused_before_any_lookup(
    dns: FakeDNS, net: FakeNet, url: str, message: str
) -> None:
    with pytest.raises(ImageError, match=message):
        await fetch(url)
    assert net.dialed == [] and dns.calls == []


# --- redirects --------------------------------------------------------------------------------


def via(*hops: str) -> str:
    """A URL that redirects through each of ``hops`` in turn (the last is the target)."""
    from urllib.parse import quote

    url = hops[-1]
    for hop in reversed(hops[:-1]):
        url = f"{hop}/to?url={quote(url, safe='')}"
    return url


@pytest.mark.anyio
async def test_a_redirect_chain_across_public_hosts_is_followed(dns: FakeDNS, net: FakeNet) -> None:
    url = via("http://cdn.example.com", "http://images.example.com/image.png")
    assert (await fetch(url)).width == 40
    assert net.dialed == [(PUBLIC_B, 80), (PUBLIC_A, 80)]


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1/image.png",
        "http://localhost/image.png",
        "http://[::ffff:127.0.0.1]/image.png",
        "http://2130706433/image.png",
        "http://0177.0.0.1/image.png",  # httpx cannot parse it; refused, not retried
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.example.com/computeMetadata/v1/",
    ],
)
@pytest.mark.anyio
async def test_a_redirect_chain_from_a_public_host_to_a_local_one_is_refused(
    dns: FakeDNS, net: FakeNet, target: str
) -> None:
    dns.table["metadata.example.com"] = ["169.254.169.254"]
    Handler.seen.clear()
    url = via("http://cdn.example.com", "http://images.example.com", target)
    with pytest.raises(ImageError, match=PRIVATE):
        await fetch(url)
    # Both public hops were fetched; the local target never was.
    assert net.dialed == [(PUBLIC_B, 80), (PUBLIC_A, 80)]
    assert [host for host, _ in Handler.seen] == ["cdn.example.com", "images.example.com"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("http://images.example.com:8080/image.png", "port 8080"),
        ("ftp://images.example.com/image.png", "must start with http"),
        ("http://admin:pw@images.example.com/image.png", "user name or password"),
        ("http://01.02.03.04/image.png", r"write its IP address as 1\.2\.3\.4"),
        ("http://images.example.com:abc/image.png", "not a valid"),
    ],
)
@pytest.mark.anyio
async def test_every_hop_is_checked_like_the_first(
    dns: FakeDNS, net: FakeNet, target: str, message: str
) -> None:
    with pytest.raises(ImageError, match=message):
        await fetch(via("http://cdn.example.com", target))
    assert net.dialed == [(PUBLIC_B, 80)]


@pytest.mark.anyio
async def test_more_than_three_redirects_are_refused(dns: FakeDNS, net: FakeNet) -> None:
    hops = ["http://cdn.example.com"] * 4 + ["http://images.example.com/image.png"]
    with pytest.raises(ImageError, match="more than 3 times"):
        await fetch(via(*hops))
    assert (await fetch(via(*hops[1:]))).width == 40  # three are fine


# --- TLS keeps the hostname -------------------------------------------------------------------


@pytest.mark.anyio
async def test_tls_verifies_the_certificate_for_the_hostname_not_the_pinned_ip(
    dns: FakeDNS, net: FakeNet, tls: tuple[int, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert, sni = tls
    net.routes[PUBLIC_TLS] = port
    dns.table["secure.example.com"] = [PUBLIC_TLS]
    dns.table["impostor.example.com"] = [PUBLIC_TLS]
    # Untrusted (self-signed): the handshake happens, with the hostname as SNI, and fails.
    with pytest.raises(RetryableError, match="certificate could not be verified"):
        await fetch("https://secure.example.com/image.png")
    assert sni[-1] == "secure.example.com"
    # Trusted: the certificate for secure.example.com is accepted for that name...
    trusted = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(httpx, "create_ssl_context", lambda *a, **k: trusted)
    assert (await fetch("https://secure.example.com/image.png")).width == 40
    assert net.dialed[-1] == (PUBLIC_TLS, 443)
    # ...and not for another name that resolves to the same address.
    with pytest.raises(RetryableError, match="certificate could not be verified"):
        await fetch("https://impostor.example.com/image.png")
    assert sni[-1] == "impostor.example.com"


# --- limits: deadline, size, pixels, formats --------------------------------------------------


@pytest.mark.anyio
async def test_a_connect_that_hangs_meets_the_overall_deadline(dns: FakeDNS, net: FakeNet) -> None:
    net.hang = True
    started = time.monotonic()
    with pytest.raises(RetryableError, match="Could not fetch the image"):
        await fetch("http://images.example.com/image.png", timeout=0.5)
    assert time.monotonic() - started < 3


@pytest.mark.anyio
async def test_an_endless_body_is_cut_at_the_byte_cap_while_streaming(
    dns: FakeDNS, net: FakeNet
) -> None:
    started = time.monotonic()
    with pytest.raises(ImageError, match="larger than the 1 MiB limit"):
        await fetch("http://images.example.com/endless", timeout=30)
    assert time.monotonic() - started < 10  # refused at the cap, not at the deadline


@pytest.mark.parametrize(
    ("path", "kwargs", "message"),
    [
        ("/bomb.png", {}, "too many pixels"),
        ("/large.png", {"max_pixels": 1_000_000}, "too many pixels"),
        ("/logo.svg", {}, r"did not return an image \(image/svg\+xml\)|Unsupported image format"),
    ],
)
@pytest.mark.anyio
async def test_bombs_and_other_formats_are_refused(
    dns: FakeDNS, net: FakeNet, path: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ImageError, match=message):
        await fetch("http://images.example.com" + path, **kwargs)


# --- allow_private (tests, trusted networks) --------------------------------------------------


@pytest.mark.anyio
async def test_allow_private_opens_loopback_and_any_port(plain_port: int) -> None:
    url = f"http://127.0.0.1:{plain_port}/image.png"
    with pytest.raises(ImageError):
        await fetch(url)
    image = await fetch(url, allow_private=True, allowed_ports=None)
    assert image.width == 40


def test_allowed_ports_setting() -> None:
    assert PipelineSettings().image_ports() == frozenset({80, 443})
    assert PipelineSettings(image_fetch_allowed_ports="443, 8443").image_ports() == {443, 8443}
    assert PipelineSettings(image_fetch_allowed_ports="").image_ports() is None
    assert PipelineSettings(image_fetch_allow_private=True).image_ports() is None
    assert PipelineSettings().image_fetch_allow_private is False


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.0.0.1", None),
        ("example.com", None),
        ("::1", None),
        ("0x", "0.0.0.0"),
        ("134744072", "8.8.8.8"),
    ],
)
def test_numeric_host(host: str, address: str | None) -> None:
    found = netguard.numeric_host(host)
    assert (None if found is None else str(found)) == address


@pytest.mark.parametrize("host", ["1.2.3.4.5", "08.1", "0x7f.999999999", "a.123", "4294967296"])
def test_numeric_host_that_no_parser_accepts(host: str) -> None:
    with pytest.raises(netguard.NumericHostError):
        netguard.numeric_host(host)
