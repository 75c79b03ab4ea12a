"""Fetch an image by URL without becoming a proxy into the host's network (SSRF).

Only http(s); the host is resolved and every address checked (loopback,
private, link-local incl. 169.254.169.254, multicast, reserved, ... are
refused); the connection goes to the address that was checked, so DNS cannot
change its answer in between; every redirect (at most 3) is checked again;
timeouts bound connecting and reading; reading stops past the upload limit.
Proxies from ``http_proxy``/``https_proxy`` are honoured (PythonAnywhere's
free accounts need one); the target host is still checked.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from mysite import __version__
from mysite.errors import BadRequest, TooLarge, Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2048
_REDIRECTS = {301, 302, 303, 307, 308}


class Refused(Exception):
    """The URL's host resolves to an address we will not connect to."""


def classify_address(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from (e.g. "private"), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return classify_address(embedded)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (tests patch this, never the network)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be connected to: public ones, plus explicitly allowed networks."""

    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def vet(self, host: str, port: int) -> list[IPAddress]:
        """The host's addresses if every one is allowed; else raise ``Refused``."""
        try:
            addresses = resolve_host(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            raise Unprocessable(f"the url's host {host!r} could not be resolved ({exc})") from None
        if not addresses:
            raise Unprocessable(f"the url's host {host!r} has no address")
        for ip in addresses:
            reason = classify_address(ip)
            if reason and not any(ip in net for net in self.allow):
                raise Refused(f"the url's host {host!r} resolves to {ip}, a {reason} address")
        return addresses


def _guarded_connection(base: type[HTTPConnection], policy: AddressPolicy) -> type[HTTPConnection]:
    class Guarded(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            # Connect to the address we checked, not to whatever a second lookup says.
            last: Exception | None = None
            for ip in policy.vet(self._dns_host, self.port):
                try:
                    return create_connection(
                        (str(ip), self.port), self.timeout, self.source_address, self.socket_options
                    )
                except socket.timeout as exc:
                    raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from exc
                except OSError as exc:
                    last = exc
            raise NewConnectionError(self, f"could not connect to {self.host}: {last}")

    return Guarded


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: AddressPolicy) -> None:
        http = type("Pool", (HTTPConnectionPool,), {"ConnectionCls": _guarded_connection(HTTPConnection, policy)})
        https = type("Pools", (HTTPSConnectionPool,), {"ConnectionCls": _guarded_connection(HTTPSConnection, policy)})
        self._pools = {"http": http, "https": https}
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools


@dataclass(frozen=True)
class Fetcher:
    """Downloads one image by URL under the site's limits."""

    max_bytes: int
    timeout: float = 10.0
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def fetch(self, url: str) -> bytes:
        """The body at ``url``; 400 for a URL we refuse, 413 if too large, 422 if it cannot be had."""
        policy = AddressPolicy(self.allow)
        deadline = time.monotonic() + 3 * self.timeout
        with requests.Session() as session:  # a fresh session: no cookies carried between requests
            session.mount("http://", _GuardedAdapter(policy))
            session.mount("https://", _GuardedAdapter(policy))
            session.headers["User-Agent"] = f"mysite/{__version__} (image fetch)"
            for _ in range(MAX_REDIRECTS + 1):
                host, port = _check_url(url)
                try:
                    # Checked here too: through a proxy, our connection goes to the proxy, not the host.
                    policy.vet(host, port)
                    response = session.get(url, stream=True, allow_redirects=False, timeout=(self.timeout, self.timeout))
                except Refused as exc:
                    raise BadRequest(f"refusing to fetch {_short(url)}: {exc}") from None
                except requests.Timeout:
                    raise Unprocessable(f"fetching {_short(url)} timed out") from None
                except requests.RequestException as exc:
                    raise Unprocessable(f"could not fetch {_short(url)}: {_reason(exc)}") from None
                with response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise Unprocessable(f"fetching {_short(url)} answered HTTP {response.status_code}, not an image")
                    return self._read(response, url, deadline)
        raise BadRequest(f"refusing to follow more than {MAX_REDIRECTS} redirects")

    def _read(self, response: requests.Response, url: str, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise TooLarge(f"{_short(url)} is {int(declared)} bytes; the limit is {self.max_bytes}")
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_content(64 * 1024):
                total += len(chunk)
                if total > self.max_bytes:
                    raise TooLarge(f"{_short(url)} is larger than the limit of {self.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise Unprocessable(f"fetching {_short(url)} took too long")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise Unprocessable(f"could not read {_short(url)}: {_reason(exc)}") from None
        return b"".join(chunks)


def _check_url(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL, or 400 saying what is wrong with it."""
    if len(url) > MAX_URL_LENGTH:
        raise BadRequest(f"the url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BadRequest(f"the url {_short(url)} is not valid: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise BadRequest(f"only http and https urls are fetched, not {parts.scheme or 'a url without scheme'!r}")
    if not parts.hostname:
        raise BadRequest(f"the url {_short(url)} has no host")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def _short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
