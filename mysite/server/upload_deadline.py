"""A deadline for receiving a request's body: an upload that arrives too slowly gets a JSON 408.

A client that sends its body a few bytes a second would otherwise hold a thread for as long
as it likes (each byte arrives inside any per-read timeout). This WSGI middleware starts a
clock at the first read of the body; when ``seconds`` pass before the body is in, a timer
shuts the socket's reading side (gunicorn puts the socket in ``environ["gunicorn.socket"]``),
the blocked read returns, and the read raises ``UploadTimeout``, which the app answers as
JSON 408. The socket's sending side stays open for that answer. Under servers that do not
expose the socket (uWSGI, the development server) the clock is checked between reads.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from mysite.errors import ApiError, BadRequest, Reason
from mysite.server import deadlines

try:  # gunicorn's errors for a body it cannot parse (a chunk size "zz"); other servers raise their own
    from gunicorn.http.errors import ParseException as _BodyParseError
except ImportError:  # pragma: no cover - uWSGI hosts need not have gunicorn
    _BodyParseError = ()

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class UploadTimeout(ApiError):
    code, status, reason = 408, "request timeout", Reason.TIMEOUT


class _TimedBody:
    """``wsgi.input`` under a deadline that starts at the first read."""

    def __init__(self, stream: Any, seconds: float, sock: socket.socket | None, length: int | None) -> None:
        self._stream, self._seconds, self._sock, self._length = stream, seconds, sock, length
        self._ends: float | None = None
        self._timer: deadlines.Deadline | None = None
        self._received = 0
        self.expired = False

    def _start(self) -> None:
        if self._ends is None:
            self._ends = time.monotonic() + self._seconds
            if self._sock is not None:
                self._timer = deadlines.after(self._seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        try:
            self._sock.shutdown(socket.SHUT_RD)  # type: ignore[union-attr]
        except OSError:
            pass

    def drain(self, most: int) -> None:
        """Read and drop what the app left of the body (at most ``most`` bytes), under the same deadline.

        gunicorn drains at most 64 KB of an unread body before taking the next request on a
        kept-alive connection; past that it closes the connection although its answer said
        keep-alive, and the client's next request on it fails. An app that answers an error
        before reading a large body (a bad parameter, a full queue) would cause just that.
        """
        if self._length is None or self.expired:
            return
        left = self._length - self._received
        if left <= 0 or left > most:
            return
        try:
            while left > 0 and self._read(self._stream.read, min(left, 64 * 1024)):
                left = self._length - self._received
        except Exception:  # noqa: BLE001 - the answer is sent; a client that went away is no error here
            pass

    def stop(self) -> None:
        """The body is in (or the request is over): no more deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _read(self, method: Callable[..., bytes], *args: Any) -> bytes:
        self._start()
        try:
            data = method(*args)
        except _BodyParseError as exc:
            self.stop()
            raise BadRequest(f"the request body's transfer encoding is broken ({type(exc).__name__}: "
                             f"{str(exc)[:80]})") from None
        except (OSError, ValueError):
            if self.expired:
                raise self._late() from None
            raise
        if self.expired or (self._ends is not None and time.monotonic() > self._ends):
            self.stop()
            raise self._late()
        self._received += len(data)
        if not data or (self._length is not None and self._received >= self._length):
            self.stop()
        return data

    def _late(self) -> UploadTimeout:
        return UploadTimeout(f"the request body did not arrive within {self._seconds:g} s "
                             f"({self._received} bytes came); send it faster (MYSITE_UPLOAD_DEADLINE)")

    def read(self, *args: Any) -> bytes:
        return self._read(self._stream.read, *args)

    def readline(self, *args: Any) -> bytes:
        return self._read(self._stream.readline, *args)

    def readlines(self, *args: Any) -> list[bytes]:
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self) -> Iterable[bytes]:
        while line := self.readline():
            yield line


class UploadDeadline:
    """WSGI middleware: every request body must arrive within ``seconds`` of its first read.

    Once the answer is sent, what the app left unread of a body up to ``drain`` bytes is read
    and dropped, so the connection can be kept alive as the answer said.
    """

    def __init__(self, app: WSGIApp, seconds: float, drain: int = 16 * 1024 * 1024) -> None:
        self.app, self.seconds, self.drain = app, seconds, drain

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH", "")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not (chunked or (length.isdigit() and int(length) > 0)):
            return self.app(environ, start_response)
        body = _TimedBody(environ["wsgi.input"], self.seconds, environ.get("gunicorn.socket"),
                          None if chunked else int(length))
        environ["wsgi.input"] = body
        try:
            result = self.app(environ, start_response)
        except BaseException:
            body.stop()
            raise
        def finish() -> None:
            body.drain(self.drain)
            body.stop()

        return _Closing(result, finish)


class _Closing:
    """The app's answer, with ``stop`` called when the server closes it (WSGI's ``close``)."""

    def __init__(self, result: Iterable[bytes], stop: Callable[[], None]) -> None:
        self._result, self._stop = result, stop

    def __iter__(self) -> Any:
        return iter(self._result)

    def close(self) -> None:
        self._stop()
        close = getattr(self._result, "close", None)
        if close is not None:
            close()
