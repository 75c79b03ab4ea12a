"""How the client holds an answer to account: a total time for each attempt, a size limit, and where it may be redirected.

requests' ``timeout`` bounds each read from the socket, so a server sending a byte a second
never times out. Here every socket an attempt uses is watched by a ``Deadline``: when its time
is up the socket is shut down, which wakes a read blocked on it with end-of-file. The answer is
read streamed, counting decoded bytes, and refused past a limit: an endless body or a
compression bomb ends in a ``ClientError``, not in all the memory there is.
"""

from __future__ import annotations

import io
import socket
import threading
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from mysite.server.deadlines import SocketDeadline

MAX_REDIRECTS = 5
READ_PIECE = 64 * 1024  # decoded bytes asked of urllib3 at a time: a compressed piece inflates no further
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
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _WatchedHTTP(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # before TLS: a handshake that drips is bounded too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection: connect() is not called again
        super().request(*args, **kwargs)


class _WatchedHTTPS(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)


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
        if hasattr(manager, "pool_classes_by_scheme") and manager.pool_classes_by_scheme is not _WATCHED_POOLS:
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
    or http upgraded to https on the same host."""
    a, b = urlsplit(source), urlsplit(target)
    if not a.hostname or a.hostname.lower() != (b.hostname or "").lower():
        return False
    try:
        same_port = _port(a.scheme, a.port) == _port(b.scheme, b.port)
    except ValueError:
        return False
    return (a.scheme == b.scheme and same_port) or (a.scheme, b.scheme) == ("http", "https")


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


def redirect_target(response: requests.Response) -> str:
    """The absolute URL a redirect points to."""
    return urljoin(response.url, response.headers.get("Location", ""))


BODY_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)
