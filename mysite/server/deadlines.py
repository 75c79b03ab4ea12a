"""Calls due at a time, all watched by one thread per process.

The header and upload deadlines each needed a timer per request; a ``threading.Timer`` is a
thread, started and ended for every request. Here one daemon thread keeps the calls in a
heap and sleeps until the earliest; a request's deadline costs a heap entry, and cancelling
it is a flag. The thread is started on first use in each process (after gunicorn's fork).
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any


class Deadline:
    """One call due at ``when`` (``time.monotonic``); ``cancel`` before then and it never runs."""

    __slots__ = ("when", "_call")

    def __init__(self, when: float, call: Callable[[], Any]) -> None:
        self.when = when
        self._call: Callable[[], Any] | None = call

    def cancel(self) -> None:
        self._call = None  # what it would have called (a socket, a request) is not held until ``when``

    def fire(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call()


class _Watch:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._pid = 0  # the process whose watch thread runs

    def after(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Deadline:
        deadline = Deadline(time.monotonic() + seconds, lambda: fn(*args))
        with self._wake:
            if self._pid != os.getpid():  # first use in this process
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="mysite-deadlines", daemon=True).start()
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
            if earliest is None or deadline.when < earliest:
                self._wake.notify()
        return deadline

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for deadline in due:
                try:
                    deadline.fire()
                except Exception:  # noqa: BLE001 - one failed call (a socket already closed) stops no other
                    pass


_watch = _Watch()


def _forked() -> None:
    global _watch
    _watch = _Watch()  # the parent's lock may have been held by its watch thread at the fork


os.register_at_fork(after_in_child=_forked)


def after(seconds: float, fn: Callable[..., Any], *args: Any) -> Deadline:
    """Call ``fn(*args)`` in ``seconds`` from the watch thread, unless cancelled first."""
    return _watch.after(seconds, fn, *args)


def shut(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    """Shut ``sock``'s reading side, or both (what a deadline does to a connection); one already gone is no error.

    Shut, not closed: a thread blocked in recv() on it wakes up with end-of-file.
    """
    try:
        sock.shutdown(how)
    except OSError:
        pass


class SocketDeadline:
    """One exchange's clock (a ``?url=`` fetch, a client's attempt): the sockets it watches are shut down
    when its time is up, which wakes a read blocked on them with end-of-file. A context manager."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> SocketDeadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()  # no thread outlives the exchange

    def left(self) -> float:
        """Seconds until the deadline (never below a millisecond, so a timeout stays a timeout)."""
        return max(self.ends - time.monotonic(), 0.001)

    def passed(self) -> bool:
        """Whether the time is up: a socket timeout cut to the time left can beat the timer to it."""
        return self.expired or time.monotonic() >= self.ends - 0.05

    def watch(self, sock: socket.socket) -> socket.socket:
        """Have ``sock`` shut down at the deadline (at once if it has passed)."""
        with self._lock:
            if not any(s is sock for s in self._sockets):
                self._sockets.append(sock)
            if self.expired:
                shut(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                shut(sock)
