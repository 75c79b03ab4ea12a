"""How the client holds an answer to account: a total time for each attempt, a size limit, and where it may be redirected.

requests' ``timeout`` bounds each read from the socket, so a server sending a byte a second
never times out. Here every socket an attempt uses is watched by a ``Deadline``: when its time
is up the socket is shut down, which wakes a read blocked on it with end-of-file. The answer is
read streamed, counting decoded bytes, and refused past a limit: an endless body or a
compression bomb ends in a ``ClientError``, not in all the memory there is.

Once connected, a socket's timeout is the time the attempt has left (urllib3 would send the body
under the connect timeout). Interim answers (1xx) are skipped, a few at most; a 101 is refused.
A redirect is read as urllib3 will request it (``parse_url`` on the prepared URL), and a
``Location`` with a backslash or a control character is refused outright.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import threading
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from mysite.server.deadlines import SocketDeadline

MAX_REDIRECTS = 5
READ_PIECE = 64 * 1024  # decoded bytes asked of urllib3 at a time: a compressed piece inflates no further
MAX_INTERIM = 8  # 1xx answers before the final one: we never send Expect, so an honest server sends few
# What no Location we follow needs, and on which parsers disagree (WHATWG reads "\\" as "/").
_BAD_LOCATION = re.compile(r"[\\\x00-\x1f\x7f-\x9f]")
_current = threading.local()  # the Deadline of the attempt this thread is making, if any


class Deadline(SocketDeadline):
    """One attempt's clock; while it is entered, the sockets this thread's requests open are watched by it."""

    def __enter__(self) -> Deadline:
        _current.deadline = self
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        _current.deadline = None
        super().__exit__(*exc)


def _watch(sock: socket.socket | None) -> None:
    """Have the current attempt's deadline watch ``sock``, and bound each send and read on it by the time left."""
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)
        sock.settimeout(deadline.left())


class InterimAnswers(Exception):
    """The server sent only interim (1xx) answers, too many of them, or switched protocols (101)."""


class _FinalAnswer(http.client.HTTPResponse):
    """http.client's response, skipping every interim answer (it skips only 100, without a bound)."""

    def _read_status(self) -> tuple[str, int, str]:
        for _ in range(MAX_INTERIM + 1):
            version, code, reason = super()._read_status()  # type: ignore[misc]  # not in typeshed
            if code == 101:
                raise InterimAnswers("the server switched protocols (101) instead of answering")
            if not 100 <= code < 200:
                return version, code, reason
            http.client.parse_headers(self.fp)  # the interim answer's headers, dropped
        raise InterimAnswers(f"the server sent more than {MAX_INTERIM} interim (1xx) answers")


class _WatchedHTTP(HTTPConnection):
    """A connection the current attempt's deadline watches; the HTTPS one below shares its methods."""

    response_class = _FinalAnswer

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # within the connect timeout
        _watch(sock)  # before TLS: a handshake that drips is bounded too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection: connect() is not called again
            _watch(self.sock)
            deadline = getattr(_current, "deadline", None)
            if deadline is not None:
                self.timeout = deadline.left()  # what urllib3 sets the socket to, for sending the body
        super().request(*args, **kwargs)


class _WatchedHTTPS(_WatchedHTTP, HTTPSConnection):  # super() in _WatchedHTTP's methods: HTTPSConnection's
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections are watched by the current thread's ``Deadline``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        # A SOCKS manager's pools make SOCKS connections: left as they are (so not watched).
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class TooLarge(Exception):
    """The answer is longer than the limit."""


def read_body(response: requests.Response, limit: int) -> None:
    """Read ``response``'s body (decoded) into it, at most ``limit`` bytes; ``TooLarge`` past that.

    urllib3's errors (a dropped connection, a body that will not decode) pass up as they are.
    """
    declared = response.headers.get("Content-Length", "")
    if not response.headers.get("Content-Encoding") and declared.isascii() and declared.isdigit() \
            and int(declared) > limit:
        response.close()
        raise TooLarge(f"it declares {int(declared)} bytes")
    body = io.BytesIO()  # grows in place and hands over its buffer: one copy of the body
    read = 0
    try:
        for piece in response.raw.stream(READ_PIECE, decode_content=True):
            read += len(piece)
            if read > limit:
                raise TooLarge("")
            body.write(piece)
    except BaseException:
        response.close()
        raise
    response._content = body.getvalue()
    response._content_consumed = True  # type: ignore[attr-defined]
    response.raw.release_conn()


def same_site(source: str, target: str) -> bool:
    """Whether a redirect from ``source`` to ``target`` stays on the same host: the same scheme and port,
    or http upgraded to https on the same host, at 443 or the same port. Both are read as urllib3 reads
    them to connect."""
    try:
        a, b = parse_url(source), parse_url(target)
        if not a.host or a.host.lower() != (b.host or "").lower():
            return False
        same_port = _port(a.scheme, a.port) == _port(b.scheme, b.port)
    except (LocationParseError, ValueError):
        return False
    upgrade = (a.scheme, b.scheme) == ("http", "https") and (b.port in (None, 443) or b.port == a.port)
    return (a.scheme == b.scheme and same_port) or upgrade


def _port(scheme: str | None, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


class BadLocation(Exception):
    """A redirect's ``Location`` that is not a URL we can read one way only."""


def redirect_target(response: requests.Response) -> str:
    """The absolute URL a redirect points to, as requests will send it; ``BadLocation`` if it is malformed."""
    try:
        location = response.headers.get("Location", "").encode("latin-1").decode("utf-8")  # as requests reads it
    except UnicodeError:
        raise BadLocation("it is neither ASCII nor UTF-8") from None
    if _BAD_LOCATION.search(location):
        raise BadLocation("it has a backslash or a control character")
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(urljoin(str(response.url), location), None)
        return str(prepared.url)
    except (requests.RequestException, LocationParseError, ValueError, UnicodeError) as exc:
        raise BadLocation(f"it is not a valid URL ({exc})"[:200]) from None


BODY_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)
