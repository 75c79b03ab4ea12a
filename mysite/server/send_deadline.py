"""A bound on an answer the client does not read: WSGI middleware.

gunicorn writes each piece of an answer with a blocking ``sendall``; a client that never
reads leaves the thread blocked in it, the answer held in memory, for good. Here the answer
goes out in pieces of ``PIECE`` bytes, each of which must be taken by the client within
``seconds`` (a socket timeout on gunicorn's socket, set for the writing only): a client
reading at least ``PIECE / seconds`` bytes a second gets every byte, one that stops reading
is cut off and the thread and memory are free. Without gunicorn's socket (uWSGI, the
development server) the answer passes through as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
PIECE = 256 * 1024


class SendDeadline:
    """WSGI middleware: every ``PIECE`` of an answer must be read by the client within ``seconds``."""

    def __init__(self, app: WSGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = self.app(environ, start_response)
        sock = environ.get("gunicorn.socket")
        if sock is None:
            return result
        return _Pieces(result, sock, self.seconds)


class _Pieces:
    """The app's answer in pieces, each sent under the socket timeout; ``close`` passed on."""

    def __init__(self, result: Iterable[bytes], sock: Any, seconds: float) -> None:
        self._result, self._sock, self._seconds = result, sock, seconds

    def __iter__(self) -> Iterator[bytes]:
        for item in self._result:
            for start in range(0, len(item), PIECE):
                # Set before each piece: gunicorn sends it when this generator yields it.
                self._sock.settimeout(self._seconds)
                yield item[start:start + PIECE]

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()
