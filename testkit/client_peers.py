"""Hostile HTTP servers on loopback for the site's client (``mysite.client``): answers that never end, drip,
inflate, nest, lie about their length, or redirect elsewhere.

``hostile_peer(answer)`` serves on 127.0.0.1 (or another loopback address, standing for another host),
a thread per connection, one request each. ``answer(request)`` gives the pieces to send: bytes, or a
float to pause that many seconds. Every peer stops sending after ``SEND_CAP`` bytes or ``SEND_SECONDS``,
or when its ``with`` block ends, whichever comes first; ``Seen`` records what it was sent and sent back.
Shared by ``tests/test_client_hostile.py``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from testkit.net import HOST, free_port, read_head

SEND_CAP = 512 * 2**20
SEND_SECONDS = 10.0
_BODY_CAP = 64 * 2**20


@dataclass
class Request:
    """One request as the peer read it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class Seen:
    """What a peer was asked and what it sent back."""

    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


Answer = Callable[[Request], Iterable[bytes | float]]


@contextmanager
def hostile_peer(answer: Answer, host: str = HOST, read_pause: float = 0.0) -> Iterator[tuple[str, Seen]]:
    """``answer`` served on a free port of loopback address ``host``; yields its base URL and what it saw.
    With ``read_pause``, the peer stops reading for that many seconds after a request's head (a busy server)."""
    listener = socket.create_server((host, free_port()))
    stop = threading.Event()
    seen = Seen()

    def accept() -> None:
        while not stop.is_set():  # bounded: ends when the listener is shut
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with seen.lock:
                seen.connections += 1
            threading.Thread(target=_serve, args=(conn, answer, seen, stop, read_pause), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://{host}:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        listener.close()


def _serve(conn: socket.socket, answer: Answer, seen: Seen, stop: threading.Event, read_pause: float) -> None:
    with conn:
        conn.settimeout(SEND_SECONDS)
        try:
            request = _read_request(conn, lambda: stop.wait(read_pause))
            if request is None:
                return
            with seen.lock:
                seen.requests.append(request)
            start = time.monotonic()
            for piece in answer(request):
                if stop.is_set() or seen.sent >= SEND_CAP or time.monotonic() - start > SEND_SECONDS:
                    return
                if isinstance(piece, float):
                    stop.wait(piece)
                    continue
                conn.sendall(piece)
                with seen.lock:
                    seen.sent += len(piece)
        except OSError:
            pass  # the client hung up: what most tests want


def _read_request(conn: socket.socket, pause: Callable[[], object]) -> Request | None:
    data = read_head(conn)
    if data is None:
        return None
    pause()
    head, _, start = data.partition(b"\r\n\r\n")
    body = bytearray(start)  # grows in place: a large upload is not copied at every piece
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = min(int(headers.get("content-length", "0") or 0), _BODY_CAP)
    while len(body) < length:  # bounded by _BODY_CAP
        piece = conn.recv(min(65536, length - len(body)))
        if not piece:
            break
        body += piece
    method, path = (lines[0].split(" ") + ["", ""])[:2]
    return Request(method, path, headers, bytes(body))


def head(status: str, headers: dict[str, str], length: int | None = None) -> bytes:
    """A response head; ``Content-Length`` when ``length`` is given, and always ``Connection: close``."""
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join([*lines, "Connection: close"]) + "\r\n\r\n").encode("latin-1")


def respond(status: str, body: bytes, content_type: str = "application/json",
            headers: dict[str, str] | None = None) -> Answer:
    """The same whole answer to every request."""
    return lambda request: [head(status, {"Content-Type": content_type, **(headers or {})}, len(body)) + body]


def boxes(n: int = 2) -> bytes:
    """A detect answer with ``n`` boxes."""
    return json.dumps({"status": "ok", "result": [{"box": [1, 2, 3, 4]}] * n}).encode()


def drip_body(every: float) -> Answer:
    """Whole headers promising a long JSON body, then one byte of it every ``every`` seconds."""
    def answer(request: Request) -> Iterator[bytes | float]:
        yield head("200 OK", {"Content-Type": "application/json"}, 100_000)
        for _ in range(100_000):
            yield b" "
            yield every
    return answer


def drip_head(every: float) -> Answer:
    """The status line and a header, one byte every ``every`` seconds: the head never ends."""
    def answer(request: Request) -> Iterator[bytes | float]:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000:
            yield bytes([byte])
            yield every
    return answer


def endless_json(request: Request) -> Iterator[bytes]:
    """JSON that never ends, its length given by the connection's close (which never comes)."""
    yield head("200 OK", {"Content-Type": "application/json"}) + b'{"status":"ok","result":['
    piece = b'{"box":[1,2,3,4]},' * 4096
    while True:  # bounded by the peer's caps
        yield piece


def gzip_bomb(mebibytes: int) -> bytes:
    """A gzip body that inflates to ``mebibytes`` MiB of JSON whitespace and an empty detect answer: one
    small gzip member repeated (a reader decodes the members one after another)."""
    member = zlib.compressobj(9, zlib.DEFLATED, 31)
    spaces = member.compress(b" " * 2**20) + member.flush()
    last = zlib.compressobj(9, zlib.DEFLATED, 31)
    end = last.compress(b'{"status":"ok","result":[]}') + last.flush()
    return spaces * mebibytes + end


def short_body(request: Request) -> Iterator[bytes]:
    """A Content-Length the body never reaches, then the connection closes."""
    yield head("200 OK", {"Content-Type": "application/json"}, 1000) + b'{"status":"ok"'


def redirect(location: str, status: str = "307 Temporary Redirect") -> Answer:
    """A redirect to ``location`` (``{path}`` in it is filled with the path asked for)."""
    return lambda request: [head(status, {"Location": location.format(path=request.path)}, 0)]


def endless_redirect(request: Request) -> Iterator[bytes]:
    """A redirect to the same host whose body never ends."""
    yield head("302 Found", {"Location": "/again", "Content-Type": "text/html"})
    piece = b"<p>moved</p>" * 8192
    while True:  # bounded by the peer's caps
        yield piece


def interim(*statuses: int, then: bytes | None = None) -> Answer:
    """Interim answers (``103``, ``102`` ...), each with a header, then ``then`` (a whole answer) if given."""
    heads = b"".join(f"HTTP/1.1 {s} Interim\r\nLink: </a.css>; rel=preload\r\n\r\n".encode() for s in statuses)
    return lambda request: [heads + (then or b"")]


def redirect_loop(request: Request) -> Iterator[bytes]:
    """``/loop/N`` sends to ``/loop/N+1``, without end."""
    step = request.path.rsplit("/", 1)[-1]
    following = int(step) + 1 if step.isdigit() else 0
    yield head("302 Found", {"Location": f"/loop/{following}"}, 0)
