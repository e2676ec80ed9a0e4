"""Safe fetching of image URLs for providers that need the bytes (Bedrock takes no URLs).

Only http(s) to public addresses: the host is resolved here, every address is
checked, and the connection goes to the checked address (never re-resolved by
name), keeping the Host header and, for https, SNI and certificate checks for the
original name. Redirects are followed by hand and every hop is checked again.
Size is limited up front (Content-Length) and while reading; time by connect and
read timeouts that never exceed an overall deadline. Every refusal or failure is
an InvalidRequest (400) that says why.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import time
from http.client import HTTPException
from typing import Callable
from urllib.parse import urljoin, urlsplit

import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection

from proxy.errors import InvalidRequest

try:
    import certifi
    CA_CERTS: str | None = certifi.where()
except ImportError:  # pragma: no cover - system store then
    CA_CERTS = None

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MEDIA_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
REDIRECTS = {301, 302, 303, 307, 308}
METADATA_NAMES = {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                  "instance-data.ec2.internal", "metadata.azure.internal"}
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_PIECE = 64 * 1024

_N = ipaddress.ip_network
_REASONS: list[tuple[str, list]] = [  # explicit checks; is_global catches the rest
    ("an unspecified address", [_N("0.0.0.0/8"), _N("::/128")]),
    ("a loopback address", [_N("127.0.0.0/8"), _N("::1/128")]),
    ("a cloud metadata address", [_N("169.254.169.254/32"), _N("fd00:ec2::254/128"),
                                  _N("100.100.100.200/32"), _N("192.0.0.192/32")]),
    ("a link-local address", [_N("169.254.0.0/16"), _N("fe80::/10")]),
    ("a private address", [_N("10.0.0.0/8"), _N("172.16.0.0/12"), _N("192.168.0.0/16"),
                           _N("fc00::/7"), _N("fec0::/10")]),
    ("a carrier-grade NAT address", [_N("100.64.0.0/10")]),
    ("a multicast address", [_N("224.0.0.0/4"), _N("ff00::/8")]),
    ("a reserved address", [_N("192.0.0.0/24"), _N("192.0.2.0/24"), _N("198.18.0.0/15"),
                            _N("198.51.100.0/24"), _N("203.0.113.0/24"), _N("240.0.0.0/4"),
                            _N("64:ff9b:1::/48"), _N("100::/64"), _N("2001:db8::/32")]),
]


def refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address (e.g. "a private address"), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(ip.packed)  # drop any %scope
        if ip.ipv4_mapped:
            return refusal(ip.ipv4_mapped)
    for reason, networks in _REASONS:
        if any(ip in net for net in networks if net.version == ip.version):
            return reason
    if ip.version == 6:  # IPv4 inside IPv6 (6to4, NAT64, compatible) is judged as that IPv4 too
        inner = ip.sixtofour
        if inner is None and (ip in _N("64:ff9b::/96") or ip in _N("::/96")):
            inner = ipaddress.IPv4Address(ip.packed[-4:])
        if inner is not None and refusal(inner):
            return refusal(inner)
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def public_only(ip: IPAddress) -> bool:
    """The default address policy."""
    return refusal(ip) is None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (tests replace this to avoid real DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _refused(why: str) -> InvalidRequest:
    return InvalidRequest(f"Image URL refused: {why}", param="messages", code="invalid_image_url")


def _failed(why: str) -> InvalidRequest:
    return InvalidRequest(f"could not fetch image: {why}", param="messages", code="invalid_image_url")


class MediaFetcher:
    def __init__(self, *, max_bytes: int = 20 * 1024 * 1024, timeout: float = 10.0,
                 connect_timeout: float = 5.0, max_redirects: int = 3,
                 allow: Callable[[IPAddress], bool] = public_only, ca_certs: str | None = CA_CERTS):
        self.max_bytes, self.timeout, self.connect_timeout = max_bytes, timeout, connect_timeout
        self.max_redirects, self.allow, self.ca_certs = max_redirects, allow, ca_certs

    @classmethod
    def from_env(cls, env=None) -> "MediaFetcher":
        env = os.environ if env is None else env
        return cls(max_bytes=int(env.get("MEDIA_MAX_BYTES") or 20 * 1024 * 1024),
                   timeout=float(env.get("MEDIA_TIMEOUT") or 10),
                   max_redirects=int(env.get("MEDIA_MAX_REDIRECTS") or 3))

    def fetch_image(self, url: str) -> tuple[bytes, str]:
        from gevent import Timeout, monkey
        if monkey.is_module_patched("socket"):  # a backstop that also covers DNS
            with Timeout(self.timeout + 1, _failed("timed out")):
                return self._fetch(url)
        return self._fetch(url)

    def _fetch(self, url: str) -> tuple[bytes, str]:
        deadline = time.monotonic() + self.timeout
        for _ in range(self.max_redirects + 1):
            status, location, body, content_type = self._get(url, deadline)
            if status in REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if status in REDIRECTS or not 200 <= status < 300:
                raise _failed(f"status {status}")
            if not body:
                raise _failed("the response was empty")
            declared = re.sub(r"[^\w.+/-]", "", content_type.split(";")[0].lower())[:100]
            declared = ALIASES.get(declared, declared)
            media_type = sniff(body) or (declared if declared in MEDIA_TYPES else None)
            if media_type is None:
                raise _refused(f"the URL did not return a supported image (content type "
                               f"{declared or 'missing'}; supported: png, jpeg, gif, webp)")
            return body, media_type
        raise _refused(f"more than {self.max_redirects} redirects")

    def _target(self, url: str) -> tuple[str, str, int, str, str]:
        """scheme, checked IP, port, host name and Host header for `url`; raises if refused."""
        try:
            parts = urlsplit(url.strip())
            scheme, host, port = parts.scheme.lower(), (parts.hostname or ""), parts.port
        except ValueError:
            raise _refused("not a valid URL") from None
        if scheme not in ("http", "https"):
            raise _refused("only http and https URLs can be fetched")
        host = host.rstrip(".")
        port = port or (443 if scheme == "https" else 80)
        if not host:
            raise _refused("the URL has no host")
        if ":" not in host and (not _HOSTNAME.fullmatch(host) or len(host) > 253):
            raise _refused("the URL's host name is not valid")
        host_header = (f"[{host}]" if ":" in host else host) + (f":{port}" if parts.port else "")
        try:  # a literal address, also the legacy forms such as 2130706433 or 0x7f.1
            literal = ipaddress.ip_address(host) if ":" in host else \
                ipaddress.ip_address(socket.inet_aton(host))
        except (ValueError, OSError):
            if ":" in host:
                raise _refused("the URL's host is not a valid address") from None
            literal = None
        if literal is not None:
            if not self.allow(literal):
                raise _refused(f"{host} is {refusal(literal) or 'not an allowed address'}")
            return scheme, str(literal), port, host, host_header
        if host in METADATA_NAMES or host == "localhost" or host.endswith(".localhost"):
            raise _refused(f"{host} is not a public host")
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolve(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise _failed(f"host {host} could not be resolved") from None
        if not addresses:
            raise _failed(f"host {host} could not be resolved")
        for ip in addresses:  # one bad address refuses the host (no rebinding games)
            if not self.allow(ip):
                raise _refused(f"{host} resolves to {refusal(ip) or 'an address that is not allowed'}")
        return scheme, str(addresses[0]), port, host, host_header

    def _get(self, url: str, deadline: float) -> tuple[int, str | None, bytes, str]:
        """One GET to a checked address: status, Location, body (limited), Content-Type."""
        scheme, ip, port, host, host_header = self._target(url)
        parts = urlsplit(url.strip())
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        left = lambda: deadline - time.monotonic()  # noqa: E731
        if left() <= 0:
            raise _failed("timed out")
        if scheme == "https":
            conn = HTTPSConnection(ip, port, timeout=min(self.connect_timeout, left()),
                                   server_hostname=host,
                                   cert_reqs="CERT_REQUIRED", ca_certs=self.ca_certs)
        else:
            conn = HTTPConnection(ip, port, timeout=min(self.connect_timeout, left()))
        try:
            conn.connect()
            conn.timeout = max(left(), 0.001)
            conn.sock.settimeout(conn.timeout)
            conn.request("GET", path, headers={"Host": host_header, "Accept": "image/*",
                                               "Accept-Encoding": "identity",
                                               "User-Agent": "llm-gateway-media/1"},
                         preload_content=False, decode_content=False)
            resp = conn.getresponse()
            if resp.status in REDIRECTS or not 200 <= resp.status < 300:
                return resp.status, resp.headers.get("Location"), b"", ""
            if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise _failed("the server sent an encoded (compressed) body")
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                raise _refused(f"the image is larger than {self.max_bytes} bytes")
            body = bytearray()
            while True:
                if left() <= 0:
                    raise _failed("timed out")
                conn.sock.settimeout(left())
                piece = resp.read1(min(_PIECE, self.max_bytes + 1 - len(body)), decode_content=False)
                if not piece:
                    return resp.status, None, bytes(body), resp.headers.get("Content-Type", "")
                body += piece
                if len(body) > self.max_bytes:
                    raise _refused(f"the image is larger than {self.max_bytes} bytes")
        except (ssl.SSLError, urllib3.exceptions.SSLError):
            raise _failed("the TLS handshake or certificate check failed") from None
        except urllib3.exceptions.NewConnectionError:  # (a subclass of the timeout error)
            raise _failed("the connection failed") from None
        except (socket.timeout, TimeoutError, urllib3.exceptions.TimeoutError):
            raise _failed("timed out") from None
        except (OSError, HTTPException, urllib3.exceptions.HTTPError):
            raise _failed("the connection failed") from None
        finally:
            conn.close()


default_fetcher = MediaFetcher.from_env()


def fetch_image(url: str) -> tuple[bytes, str]:
    """Bytes and media type (e.g. "image/png") of an http(s) image URL, fetched safely.
    Raises proxy.errors.InvalidRequest when refused or failed."""
    return default_fetcher.fetch_image(url)
