"""The process's resident memory, and giving freed memory back to the system.

glibc keeps freed blocks in its heaps for reuse: after a request that decoded a large
image, the worker's RSS stays where the peak left it unless the heaps are trimmed
(``python -m bench.memory`` shows by how much). ``malloc_trim`` does that; it exists only in glibc,
so elsewhere (musl, macOS) ``trim`` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mysite.errors import Busy

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _libc(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


_TRIM = _libc("malloc_trim")
if _TRIM is not None:
    _TRIM.argtypes = [ctypes.c_size_t]
    _TRIM.restype = ctypes.c_int
_MALLOPT = _libc("mallopt")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
MB = 1024 * 1024
# Allocations this large get a map of their own, unmapped when freed: glibc's largest automatic threshold.
OWN_MAP = 32 * 1024 * 1024
NEVER = 2**31 - 1  # mallopt takes a C int
# A web worker keeps up to WEB_KEEP of freed heap for its next request and trims past it (the Releaser,
# web/api.py); buffers of WEB_OWN_MAP or more (large uploads) get maps of their own.
WEB_KEEP = 8 * 1024 * 1024
WEB_OWN_MAP = 4 * 1024 * 1024


def limit_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` malloc heaps, as ``MALLOC_ARENA_MAX`` would (threads otherwise get a heap each, up
    to 8 per CPU, and memory freed in one is not reused by another); call before threads start."""
    return bool(_MALLOPT(M_ARENA_MAX, arenas)) if _MALLOPT is not None else False


def hold_heap(most: int = NEVER, own_map: int = OWN_MAP) -> bool:
    """Keep up to ``most`` bytes of freed heap (glibc trims beyond it; by default never, until ``trim``), so
    the next request reuses it instead of faulting fresh pages in; allocations of ``own_map`` bytes or more
    get (and give back) maps of their own. Whether glibc took it.

    Left to itself, glibc moves both thresholds with the sizes freed and trims the heap a large request
    grew as it ends, so the next one faults the same pages in again."""
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(M_MMAP_THRESHOLD, own_map)) and bool(_MALLOPT(M_TRIM_THRESHOLD, most))


def rss() -> int:
    """This process's resident set size in bytes (0 where /proc is absent)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def status(field: str) -> int | None:
    """A size from this process's ``/proc/self/status`` (``VmData``, ``RssAnon``…) in bytes; None where absent."""
    key = field.encode() + b":"
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def anonymous() -> int:
    """This process's resident anonymous memory in bytes (``RssAnon``): its heap and the pages it no longer
    shares with the parent it was forked from; 0 where /proc is absent."""
    return status("RssAnon") or 0


def trim() -> bool:
    """Return free heap memory to the system; whether anything was released."""
    return bool(_TRIM(0)) if _TRIM is not None else False


class Releaser:
    """Gives a worker's memory back as its requests end.

    After a request that grew the process by more than ``above`` bytes; and, since with threads
    one request's growth shows in another's figures, whenever the last request in flight ends
    with the process more than ``above`` over where the last trim left it.
    """

    def __init__(self, above: int) -> None:
        self.above = above
        self._lock = threading.Lock()
        self._in_flight = 0
        self._floor = rss()

    def begin(self) -> int:
        """A request starts: the RSS to compare with at its end."""
        with self._lock:
            self._in_flight += 1
        return rss()

    def end(self, start: int) -> None:
        """A request's answer has been sent: trim if it, or the requests that ran beside it, left memory behind."""
        now = rss()
        with self._lock:
            self._in_flight -= 1
            idle = self._in_flight == 0
        if now - start > self.above or (idle and now - self._floor > self.above):
            trim()
            if idle:
                self._floor = rss()


class _ClientParts:
    """What each client (as the server names it) holds of a room, and whether it is within its part."""

    refused: Callable[[], None]  # counts each 503 the room answers (set by the room)

    def __init__(self, per_client: int | None) -> None:
        self.per_client = per_client
        self._by_client: dict[str, int] = {}

    def held_by(self, client: str) -> int:
        """What ``client``'s requests hold of the room."""
        return self._by_client.get(client, 0)

    def _under_part(self, client: str, more: int = 0) -> bool:
        """Whether ``client`` may hold ``more`` bytes more (or, with ``more`` 0, start another share): within
        its part, or anything while it holds nothing."""
        kept = self._by_client.get(client, 0)
        if not self.per_client or kept <= 0:
            return True
        return kept + more <= self.per_client if more else kept < self.per_client

    def _busy_because(self, why: str) -> Busy:
        """The 503 that says ``why`` the room is full, counted."""
        self.refused()
        return Busy(f"the server is busy{why}; retry in a second", headers={"Retry-After": "1"})

    def _count(self, client: str | None, change: int) -> None:
        if client is None or not self.per_client or not change:
            return
        kept = self._by_client.get(client, 0) + change
        if kept > 0:
            self._by_client[client] = kept
        else:
            self._by_client.pop(client, None)


class Room(_ClientParts):
    """What the request bodies in flight in one worker may cost together, in bytes.

    A request takes its share before the memory is taken and gives it back when it is free again.
    Threads are many (a slow upload, or a slow reader, holds one), so without this the memory they
    hold would have no bound.
    One that finds too little room waits its turn, first come first served, for at most ``wait``
    seconds and behind at most ``waiting`` others (then a 503, leaving threads for ``/healthz``).
    A share larger than the whole room is taken when the request is alone in it.
    With ``per_client``, a client (as the server names it) whose requests hold that much takes no more
    until some is given back: it waits outside the turns (any one share, while it holds nothing).
    """

    def __init__(self, size: int, wait: float, waiting: int = 32, what: str = "request bodies",
                 refused: Callable[[], None] = lambda: None, per_client: int | None = None) -> None:
        super().__init__(per_client)
        self.size, self.wait, self.waiting, self.what, self.refused = size, wait, waiting, what, refused
        self._client_turns: dict[str, deque[object]] = {}
        self._used = 0
        self._turns: deque[object] = deque()
        self._changed = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def take(self, share: int, held: int = 0, wait: float | None = None, client: str | None = None) -> None:
        """Hold ``share`` bytes of the room; ``Busy`` (503, Retry-After) when it cannot be had in time.

        ``held``: what the caller holds already, so that a request alone in the room is seen as alone;
        ``wait``: seconds to wait, if not the room's; ``client``: whose part the share counts in."""
        turn = object()
        with self._changed:
            if len(self._turns) >= self.waiting:
                raise self._busy(share)
            ends = time.monotonic() + (self.wait if wait is None else wait)
            if client is not None and self.per_client:
                self._wait_for_part(client, turn, ends)
            self._count(client, share)
            self._turns.append(turn)
            try:
                while self._turns[0] is not turn or not self._fits(share, held):
                    left = ends - time.monotonic()
                    if left <= 0:
                        raise self._busy(share)
                    self._changed.wait(left)
                self._used += share
            except BaseException:
                self._count(client, -share)
                raise
            finally:
                self._turns.remove(turn)
                self._changed.notify_all()

    def give(self, share: int, client: str | None = None) -> None:
        """Give back what ``take`` held (for ``client``, when it was taken for one)."""
        with self._changed:
            self._used -= share
            self._count(client, -share)
            self._changed.notify_all()

    def _wait_for_part(self, client: str, turn: object, ends: float) -> None:
        """Wait (the lock held) until ``client`` holds less than its part, its requests in the order they came,
        outside the room's turns: a client at its part keeps no one else waiting."""
        turns = self._client_turns.setdefault(client, deque())
        turns.append(turn)
        try:
            while turns[0] is not turn or not self._under_part(client):
                left = ends - time.monotonic()
                if left <= 0:
                    raise self._busy_client(client)
                self._changed.wait(left)
        finally:
            turns.remove(turn)
            if not turns:
                del self._client_turns[client]

    def _fits(self, share: int, held: int) -> bool:
        return self._used + share <= self.size or self._used == held

    def _busy_client(self, client: str) -> Busy:
        return self._busy_because(f": the requests of {client} in this worker hold {self.held_by(client) / MB:.0f} MB "
                                  f"of the {self.size / MB:.0f} MB it keeps for {self.what}, and one client may hold "
                                  f"{(self.per_client or 0) / MB:.0f} MB")

    def _busy(self, share: int) -> Busy:
        needs = f"{share / MB:.0f} MB" if share >= MB else f"{share // 1024} KB more"
        return self._busy_because(f" ({self._used / MB:.0f} MB of the {self.size / MB:.0f} MB this worker keeps for "
                                  f"{self.what} held, this one needs {needs})")


class AnswerRoom(_ClientParts):
    """What the answers made and not yet sent in one worker may hold together, in bytes, and each client's part.

    A client reading slowly holds its answer in the worker until it has read it. An answer takes its room
    once it is made, at its size, and gives it back when it is gone; one in the making holds none (its
    memory is in the request's own budget, and a CV process makes one at a time). Nothing waits for
    this room (waiting would hold the answer, and the request's body): an answer that finds none is
    dropped for a 503 at once, and ``admit`` says so before the work when it can. A client the server
    names keeps at most ``per_client`` of it (any one answer, while it keeps nothing), so one client's
    slow readers leave the rest of the room to others.
    """

    def __init__(self, size: int, per_client: int | None = None, what: str = "picture answers",
                 refused: Callable[[], None] = lambda: None) -> None:
        super().__init__(per_client)
        self.size, self.what, self.refused = size, what, refused
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def admit(self, client: str | None = None) -> None:
        """Before an answer is made: ``Busy`` when the room is full, or ``client`` keeps its part."""
        with self._lock:
            if self._used >= self.size:
                raise self._busy(0)
            if client is not None and not self._under_part(client, 0):
                raise self._busy_client(client)

    def keep(self, held: int, size: int, client: str | None = None) -> None:
        """An answer is made, or made again larger or smaller: what it held (``held``, counted for ``client``)
        becomes ``size``. ``Busy`` when there is no room for it, or no room in its client's part; it then
        holds nothing."""
        with self._lock:
            self._used -= held
            self._count(client, -held)
            if self._used and self._used + size > self.size:
                raise self._busy(size)
            if client is not None and not self._under_part(client, size):
                raise self._busy_client(client)
            self._used += size
            self._count(client, size)

    def give(self, share: int, client: str | None = None) -> None:
        """Give back what ``keep`` kept (the answer is gone)."""
        with self._lock:
            self._used -= share
            self._count(client, -share)

    def _busy(self, size: int) -> Busy:
        needs = f"; this one is {size / MB:.1f} MB" if size else ""
        return self._busy_because(f" ({self._used / MB:.0f} MB of the {self.size / MB:.0f} MB this worker keeps for "
                                  f"{self.what} not yet sent held{needs})")

    def _busy_client(self, client: str) -> Busy:
        return self._busy_because(f": {self.what} {client} has not read yet hold {self.held_by(client) / MB:.0f} MB "
                                  f"of the {self.size / MB:.0f} MB this worker keeps for them, and one client may keep "
                                  f"{(self.per_client or 0) / MB:.0f} MB")
