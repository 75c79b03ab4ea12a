"""Loopback plumbing shared by the tests and the benchmarks: the Procfile's command, a free port,
a multipart body, one HTTP request, raw bytes and their answer. Only 127.0.0.1 is ever contacted."""

from __future__ import annotations

import http.client
import random
import shlex
import socket
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def procfile_argv() -> list[str]:
    """The ``web:`` command exactly as the Procfile gives it to Elastic Beanstalk (the one Procfile parser)."""
    line = next((s for s in (ROOT / "Procfile").read_text().splitlines() if s.startswith("web:")), None)
    if line is None:
        raise ValueError("the Procfile has no web: line")
    return shlex.split(line.removeprefix("web:"))


def procfile_command() -> list[str]:
    """The ``web:`` command of the Procfile, run with this interpreter's gunicorn."""
    argv = procfile_argv()
    if argv[0] == "gunicorn":
        argv = [sys.executable, "-m", "gunicorn", *argv[1:]]
    return argv


# Ports for servers a test starts: below the ephemeral ranges (Linux 32768-60999, BSD 49152-65535), which
# the kernel hands to the local end of outgoing connections. Between the check here and the server's
# bind, such a connection could take a port found free there: one to the port itself while nobody
# listens yet (a proxy retrying its upstream) can even connect to itself and hold it.
SERVER_PORTS = range(20000, 32768)
_PICK = random.SystemRandom()  # not the shared generator: a test that seeds it would make processes pick alike


def free_port() -> int:
    """A loopback port nothing listens on now, for a server to bind (or a client to find closed)."""
    for port in _PICK.sample(SERVER_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port among 200 tried in {SERVER_PORTS.start}-{SERVER_PORTS.stop - 1}")


def multipart(data: bytes, field_name: str = "image", filename: str = "photo.jpg") -> tuple[bytes, str]:
    """A multipart/form-data body with one file field, and its content type."""
    boundary = uuid.uuid4().hex
    body = b"".join([
        f"--{boundary}\r\n".encode(),
        f'Content-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'.encode(),
        b"Content-Type: image/jpeg\r\n\r\n",
        data,
        f"\r\n--{boundary}--\r\n".encode(),
    ])
    return body, f"multipart/form-data; boundary={boundary}"


def request(port: int, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
            timeout: float = 60.0, source: str | None = None) -> tuple[int, bytes]:
    """One HTTP request to the loopback server, from loopback address ``source`` if given; status and body."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=(source, 0) if source else None)
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def slow_reader(port: int, path: str, body: bytes, content_type: str, source: str = HOST,
                timeout: float = 30.0) -> tuple[socket.socket, bytes]:
    """POST ``body`` from loopback address ``source`` on a connection with a small receive buffer and read only
    the status line: the connection, left open, and that line. The server holds the rest of the answer
    until the caller reads it (or closes), or the server's send deadline passes."""
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((HOST, port))
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return s, s.recv(12)
    except BaseException:
        s.close()
        raise


def port_of(url: str) -> int:
    """The port of a loopback base URL such as ``http://127.0.0.1:40123``."""
    return int(url.rstrip("/").rsplit(":", 1)[1])


def exchange(port: int, raw: bytes, timeout: float = 30.0, half_close: bool = False) -> bytes:
    """Send ``raw`` as it is (malformed requests included) on a fresh connection; all the server
    answers until it closes. ``half_close``: say the request is over (shut the sending side) once sent."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(raw)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        pieces = []
        while chunk := s.recv(65536):
            pieces.append(chunk)
    return b"".join(pieces)


def reply(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
    """A loopback origin's answer: ``status``, ``headers`` and ``body`` (its length given); a client that hangs
    up without reading it all is no error (some tests and the hostile campaign require just that)."""
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    try:
        h.wfile.write(body)
    except OSError:
        pass


_DRIP_BOUNDARY = "slowboundary"


def drip_upload(base: str, every: float, total: int = 50_000, limit: float = 30.0) -> tuple[str, float]:
    """POST /detect with a multipart body declared ``total`` bytes, sent one byte every ``every`` s.

    Returns the raw answer and how long it took; stops sending as soon as an answer comes.
    """
    host, port = base.removeprefix("http://").split(":")
    head = (f"--{_DRIP_BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=limit) as s:
        s.sendall(f"POST /detect HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={_DRIP_BOUNDARY}"
                  f"\r\nContent-Length: {total}\r\n\r\n".encode() + head)
        s.setblocking(False)
        answer = b""
        while time.monotonic() - start < limit:  # bounded: one byte per step, at most ``limit`` seconds
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
                if b"\r\n\r\n" in answer and answer.endswith(b"}\n") or answer.endswith(b"}"):
                    break
            except BlockingIOError:
                pass
            try:
                s.send(b"\xff")
            except OSError:
                pass  # the server shut its reading side: keep listening for the answer
            time.sleep(every)
    return answer.decode("latin-1"), time.monotonic() - start


def steady_upload(base: str, data: bytes, rate: float, path: str = "/detect", limit: float = 60.0) -> tuple[str, float]:
    """POST ``data`` as a multipart image to ``path``, sending ``rate`` bytes a second, as a slow link does.

    Returns the raw answer and how long it took; stops sending as soon as the server stops reading.
    """
    host, port = base.removeprefix("http://").split(":")
    body, content_type = multipart(data)
    piece = max(1, int(rate / 20))
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=limit) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        sent = 0
        while sent < len(body) and time.monotonic() - start < limit:  # bounded by ``limit``
            try:
                s.sendall(body[sent:sent + piece])
            except OSError:
                break  # the server stopped reading: its answer follows
            sent += piece
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        pieces = []
        try:
            while chunk := s.recv(65536):
                pieces.append(chunk)
        except OSError:
            pass
    return b"".join(pieces).decode("latin-1"), time.monotonic() - start


HEAD_CAP = 64 * 1024  # a request head longer than this is not one of the tests'


def read_head(conn: socket.socket) -> bytes | None:
    """What a peer reads of a request up to the end of its head (and any body bytes that came with it);
    None when the connection ends first or the head passes ``HEAD_CAP``."""
    data = b""
    while b"\r\n\r\n" not in data:  # bounded by HEAD_CAP
        piece = conn.recv(65536)
        if not piece or len(data) > HEAD_CAP:
            return None
        data += piece
    return data
