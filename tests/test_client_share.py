"""Each client's share of a web worker's threads (mysite/server/client_share.py, mysite/server/worker.py).

One client dripping many uploads used to hold every thread of the Procfile's gunicorn until its
deadlines let go, ``/healthz`` and every other client waiting behind it. Now a client holds at most
``MYSITE_CLIENT_THREADS``; its other connections wait their turn or, past a few per thread, are
closed. Clients come from distinct loopback addresses (127.0.0.9, 127.0.0.10); 127.0.0.1 is
gunicorn's trusted proxy address, which is not limited.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests
from live_server import start_gunicorn

from mysite.server.client_share import (
    MAX_HOPS,
    ClientShare,
    client_key,
    forwarded_client,
    is_proxy,
    peer_name,
    trusted_networks,
)
from testkit.compose import noise_jpeg
from testkit.net import port_of, request, slow_reader

LOOPBACK = trusted_networks(["127.0.0.1", "::1"])
T = TypeVar("T")


def test_a_client_runs_its_share_and_queues_the_rest_in_order():
    share: ClientShare[str] = ClientShare(most=2, waiting=2)
    assert [share.enter("a", x) for x in "pqrst"] == ["run", "run", "wait", "wait", "refuse"]
    assert share.enter("b", "u") == "run"  # another client is not held up by the first
    assert share.counts() == (2, 2)
    assert share.leave("a") == "r" and share.leave("a") == "s"  # in the order they came, each taking the thread
    assert share.leave("a") is None and share.leave("a") is None
    assert share.counts() == (1, 0)
    assert share.enter("a", "v") == "run"


def test_clients_past_their_first_thread_leave_some_for_the_others():
    share: ClientShare[str] = ClientShare(most=3, waiting=2, together=4)
    assert [share.enter("a", x) for x in "pqr"] == ["run", "run", "run"]
    assert share.enter("b", "s") == "run"  # a client's first thread: always
    assert share.enter("b", "t") == "wait"  # its second: the clients already hold four
    assert share.enter("c", "u") == "run"  # one asking one thing at a time still gets a thread
    assert share.leave("a") is None and share.leave("c") is None  # three held now
    assert share.enter("a", "v") == "run"  # under four again: a client past its first may take one
    assert share.leave("b") == "t"  # b's own thread goes to its waiting connection
    assert share.counts() == (2, 0)


def test_queued_items_whose_client_left_are_dropped():
    share: ClientShare[str] = ClientShare(most=1, waiting=3)
    assert [share.enter("a", x) for x in "pqrs"] == ["run", "wait", "wait", "wait"]
    assert share.drop("a", lambda x: x in "qs") == ["q", "s"]
    assert share.enter("a", "t") == "wait" and share.leave("a") == "r" and share.leave("a") == "t"
    assert share.drop("b", lambda x: True) == [] and share.counts() == (1, 0)


def test_whose_share_a_connection_takes():
    assert client_key(("203.0.113.7", 5000), LOOPBACK) == "203.0.113.7"
    assert client_key(("127.0.0.9", 5000), LOOPBACK) == "127.0.0.9"
    assert client_key(("127.0.0.1", 5000), LOOPBACK) is None  # a trusted proxy carries many clients
    assert client_key(("::1", 5000, 0, 0), LOOPBACK) is None
    assert client_key(("::ffff:127.0.0.1", 5000, 0, 0), LOOPBACK) is None
    assert client_key(("::ffff:203.0.113.7", 5000, 0, 0), LOOPBACK) == "203.0.113.7"
    # An IPv6 subscriber usually has a whole /64: its addresses are one client.
    one = client_key(("2001:db8:1:2::5", 5000, 0, 0), LOOPBACK)
    assert one == client_key(("2001:db8:1:2:ffff::9", 1, 0, 0), LOOPBACK) == "2001:db8:1:2::/64"
    assert one != client_key(("2001:db8:1:3::5", 1, 0, 0), LOOPBACK)
    assert client_key(("fe80::1%eth0", 5000, 0, 2), LOOPBACK) == "fe80::/64"
    assert client_key("/run/gunicorn.sock", LOOPBACK) is None  # a Unix socket: the proxy in front
    assert client_key(("10.0.0.5", 1), trusted_networks(["10.0.0.0/8"])) is None
    assert trusted_networks(["*"]) is None and client_key(("203.0.113.7", 1), None) is None
    assert trusted_networks(["127.0.0.1", " ::1 ", ""]) == [ipaddress.ip_network("127.0.0.1"),
                                                            ipaddress.ip_network("::1")]


def test_which_client_a_trusted_proxy_forwards_a_request_for():
    alb = trusted_networks(["127.0.0.1", "::1", "10.0.0.0/8"])  # nginx on the instance, a load balancer in the VPC
    assert forwarded_client("203.0.113.7", LOOPBACK) == "203.0.113.7"  # nginx in front: the address it was reached from
    assert forwarded_client("203.0.113.7, 10.0.3.4", alb) == "203.0.113.7"  # the balancer, then nginx
    assert forwarded_client("203.0.113.7, 10.0.3.4", LOOPBACK) == "10.0.3.4"  # a balancer not trusted: it is the client
    # What a client writes itself comes before the address the first trusted proxy saw: never read.
    assert forwarded_client("198.51.100.1, 198.51.100.2, 203.0.113.7, 10.0.3.4", alb) == "203.0.113.7"
    assert forwarded_client("not an address, 203.0.113.7", LOOPBACK) == "203.0.113.7"
    # A header that names no one for sure names the proxy it came through: those requests share one share.
    assert forwarded_client("203.0.113.7, not an address", LOOPBACK) is None
    assert forwarded_client("203.0.113.7, not an address", LOOPBACK, "127.0.0.1") == "127.0.0.1"
    assert forwarded_client("127.0.0.1, ::1", LOOPBACK) is None and forwarded_client("", LOOPBACK) is None
    assert forwarded_client("203.0.113.7:5123", LOOPBACK) == "203.0.113.7"  # some proxies add the port
    assert forwarded_client("[2001:db8:1:2::5]:443", LOOPBACK) == "2001:db8:1:2::/64"
    assert forwarded_client(" 2001:db8:1:2::9 ", LOOPBACK) == "2001:db8:1:2::/64"
    assert forwarded_client("198.51.100.1, 203.0.113.7", None) == "203.0.113.7"  # every peer a proxy: the nearest
    # Only the nearest MAX_HOPS are read: a longer run of trusted hops is no real chain.
    proxies = ", ".join(["127.0.0.1"] * (MAX_HOPS - 1))
    assert forwarded_client(f"203.0.113.7, {proxies}", LOOPBACK, "127.0.0.1") == "203.0.113.7"
    assert forwarded_client(f"203.0.113.7, 127.0.0.1, {proxies}", LOOPBACK, "127.0.0.1") == "127.0.0.1"
    assert forwarded_client(",".join(["127.0.0.1"] * 1000), LOOPBACK, "::/64") == "::/64"
    assert forwarded_client(", ".join(["127.0.0.1"] * MAX_HOPS), LOOPBACK, "127.0.0.1") is None
    assert peer_name(("::1", 1, 0, 0)) == "::/64" and peer_name(("127.0.0.1", 1)) == "127.0.0.1"
    assert peer_name("/run/gunicorn.sock") == "local"
    assert is_proxy(("127.0.0.1", 1), LOOPBACK) and is_proxy("/run/gunicorn.sock", LOOPBACK)
    assert is_proxy(("203.0.113.7", 1), None) and not is_proxy(("203.0.113.7", 1), LOOPBACK)


def _dripping(port: int, count: int, source: str) -> list[socket.socket]:
    """``count`` uploads from ``source`` whose bodies never come: headers, then nothing."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 90000\r\n\r\nxx")
        socks.append(s)
    return socks


def _drip(socks: list[socket.socket], stop: threading.Event) -> None:
    for _ in range(200):  # a byte each every 0.2 s, 40 s at most
        if stop.wait(0.2):
            return
        for s in socks:
            try:
                s.send(b"x")
            except OSError:
                pass


def _while_dripping(socks: list[socket.socket], measure: Callable[[], T]) -> T:
    """What ``measure`` gives a second after ``socks`` start dripping; they are closed after it."""
    stop = threading.Event()
    dripper = threading.Thread(target=_drip, args=(socks, stop))
    dripper.start()
    try:
        time.sleep(1)
        return measure()
    finally:
        stop.set()
        dripper.join()
        for s in socks:
            s.close()


def _closed(s: socket.socket) -> bool:
    """Whether the server closed ``s`` without an answer."""
    s.setblocking(False)
    try:
        return s.recv(100) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def _timed(port: int, source: str, method: str, path: str, body: bytes | None = None,
           content_type: str | None = None, timeout: float = 30) -> tuple[int, float]:
    """The status and seconds of one request from loopback address ``source`` (errors raised)."""
    started = time.monotonic()
    status = request(port, method, path, body, content_type, timeout=timeout, source=source)[0]
    return status, time.monotonic() - started


def _after_its_queue_drains(port: int) -> tuple[int, float]:
    """127.0.0.9's share is given back once the server has found its closed connections gone (a few ms):
    a request of its own is served then."""
    started = time.monotonic()
    for _ in range(25):  # 5 s at most
        try:
            status, _ = _timed(port, "127.0.0.9", "GET", "/healthz")
            return status, time.monotonic() - started
        except ConnectionError:  # still refused: its queue was full a moment ago
            time.sleep(0.2)
    return 0, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("share", ["2", "0"])
def test_one_client_dripping_uploads_holds_its_share_of_threads_not_all(tmp_path, group_jpg, share):
    # Eight threads; one client sends twelve uploads' headers and then a byte every 0.2 s.
    env = {"MYSITE_THREADS": "8", "MYSITE_CLIENT_THREADS": share, "MYSITE_UPLOAD_DEADLINE": "6"}
    with start_gunicorn(env, log_dir=tmp_path) as server:
        port = port_of(server.url)
        socks = _dripping(port, 12, "127.0.0.9")
        refused, health, other = _while_dripping(socks, lambda: (
            sum(_closed(s) for s in socks), _timed(port, "127.0.0.1", "GET", "/healthz"),
            _timed(port, "127.0.0.10", "POST", "/detect", group_jpg, "image/jpeg")))
        again = _after_its_queue_drains(port)
        closed = request(port, "GET", "/metrics")[1].decode()
        log = server.log.read_text()
    if share == "0":  # the control: the drips hold all eight threads until the upload deadline
        assert refused == 0 and health[0] == 200 and health[1] > 3, health
        return
    assert refused == 2, refused  # two on threads, eight waiting, the last two closed
    assert "closed a connection from 127.0.0.9" in log, log
    count = re.search(r"^mysite_connections_closed_total ([0-9.]+)$", closed, re.M)
    assert count is not None and float(count.group(1)) >= 2, closed[-1500:]
    assert health[0] == 200 and health[1] < 2, health
    assert other[0] == 200 and other[1] < 5, other
    assert again[0] == 200 and again[1] < 5, again


@pytest.mark.slow
def test_a_few_clients_at_their_share_leave_threads_for_the_others(tmp_path, group_jpg):
    # Sixteen threads, four per client: four clients dripping six uploads each would hold them all.
    # Past its first thread, a client takes one only while the clients together leave two.
    env = {"MYSITE_THREADS": "16", "MYSITE_CLIENT_THREADS": "4", "MYSITE_UPLOAD_DEADLINE": "8"}
    with start_gunicorn(env, log_dir=tmp_path) as server:
        port = port_of(server.url)
        socks = [s for source in ("127.0.0.9", "127.0.0.11", "127.0.0.12", "127.0.0.13")
                 for s in _dripping(port, 6, source)]
        health, other = _while_dripping(socks, lambda: (
            _timed(port, "127.0.0.1", "GET", "/healthz"),
            _timed(port, "127.0.0.10", "POST", "/detect", group_jpg, "image/jpeg")))
    assert health[0] == 200 and health[1] < 2, health
    assert other[0] == 200 and other[1] < 5, other


def _healthz_loop(port: int, seconds: float, failures: list[str]) -> int:
    """GET /healthz from 127.0.0.9 on a new connection each time, closing each after its answer."""
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:  # bounded by ``seconds``
        try:
            status, _ = _timed(port, "127.0.0.9", "GET", "/healthz", timeout=10)
            done += status == 200
        except OSError as exc:
            failures.append(repr(exc))
    return done


@pytest.mark.slow
def test_a_client_whose_connections_close_after_each_answer_is_never_refused(tmp_path):
    # Each closed connection was kept alive by the server and becomes readable (its end) after the
    # answer: it must not take one of the client's threads or places in its queue.
    env = {"MYSITE_THREADS": "8", "MYSITE_CLIENT_THREADS": "1"}
    with start_gunicorn(env, log_dir=tmp_path) as server:
        port = port_of(server.url)
        failures: list[str] = []
        loops = [threading.Thread(target=_healthz_loop, args=(port, 4, failures)) for _ in range(4)]
        for loop in loops:
            loop.start()
        for loop in loops:
            loop.join()
        log = server.log.read_text()
    assert failures == [], failures[:5]
    assert "closed a connection from" not in log, log[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("share", ["16", "0"])
def test_one_clients_unread_picture_answers_hold_its_part_of_their_room_not_all(tmp_path, share):
    # Answers up to 12 MB, 32 MB of room for them: one client may keep 8 MB of it. Its readers, opened one at
    # a time, each leave a 9 MB PNG answer unread; another client then asks for one of its own.
    env = {"MYSITE_MAX_UPLOAD_MB": "4", "MYSITE_UPLOAD_MEMORY_MB": "32", "MYSITE_CLIENT_THREADS": share,
           "MYSITE_SEND_TIMEOUT": "60"}
    photo = noise_jpeg(2000, 1500)  # a 9 MB PNG answer
    with start_gunicorn(env, log_dir=tmp_path) as server:
        port = port_of(server.url)
        readers = []
        try:
            for _ in range(4):
                readers.append(slow_reader(port, "/detect?output=image&format=png", photo, "image/jpeg",
                                           "127.0.0.9"))
            other = _timed(port, "127.0.0.10", "POST", "/detect?output=image&format=png", photo, "image/jpeg")
        finally:
            for s, _ in readers:
                s.close()
    statuses = [line for _, line in readers]
    if share == "0":  # the control: the readers' answers fill the room, and everyone's picture waits for them
        assert statuses == [b"HTTP/1.1 200"] * 3 + [b"HTTP/1.1 503"], statuses
        assert other[0] == 503, other
        return
    assert statuses == [b"HTTP/1.1 200"] + [b"HTTP/1.1 503"] * 3, statuses
    assert other[0] == 200, other


@pytest.mark.slow
def test_a_forwarded_request_that_names_no_one_for_sure_takes_its_proxys_share(tmp_path):
    # From 127.0.0.1, a trusted proxy: a chain longer than any real one, or an entry that is not an
    # address, names the proxy itself (one share for all such requests), not no one (no share at all).
    chains = {"203.0.113.7, 127.0.0.1": "203.0.113.7", "127.0.0.1, ::1": None,
              ", ".join(["127.0.0.1"] * 500): "127.0.0.1", "unknown": "127.0.0.1"}
    with start_gunicorn({"MYSITE_CLIENT_THREADS": "2"}, log_dir=tmp_path) as server:
        for chain in chains:
            r = requests.get(f"{server.url}/healthz", headers={"X-Forwarded-For": chain}, timeout=10)
            assert r.status_code == 200, r.text
    log = server.log.read_text()  # once the server has stopped: a request's line is written after its answer
    logged = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    named = {line["forwarded_for"]: line.get("client") for line in logged if line.get("forwarded_for")}
    assert named == chains, named
