"""Fetch an image by URL without becoming a proxy into the host's network (SSRF).

Only http(s); the host is resolved and every address checked (loopback,
private, link-local incl. 169.254.169.254, multicast, reserved, and every
range of IANA's special-purpose registries, ``special_addresses.py``, are
refused); the connection goes to the address that was checked, so DNS cannot
change its answer in between; every redirect (at most 3) is checked again;
reading stops past the upload limit.

One parser: the URL is prepared exactly as it will be sent, and refused when
Python's and urllib3's parsers read a different host or port from it, or when
it has a backslash, whitespace, control characters or user info
(``http://169.254.169.254\\@allowed-host/`` is one URL to one parser and
another to the next). The host checked is the host in the request line.

One deadline for the whole fetch (resolving, connecting, headers, body):
when it passes, the fetch's sockets are shut down from a timer thread, so a
peer that drips a byte at a time cannot hold the worker past it.

One count of what the peer sends (``WireMeter``): every byte the fetch's
connections read, before http.client parses it (status lines and headers of
interim responses, chunk-size lines and their extensions, trailers, the body),
over every redirect, is held to what an honest answer needs; so is the number
of interim (1xx) responses, which http.client skips without limit. A peer fast
enough to keep the fetch parsing runs out of bytes long before the deadline.

Proxies from ``http_proxy``/``https_proxy`` are honoured (PythonAnywhere's
free accounts need one); the target host is still resolved and checked here
before the proxy is asked, and the proxy connection is bound by the deadline.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import HTTPError as TransportError
from urllib3.util import parse_url
from urllib3.util.connection import create_connection

from mysite import __version__
from mysite.errors import BadRequest, Reason, TooLarge, Unavailable, Unprocessable
from mysite.server import deadlines
from mysite.web.special_addresses import special_range

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2048
HEAD_BYTES = 64 * 1024  # one response's status line and headers, its interim responses' too
MAX_INTERIM = 8  # 1xx responses in a whole fetch: we never send Expect, so an honest peer sends none
# A body may arrive in at most one piece (a chunk, or what one read found) per this many bytes of the
# upload limit: each piece costs the same Python work however small, and an encoded body's pieces
# may decode to nothing, so a count of bytes alone would let one-byte chunks spin the fetch.
MIN_PIECE = 256
_REDIRECTS = {301, 302, 303, 307, 308}
# identity: an image gains nothing from gzip, and a body sent compressed anyway is decoded by
# urllib3 only as far as each read asks (urllib3 >= 2.7, requirements.txt).
_HEADERS = {"User-Agent": f"mysite/{__version__} (image fetch)", "Accept": "*/*", "Accept-Encoding": "identity"}
_READ_PIECE = 16 * 1024  # read1 returns what has arrived, up to this: the clock is checked between pieces
# Characters no URL we fetch needs, and on which parsers disagree (WHATWG turns "\\" into "/").
_FORBIDDEN = re.compile(r"[\\\s\x00-\x1f\x7f]")
# getaddrinfo cannot be interrupted: each lookup runs in its own thread, which the fetch stops
# waiting for at the deadline. A shared pool would queue the next fetch's lookup behind hanging
# ones; instead, at most this many may be in flight per process (a hanging one keeps its place).
MAX_PENDING_LOOKUPS = 32
_LOOKUPS = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)


class Refused(Exception):
    """The URL's host resolves to an address we will not connect to."""


def classify_address(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be fetched from (e.g. "private"), or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        reason = classify_address(embedded) if embedded is not None else None
        if reason:
            return reason
    special = special_range(ip)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        (f"special-purpose {special}", special is not None),
        ("not globally routable", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (tests patch this, never the network)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def resolve_within(host: str, port: int, within: float) -> list[IPAddress]:
    """``resolve_host`` waited for at most ``within`` seconds (422), in a thread of its own."""
    slots = _LOOKUPS  # released on the semaphore that was taken, whatever the global is by then
    if not slots.acquire(blocking=False):
        raise Unavailable(f"too many name lookups are pending ({MAX_PENDING_LOOKUPS}); try again shortly",
                          headers={"Retry-After": str(max(1, round(within)))}, reason=Reason.UNAVAILABLE)
    done = threading.Event()
    outcome: list[list[IPAddress] | BaseException] = []

    def lookup() -> None:
        try:
            outcome.append(resolve_host(host, port))
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)
        finally:
            slots.release()
            done.set()

    threading.Thread(target=lookup, name="mysite-resolve", daemon=True).start()
    if not done.wait(within):
        raise _failed(f"resolving the url's host {host!r} took longer than {within:.0f} s", Reason.TIMEOUT)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


Deadline = deadlines.SocketDeadline


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be connected to: public ones, plus explicitly allowed networks."""

    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def vet(self, host: str, port: int, within: float = 10.0) -> list[IPAddress]:
        """The host's addresses if every one is allowed; else raise ``Refused``."""
        try:
            addresses = resolve_within(host, port, within)
        except (socket.gaierror, UnicodeError) as exc:
            raise _failed(f"the url's host {host!r} could not be resolved ({exc})") from None
        if not addresses:
            raise _failed(f"the url's host {host!r} has no address")
        for ip in addresses:
            reason = classify_address(ip)
            if reason and not any(ip in net for net in self.allow):
                raise Refused(f"the url's host {host!r} resolves to {ip}, a {reason} address")
        return addresses


class WireMeter:
    """Every byte one fetch reads from its peers, and its interim responses, held to what an honest answer needs.

    The whole fetch may read the upload limit, a sixteenth more for chunk framing, and ``HEAD_BYTES``
    for each response's head (the answer and each redirect); any one head at most ``HEAD_BYTES``; the
    body in at most one piece per ``MIN_PIECE`` bytes of the limit.
    """

    def __init__(self, max_bytes: int, url: str) -> None:
        self.limit = max_bytes + max_bytes // 16 + (MAX_REDIRECTS + 1) * HEAD_BYTES
        self.most_pieces = max(1, max_bytes // MIN_PIECE)
        self.url = url  # the one being asked for, named in refusals
        self.read = 0
        self.interim = 0
        self.pieces = 0
        self._head_ends: int | None = None

    def spend(self, count: int) -> None:
        """Count ``count`` bytes just read; past a limit, refuse the answer (413 or 422)."""
        self.read += count
        if self._head_ends is not None and self.read > self._head_ends:
            raise _failed(f"{_short(self.url)} answered with a status line and headers (interim responses "
                          f"included) longer than {HEAD_BYTES} bytes")
        if self.read > self.limit:
            raise TooLarge(f"{_short(self.url)} sent more than {self.limit} bytes (headers, chunk framing and "
                           "body), more than an image under the upload limit needs")

    @contextmanager
    def head(self) -> Iterator[None]:
        """While a response's head is read: at most ``HEAD_BYTES`` more."""
        self._head_ends = self.read + HEAD_BYTES
        try:
            yield
        finally:
            self._head_ends = None

    def status(self, code: int) -> None:
        """Count a status line read; past ``MAX_INTERIM`` interim responses, refuse the answer (422)."""
        if 100 <= code < 200:
            self.interim += 1
            if self.interim > MAX_INTERIM:
                raise _failed(f"{_short(self.url)} sent more than {MAX_INTERIM} interim (1xx) responses")

    def piece(self) -> None:
        """Count a piece read (a line, a chunk, a read of body); past ``most_pieces``, refuse the answer (422)."""
        self.pieces += 1
        if self.pieces > self.most_pieces:
            raise _failed(f"{_short(self.url)} sent its answer in more than {self.most_pieces} pieces (lines, "
                          f"chunks or reads of under {MIN_PIECE} bytes on average)")


class _MeteredReader(io.RawIOBase):
    """A socket's reading side whose every byte is counted before it is buffered and parsed."""

    def __init__(self, raw: io.RawIOBase, meter: WireMeter) -> None:
        super().__init__()
        self._raw = raw
        self._meter = meter

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        count = self._raw.readinto(buffer)
        if count:
            self._meter.spend(count)
        return count

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        if not self.closed:
            self._raw.close()  # the socket is closed only once its last reader is
        super().close()


class _Lines(io.BufferedReader):
    """A buffered reader that counts each line read as a piece: a chunked body's trailer is discarded a line
    at a time, each line a step of Python however short, and no count of bytes bounds the lines of two."""

    def __init__(self, raw: io.RawIOBase, meter: WireMeter) -> None:
        super().__init__(raw)
        self._meter = meter

    def readline(self, size: int | None = -1) -> bytes:
        self._meter.piece()
        return super().readline(size)


def _metered_response(meter: WireMeter) -> type[http.client.HTTPResponse]:
    """http.client's response, reading through ``meter`` and counting its status lines."""

    class Metered(http.client.HTTPResponse):
        def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
            super().__init__(sock, *args, **kwargs)
            self.fp.close()  # http.client's own reader, replaced before a byte is read through it
            self.fp = _Lines(_MeteredReader(sock.makefile("rb", buffering=0), meter), meter)

        def begin(self) -> None:
            with meter.head():
                super().begin()

        # http.client loops over 100 Continue here with no limit; urllib3 calls it too (its CONNECT).
        # Other interim responses (103 Early Hints) it would take for the answer: skip them as it skips 100.
        def _read_status(self) -> tuple[str, int, str]:
            while True:  # bounded: the meter refuses past MAX_INTERIM, and counts every header byte
                version, code, reason = super()._read_status()  # type: ignore[misc]  # not in typeshed
                meter.status(code)
                if not 100 < code < 200 or code == 101:
                    return version, code, reason
                http.client.parse_headers(self.fp)

        # urllib3 reads the body through here, a chunk at most at a time, also while decoding finds nothing.
        def read1(self, n: int = -1) -> bytes:
            data = super().read1(n)
            if data:
                meter.piece()
            return data

    return Metered


def _connection(base: type[HTTPConnection], deadline: Deadline, policy: AddressPolicy | None,
                meter: WireMeter) -> type[HTTPConnection]:
    """``base`` whose sockets the deadline watches and whose answers the meter counts; with a policy,
    connected only to vetted addresses."""

    class Watched(base):  # type: ignore[valid-type, misc]
        response_class = _metered_response(meter)

        def _new_conn(self) -> socket.socket:
            if policy is None:  # the proxy the operator configured: not vetted, but timed
                self.timeout = min(self.timeout, deadline.left())  # type: ignore[has-type]  # base is a variable
                return deadline.watch(super()._new_conn())
            # Connect to the address we checked, not to whatever a second lookup says.
            last: Exception | None = None
            for ip in policy.vet(self._dns_host, self.port, deadline.left()):
                try:
                    sock = create_connection(
                        (str(ip), self.port), min(self.timeout, deadline.left()), self.source_address,
                        self.socket_options,
                    )
                    return deadline.watch(sock)
                except TimeoutError as exc:
                    raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from exc
                except OSError as exc:
                    last = exc
            raise NewConnectionError(self, f"could not connect to {self.host}: {last}")

    return Watched


def _pools(deadline: Deadline, policy: AddressPolicy | None, meter: WireMeter) -> dict[str, type[HTTPConnectionPool]]:
    return {
        "http": type("Pool", (HTTPConnectionPool,),
                     {"ConnectionCls": _connection(HTTPConnection, deadline, policy, meter)}),
        "https": type("Pools", (HTTPSConnectionPool,),
                      {"ConnectionCls": _connection(HTTPSConnection, deadline, policy, meter)}),
    }


class _GuardedAdapter(HTTPAdapter):
    """Direct connections go to vetted addresses only; every connection, the proxy's too, is timed and metered."""

    def __init__(self, policy: AddressPolicy, deadline: Deadline, meter: WireMeter) -> None:
        self._direct = _pools(deadline, policy, meter)
        self._proxied = _pools(deadline, None, meter)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._direct

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = self._proxied
        return manager


@dataclass(frozen=True)
class Fetcher:
    """Downloads one image by URL under the site's limits."""

    max_bytes: int
    timeout: float = 10.0
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    deadline: float = 20.0
    # Called with the most the image may be, before its first byte is read (the worker's room for bodies).
    hold: Callable[[int], None] = lambda length: None

    def fetch(self, url: str) -> bytes:
        """The body at ``url``; 400 for a URL we refuse, 413 if too large, 422 if it cannot be had in time."""
        policy = AddressPolicy(self.allow)
        with Deadline(self.deadline) as clock:
            try:
                return self._fetch(url, policy, clock)
            except (requests.RequestException, TransportError, OSError, ValueError) as exc:
                if clock.passed():
                    raise self._late(url) from None
                if isinstance(exc, requests.Timeout | ReadTimeoutError | socket.timeout):
                    raise _failed(f"fetching {_short(url)} timed out", Reason.TIMEOUT) from None
                raise _failed(f"could not fetch {_short(url)}: {_reason(exc)}") from None

    def _fetch(self, url: str, policy: AddressPolicy, clock: Deadline) -> bytes:
        # The adapter alone, not a Session: Session.send reads the whole body of a redirect it does not
        # follow (decompressed, unbounded) to free its connection. Here every body is read by _read or
        # closed unread. No Session also means no cookies carried over and no ~/.netrc credentials for
        # a host a stranger names; proxies are taken from the environment below (no_proxy included).
        meter = WireMeter(self.max_bytes, url)
        adapter = _GuardedAdapter(policy, clock, meter)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                url, host, port = check_url(url)
                meter.url = url
                proxies = requests.utils.get_environ_proxies(url)
                try:
                    # Checked here too: through a proxy, our connection goes to the proxy, not the host.
                    policy.vet(host, port, clock.left())
                    response = adapter.send(requests.Request("GET", url, headers=_HEADERS).prepare(), stream=True,
                                            proxies=proxies, timeout=(min(self.timeout, clock.left()), self.timeout))
                except Refused as exc:
                    raise _refused(f"refusing to fetch {_short(url)}: {exc}") from None
                with response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise _failed(f"fetching {_short(url)} answered HTTP {response.status_code}, not an image")
                    return self._read(response, url, clock)
        finally:
            adapter.close()
        raise _refused(f"refusing to follow more than {MAX_REDIRECTS} redirects")

    def _read(self, response: requests.Response, url: str, clock: Deadline) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise TooLarge(f"{_short(url)} is {int(declared)} bytes; the limit is {self.max_bytes}")
        self.hold(int(declared) if declared.isdigit() else self.max_bytes)
        chunks: list[bytes] = []
        total = 0
        while True:
            # read1: whatever has arrived (a full-size read would wait for all of it).
            chunk = response.raw.read1(_READ_PIECE, decode_content=True)
            if clock.expired:
                raise self._late(url)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > self.max_bytes:
                raise TooLarge(f"{_short(url)} is larger than the limit of {self.max_bytes} bytes")
            chunks.append(chunk)

    def _late(self, url: str) -> Unprocessable:
        return _failed(f"fetching {_short(url)} took longer than the {self.deadline:g} s deadline "
                       "(MYSITE_URL_DEADLINE)", Reason.TIMEOUT)


def _refused(message: str) -> BadRequest:
    return BadRequest(message, reason=Reason.URL_REFUSED)


def _failed(message: str, reason: Reason = Reason.URL_FAILED) -> Unprocessable:
    return Unprocessable(message, reason=reason)


def check_url(url: str) -> tuple[str, str, int]:
    """The URL as it will be sent, with the host and port it names; 400 saying what is wrong with it.

    The URL is prepared as requests will send it (IDNA host, quoted path), then read by both
    Python's and urllib3's parsers: the host that is checked must be the host that is asked for.
    """
    if len(url) > MAX_URL_LENGTH:
        raise _refused(f"the url is longer than {MAX_URL_LENGTH} characters")
    url = url.strip()
    if _FORBIDDEN.search(url):
        raise _refused("the url has a backslash, whitespace or a control character; send it percent-encoded")
    try:
        parts = urlsplit(url)
        _ = parts.port  # reading it checks it (a port out of range is a ValueError)
    except ValueError as exc:
        raise _refused(f"the url {_short(url)} is not valid: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _refused(f"only http and https urls are fetched, not {parts.scheme or 'a url without scheme'!r}")
    if "@" in parts.netloc:
        raise _refused("urls with a user name or password are not fetched")
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)
        sent = str(prepared.url)
        ours, theirs = urlsplit(sent), parse_url(sent)
        port = ours.port
    except (requests.RequestException, LocationParseError, ValueError, UnicodeError) as exc:
        raise _refused(f"the url {_short(url)} is not valid: {_reason(exc)}") from None
    if not ours.hostname:
        raise _refused(f"the url {_short(url)} has no host")
    default = 443 if ours.scheme == "https" else 80
    theirs_host = (theirs.host or "").strip("[]").lower()
    if (ours.scheme, ours.hostname, port or default) != (theirs.scheme, theirs_host, theirs.port or default):
        raise _refused(f"the url {_short(url)} is read differently by different parsers; not fetched")
    return sent, ours.hostname, port or default


def _short(url: str, limit: int = 120) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
