"""Each client's share of a web worker's threads: at most ``most`` at once, the rest wait their turn.

A thread reading a request is held until the request is in (within the header and upload
deadlines), so one client that opens many connections and sends slowly would otherwise hold
every thread, ``/healthz`` and everyone else's requests waiting behind it. Here a client (an
IPv4 address, or an IPv6 /64, which one subscriber usually has whole) runs at most ``most``
connections on threads; its next ones wait, in the order they came, and take its threads as they
free; past ``waiting`` of them a connection is closed at once. Clients past their first thread
also share a bound (``together``): a few of them at their share cannot take every thread, and a
client that asks one thing at a time (a health check, a visitor) still finds one. Trusted proxies
(gunicorn's ``forwarded_allow_ips``) are not limited: each carries many clients. A request a trusted
proxy forwards is its client's, as ``X-Forwarded-For`` names it (``forwarded_client``), and takes that
client's share as a connection of its own would (the worker parks it while it waits).

Standard library only; no locks held while anything else runs.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
# environ key: the client whose share a request's connection takes, for the app's own parts per client
# (set by the worker; absent for trusted proxies, with the share off, and under other servers).
ENVIRON_KEY = "mysite.client"
# The same, for what runs the request in this thread and sees no environ (the CV pool's client).
CURRENT: ContextVar[str | None] = ContextVar("mysite_client", default=None)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_key(peer: object, trusted: Iterable[Network] | None) -> str | None:
    """Whose share a connection from ``peer`` (a socket address) takes: None for a trusted proxy,
    a Unix socket, or when every peer is trusted (``trusted`` None)."""
    if trusted is None:
        return None
    ip = _peer_address(peer)
    if ip is None or any(ip in net for net in trusted):
        return None
    return _key(ip)


def is_proxy(peer: object, trusted: Iterable[Network] | None) -> bool:
    """Whether a connection from ``peer`` comes from a trusted proxy (a Unix socket is one: it is local)."""
    if trusted is None or not isinstance(peer, tuple) or not peer:
        return True
    ip = _address(str(peer[0]))
    return ip is not None and any(ip in net for net in trusted)


# Trusted proxies a real request passes through in a row (a CDN, a balancer, nginx) are a few: the
# header is read no further, so its length does not set what reading it costs.
MAX_HOPS = 8


def forwarded_client(forwarded_for: str, trusted: Iterable[Network] | None, proxy: str | None = None) -> str | None:
    """The client a trusted proxy forwards a request for: the last address in ``X-Forwarded-For`` that is
    not a trusted proxy's (each proxy appends the address it was reached from; what comes before a
    stranger's address is the stranger's to write). With every peer trusted (``trusted`` None), the last
    address. None when every hop is a trusted proxy's (a proxy's own request). ``proxy`` (the peer's
    name) when the header names no one for sure: the entry to read is not an address, or the nearest
    ``MAX_HOPS`` are all trusted and more come before them."""
    networks = None if trusted is None else list(trusted)
    hops = forwarded_for.rsplit(",", MAX_HOPS)
    for entry in reversed(hops[-MAX_HOPS:]):
        ip = _address(_without_port(entry.strip()))
        if ip is None:
            return proxy
        if networks is None or not any(ip in net for net in networks):
            return _key(ip)
    return proxy if len(hops) > MAX_HOPS else None


def peer_name(peer: object) -> str:
    """A connection's own name as a client, proxy or not: its address's key; a Unix socket's is ``local``."""
    ip = _peer_address(peer)
    return "local" if ip is None else _key(ip)


def _peer_address(peer: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A socket address's IP; None for a Unix socket's path."""
    return _address(str(peer[0])) if isinstance(peer, tuple) and peer else None


def _without_port(entry: str) -> str:
    """``entry`` without a port some proxies add: ``[2001:db8::1]:443`` or ``192.0.2.1:443``."""
    if entry.startswith("["):
        return entry[1:].split("]", 1)[0]
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address (an IPv4-mapped IPv6 address as its IPv4 one; a zone dropped), or None."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _key(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A client's name: its IPv4 address, or its IPv6 /64 (which one subscriber usually has whole)."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def trusted_networks(allowed: Iterable[str]) -> list[Network] | None:
    """gunicorn's ``forwarded_allow_ips`` as networks; None when it is ``*`` (every peer a proxy)."""
    networks = []
    for entry in allowed:
        entry = entry.strip()
        if entry == "*":
            return None
        if entry:
            networks.append(ipaddress.ip_network(entry, strict=False))
    return networks


class ClientShare(Generic[T]):
    """Threads per client: ``enter`` when a connection wants a thread, ``leave`` when its thread is done."""

    def __init__(self, most: int, waiting: int, together: int | None = None) -> None:
        self.most = most
        self.waiting = waiting
        self.together = together  # threads the clients may hold together, past one each (None: no bound)
        self._lock = threading.Lock()
        self._running: dict[str, int] = defaultdict(int)
        self._queued: dict[str, deque[T]] = {}
        self._total = 0

    def enter(self, key: str, item: T) -> Literal["run", "wait", "refuse"]:
        """``run``: ``item`` may take a thread now; ``wait``: it is queued, ``leave`` hands it out; ``refuse``.

        A client with no thread always gets one; past that, only while the clients together hold
        fewer than ``together``, so that a few clients at their share leave threads for the others."""
        with self._lock:
            held = self._running[key]
            if held < self.most and (not held or self.together is None or self._total < self.together):
                self._running[key] += 1
                self._total += 1
                return "run"
            queue = self._queued.setdefault(key, deque())
            if len(queue) >= self.waiting:
                return "refuse"
            queue.append(item)
            return "wait"

    def drop(self, key: str, gone: Callable[[T], bool]) -> list[T]:
        """Take ``key``'s queued items for which ``gone`` holds (clients that went away) out of its queue."""
        with self._lock:
            queued = list(self._queued.get(key, ()))
        dropped = [item for item in queued if gone(item)]  # outside the lock: ``gone`` may ask the kernel
        with self._lock:
            queue = self._queued.get(key, deque())
            dropped = [item for item in dropped if item in queue]  # not handed out meanwhile
            for item in dropped:
                queue.remove(item)
            if not queue:
                self._queued.pop(key, None)
            return dropped

    def leave(self, key: str) -> T | None:
        """A thread of ``key``'s is done: the client's next queued item, which takes that thread, or None."""
        with self._lock:
            queue = self._queued.get(key)
            if queue:
                item = queue.popleft()
                if not queue:
                    del self._queued[key]
                return item
            self._running[key] -= 1
            self._total -= 1
            if not self._running[key]:
                del self._running[key]
            return None

    def counts(self) -> tuple[int, int]:
        """Clients with a thread now, and connections queued (for tests and logs)."""
        with self._lock:
            return len(self._running), sum(len(q) for q in self._queued.values())
