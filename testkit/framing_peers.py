"""HTTP peers on 127.0.0.1 that answer a ``?url=`` fetch with endless framing instead of an image.

Each answer is bytes a raw socket sends over and over: interim ``100 Continue`` responses, chunks
carrying long chunk extensions or one byte each, empty deflate blocks, trailer lines, or a few interim
responses before a redirect. Shared by ``tests/test_fetch_framing.py`` and ``bench/fetch_peers.py``. Only 127.0.0.1 is
bound; every peer stops after ``SEND_CAP`` bytes or ``SEND_SECONDS``, whichever comes first.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from testkit.net import HOST, read_head

SEND_CAP = 64 * 2**30  # loopback carries a few GB a second: the time bound is the one that ends a peer
SEND_SECONDS = 30.0

# (first bytes, bytes repeated after them); the path asked for is handed to the answer maker.
Answer = tuple[bytes, bytes]
_CHUNKED_OK = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"


def interim_flood(path: str) -> Answer:
    """``HTTP/1.1 100 Continue`` and an empty header block, forever."""
    return b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 2000


def chunk_extensions(path: str, size: int = 60_000) -> Answer:
    """A chunked body whose chunks carry ``size`` bytes of extension and one byte of data each."""
    return _CHUNKED_OK, (b"1;" + b"a" * size + b"\r\nx\r\n") * max(1, 60_000 // size)


def tiny_chunks(path: str) -> Answer:
    """A chunked body of one-byte chunks, forever."""
    return _CHUNKED_OK, b"1\r\nx\r\n" * 10_000


def empty_gzip_chunks(path: str) -> Answer:
    """A gzip-encoded chunked body of empty deflate blocks, one a chunk: it decodes to nothing, forever."""
    head = _CHUNKED_OK.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n")
    return head + b"a\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\r\n", b"5\r\n\x00\x00\x00\xff\xff\r\n" * 10_000


def trailer_flood(path: str) -> Answer:
    """A one-byte chunked body, then trailer lines that never end."""
    return _CHUNKED_OK + b"1\r\nx\r\n0\r\n", b"X-Trailer: " + b"a" * 1000 + b"\r\n"


def short_trailer_flood(path: str) -> Answer:
    """A one-byte chunked body, then trailer lines of two bytes that never end: a line costs the reader
    as much Python as a long one."""
    return _CHUNKED_OK + b"1\r\nx\r\n0\r\n", b"x\n" * 4096


def interims_then_redirect(count: int) -> Callable[[str], Answer]:
    """``count`` interim responses, then a redirect from ``/hop/N`` to ``/hop/N+1`` (no repeat)."""

    def answer(path: str) -> Answer:
        step = int(path.rsplit("/", 1)[-1]) if path.rsplit("/", 1)[-1].isdigit() else 0
        head = b"HTTP/1.1 100 Continue\r\n\r\n" * count
        return head + f"HTTP/1.1 302 Found\r\nLocation: /hop/{step + 1}\r\nContent-Length: 0\r\n\r\n".encode(), b""

    return answer


@contextmanager
def framing_peer(answer: Callable[[str], Answer], port: int = 0, pause: float = 0.0) -> Iterator[str]:
    """``answer`` served on ``port`` of 127.0.0.1 (a free one by default), a thread per connection, its repeats
    ``pause`` seconds apart; yields the base URL."""
    listener = socket.create_server((HOST, port))
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():  # bounded: ends when the listener is closed
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_answer, args=(conn, answer, pause, stop), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://{HOST}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        except OSError:
            pass
        listener.close()


def _answer(conn: socket.socket, answer: Callable[[str], Answer], pause: float, stop: threading.Event) -> None:
    with conn:
        conn.settimeout(SEND_SECONDS)
        try:
            head = read_head(conn)
            if head is None:
                return
            first, again = answer(head.split(b" ", 2)[1].decode("latin-1"))
            conn.sendall(first)
            sent, start = len(first), time.monotonic()
            while again and sent < SEND_CAP and time.monotonic() - start < SEND_SECONDS and not stop.is_set():
                conn.sendall(again)
                sent += len(again)
                if pause:
                    stop.wait(pause)
        except OSError:
            pass  # the fetch hung up: what the tests want
