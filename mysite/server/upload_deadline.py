"""Receiving a request's body before the app sees it: at a rate, into a temporary file.

A client that sends its body a few bytes a second would otherwise hold a thread for as long as it
likes (each byte arrives inside any per-read timeout), and the memory the app keeps for that body
while it waits. This WSGI middleware reads the whole body first: the clock starts at its first
read, and the body must be in within ``seconds``, plus a second for every ``rate`` bytes that
have arrived, so a slow but steady upload (a phone on a poor link) gets through and a trickle
does not (Apache's ``RequestReadTimeout body=20,MinRate=...`` works so). When the time is up a
timer shuts the socket's reading side (gunicorn puts the socket in ``environ["gunicorn.socket"]``)
and the blocked read returns; under servers that do not expose the socket (uWSGI, the development
server) the clock is checked between reads.

What arrives goes to a temporary file (in memory while small), counted in a room of its own
(``spool``) until the app counts it in the room it keeps for bodies (``memory.Room``), and the app
reads it from there. So the app's room is taken only for bodies that are all in: connections that
send nothing hold none of it. When the body cannot be had (too slow, too long, a broken chunk, no
room), the app gets an empty body and the error under ``BODY_ERROR`` in its environ, and answers
it as JSON. A body refused for want of room (the spool, or a full temporary folder) gives back what
it held at once; after the answer the rest of it is read and dropped under the same deadline, so
the connection lives on (closing it while the client, or nginx, is still sending loses the answer
to a reset or nginx's 502). After any other error the answer is the connection's last.
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from io import BytesIO
from typing import IO, Any

from mysite.errors import ApiError, BadRequest, Busy, Reason
from mysite.server import deadlines
from mysite.server.memory import Room

try:  # gunicorn's errors for a body it cannot parse (a chunk size "zz"); other servers raise their own
    from gunicorn.http.errors import ParseException as _BodyParseError
except ImportError:  # pragma: no cover - uWSGI hosts need not have gunicorn
    _BodyParseError = ()

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
BODY_ERROR = "mysite.body_error"  # environ key: why the body could not be received
BODY_ROOM = "mysite.body_room"  # environ key: call once the body is counted in the app's room (memory.Room)
BODY_DONE = "mysite.body_done"  # environ key: call when the request ends: the body's file is closed
# environ key: call before the answer to make it say "Connection: close" (the server's; gunicorn drops an
# app's Connection header). Called when the connection will end with the answer, the body not read to its end.
LAST_ANSWER = "mysite.last_answer"
_IN_MEMORY = 64 * 1024  # a body up to this stays in memory; a longer one goes to a file
# How long the rest of a body declared longer than the app takes is read and dropped after its 413
# (nginx's lingering_time): a client that writes all before it reads then gets the answer. Reading
# costs the worker CPU by the byte, so no more than LINGER_BODIES times the longest body is read.
LINGER = 30.0
LINGER_BODIES = 4
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


class UploadTimeout(ApiError):
    code, status, reason = 408, "request timeout", Reason.TIMEOUT


class _TimedBody:
    """``wsgi.input`` under a deadline that starts at the first read and grows with what arrives."""

    def __init__(self, stream: Any, seconds: float, rate: float, sock: socket.socket | None,
                 length: int | None) -> None:
        self._stream, self._seconds, self._rate, self._sock = stream, seconds, rate, sock
        self.length = length
        self._started: float | None = None
        self._timer: deadlines.Deadline | None = None
        self._stopped = False
        self.ended = False  # all of it read
        self.received = 0
        self.expired = False

    def _ends(self) -> float:
        assert self._started is not None
        return self._started + self._seconds + self.received / self._rate

    def _start(self) -> None:
        if self._started is None:
            self._started = time.monotonic()
            if self._sock is not None:
                self._timer = deadlines.after(self._seconds, self._expire)

    def _expire(self) -> None:
        if self._stopped:
            return
        left = self._ends() - time.monotonic()
        if left > 0:  # what arrived meanwhile bought more time
            self._timer = deadlines.after(left, self._expire)
            return
        self._expire_now()

    def _expire_now(self) -> None:
        self.expired = True
        deadlines.shut(self._sock, socket.SHUT_RD)  # type: ignore[arg-type]

    def stop(self) -> None:
        """The body is in (or the request is over): no more deadline."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def drain(self, most: float, seconds: float = math.inf) -> None:
        """Read and drop what the app left of the body (at most ``most`` bytes, for ``seconds`` at most), under
        the same deadline; close the connection once the answer is sent when that cannot be done (too long,
        too slow, the client gone).

        gunicorn drains at most 64 KB of an unread body before taking the next request on a
        kept-alive connection; past that it closes the connection although its answer said
        keep-alive, and the client's next request on it fails. A client that writes its whole body
        before it reads (Python's http.client, so requests) sees the answer only once all is read.
        """
        if self.length is None:  # chunked: its end shows only as a read that returns nothing, a byte more
            end = self.received + most + 1
        else:
            end = self.length if self.length - self.received <= most else self.received
        ends = time.monotonic() + seconds
        cut = deadlines.after(seconds, self._expire_now) if self._sock is not None and seconds < math.inf else None
        try:
            while not self.ended and not self.expired and self.received < end and time.monotonic() < ends:
                if not self.read(int(min(64 * 1024, end - self.received))):
                    break
        except Exception:  # noqa: BLE001 - the answer is sent; a client that went away is no error here
            pass
        finally:
            if cut is not None:
                cut.cancel()
        if not self.ended:
            self.end_connection()

    def end_connection(self) -> None:
        """Close the connection once the answer is sent: what the client sends next is the rest of a body
        that was not read, and must not be taken for a request of its own.

        Closed with a reset: a socket shut and closed while the client still sends keeps its window
        full, and the client's write would wait on it until the kernel gives the socket up.
        """
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            deadlines.shut(self._sock)

    def read(self, size: int = -1) -> bytes:
        self._start()
        try:
            data: bytes = self._stream.read(size)
        except _BodyParseError as exc:
            self.stop()
            raise BadRequest(f"the request body's transfer encoding is broken ({type(exc).__name__}: "
                             f"{str(exc)[:80]})") from None
        except (OSError, ValueError):
            if self.expired:
                raise self._late() from None
            raise
        if self.expired or time.monotonic() > self._ends():
            self.stop()
            raise self._late()
        self.received += len(data)
        if not data or (self.length is not None and self.received >= self.length):
            self.ended = True
            self.stop()
        return data

    def _late(self) -> UploadTimeout:
        took = time.monotonic() - (self._started or time.monotonic())
        return UploadTimeout(
            f"the request body came too slowly ({self.received} bytes in {took:.0f} s): the server waits "
            f"{self._seconds:g} s for a body" + (f", and a second more for every {self._rate / 1024:g} KB that "
                                                  "arrives" if self._rate < math.inf else " sent in chunks") +
            "; send it faster (MYSITE_UPLOAD_DEADLINE, MYSITE_UPLOAD_MIN_RATE_KB)")


class UploadDeadline:
    """WSGI middleware: every request body is received whole, at ``rate`` bytes a second after ``seconds``,
    into a temporary file counted in ``spool``, before the app runs.

    ``longest``: the longest body the app takes; one declared longer is left to the app, which refuses it
    unread, and it is read and dropped after the answer for ``LINGER`` seconds and ``LINGER_BODIES`` times
    ``longest`` bytes at most, so the connection can be kept alive as the answer said (a proxy still
    sending it gets the answer, not a broken pipe).
    So is the body of a request the server refused before the app (``BODY_ERROR`` already set); the
    rest of one refused partway for want of room is, up to ``drain`` bytes.
    ``too_long``: the error for a chunked body that runs past ``longest``.
    """

    def __init__(self, app: WSGIApp, seconds: float, rate: float, spool: Room, longest: int,
                 too_long: Callable[[], ApiError], drain: int = 16 * 1024 * 1024) -> None:
        self.app, self.seconds, self.rate, self.spool = app, seconds, rate, spool
        self.longest, self.too_long, self.drain = longest, too_long, drain
        # A read returns once it has its piece, so a piece is what a body may be behind its rate: a
        # small part of what the deadline allows (64 KB with the defaults, less with short deadlines).
        self.piece = int(max(1024, min(64 * 1024, rate * seconds / 8)))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH", "")
        length = length if length.isascii() and length.isdigit() else ""  # int("²") fails: a server's to refuse
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not (chunked or (length and int(length) > 0)):
            return self.app(environ, start_response)
        # A chunked body costs gunicorn's parser by its chunks, not its bytes: its time does not grow.
        body = _TimedBody(environ["wsgi.input"], self.seconds, math.inf if chunked else self.rate,
                          environ.get("gunicorn.socket"), None if chunked else int(length))

        def drain() -> None:
            body.drain(self.drain)
            body.stop()

        def linger() -> None:
            body.drain(LINGER_BODIES * self.longest, LINGER)
            body.stop()

        if BODY_ERROR in environ or (not chunked and int(length) > self.longest):  # refused before it is read
            environ["wsgi.input"] = body
            if not chunked and int(length) > LINGER_BODIES * self.longest:  # too long to read: reset after
                _last_answer(environ)
            return self._run(environ, start_response, linger)
        received = self._receive(environ, body)
        environ[BODY_ROOM], environ[BODY_DONE] = received.give_room, received.release

        def finish() -> None:
            received.release()
            if received.refused:  # for want of room, the stream whole: its rest is dropped, the connection kept
                drain()
            elif not body.ended:  # an error before the body's end: the answer is the connection's last
                body.end_connection()

        return self._run(environ, start_response, finish)

    def _run(self, environ: dict[str, Any], start_response: Callable[..., Any],
             finish: Callable[[], Any]) -> Iterable[bytes]:
        try:
            result = self.app(environ, start_response)
        except BaseException:
            finish()
            raise
        return _Closing(result, finish)

    def _receive(self, environ: dict[str, Any], body: _TimedBody) -> _Received:
        """Read the whole body into a temporary file and hand it to the app in place of the socket."""
        file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)
        taken = 0

        def let_go() -> None:
            file.close()
            self.spool.give(taken)

        try:
            while body.length is None or body.received < body.length:
                data = self._piece(body)
                if not data:
                    break
                self.spool.take(len(data), held=taken, wait=0)
                taken += len(data)
                try:
                    file.write(data)
                except OSError as exc:  # the temporary folder is full
                    raise Busy(f"the server has no room to hold the request body ({exc.strerror}); retry in a "
                               "moment", headers={"Retry-After": "1"}) from None
        except Busy as exc:  # no room: what came is let go now, the rest drained after the answer, in time
            let_go()
            if body.length is not None and body.length - body.received > self.drain:
                _last_answer(environ)
            return _refused(environ, exc, drains=True)
        except ApiError as exc:  # the body is not read to its end: the connection ends with the answer
            body.stop()
            let_go()
            _last_answer(environ)
            return _refused(environ, exc)
        except BaseException:  # a bug, or the worker stopping: the room is given back all the same
            body.stop()
            let_go()
            raise
        body.stop()
        file.seek(0)
        _hand_over(environ, file, body.received)
        return _Received(file, lambda: self.spool.give(taken))

    def _piece(self, body: _TimedBody) -> bytes:
        """The body's next piece; empty at a chunked body's end; an ``ApiError`` when it cannot be had."""
        left = self.piece if body.length is None else body.length - body.received
        try:
            data = body.read(min(self.piece, left))
        except (OSError, ValueError):  # the client went away, or the server's stream gave up
            raise BadRequest(f"the connection failed after {body.received} bytes of the body") from None
        if not data and body.length is not None:
            raise BadRequest(f"the request body ended after {body.received} of the {body.length} bytes its "
                             "Content-Length gave")
        if body.received > self.longest:
            raise self.too_long()
        return data


def _last_answer(environ: dict[str, Any]) -> None:
    close = environ.get(LAST_ANSWER)
    if close is not None:
        close()


def _refused(environ: dict[str, Any], error: ApiError, drains: bool = False) -> _Received:
    """The app gets an empty body and ``error`` to answer; ``drains``: the rest of the body may be read and dropped."""
    environ[BODY_ERROR] = error
    empty = BytesIO()
    _hand_over(environ, empty, 0)
    return _Received(empty, lambda: None, refused=drains)


def _hand_over(environ: dict[str, Any], file: IO[bytes], length: int) -> None:
    """The app reads ``file`` as the request's body: ``length`` bytes, no longer chunked."""
    environ["wsgi.input"], environ["CONTENT_LENGTH"] = file, str(length)
    environ.pop("HTTP_TRANSFER_ENCODING", None)


class _Received:
    """A received body's file and its share of the spool's room, each let go once."""

    def __init__(self, file: IO[bytes], give: Callable[[], None], refused: bool = False) -> None:
        self._file, self._give = file, give
        self._given = False
        self.refused = refused  # for want of room, partway: the rest of the body is drained after the answer

    def give_room(self) -> None:
        """The body's memory is counted elsewhere now (the app's room for bodies): give its share back."""
        if not self._given:
            self._given = True
            self._give()

    def release(self) -> None:
        """The request is over: close the file (it has no name: nothing is left of it) and give the room back."""
        self.give_room()
        self._file.close()


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
