"""``python -m bench.slow_uploads``: uploads over slow links, and connections that declare a body and send none.

Starts the Procfile's gunicorn (its two web workers and the CV pool) on loopback, facing the clients
itself (no nginx), and measures:

1. **slow links**: a 2.2 MB phone photo (4000x3000) sent to ``/detect`` at each of ``--rates`` KB/s
   at once, as phones on poor uplinks send it: the answer and how long it took.
   ``MYSITE_UPLOAD_DEADLINE`` (20 s) and ``MYSITE_UPLOAD_MIN_RATE_KB`` (32) decide which get through.
2. **idle bodies**: ``--holders`` (12) connections that each declare a 13 MB text body and send none
   of it, opened again every 19 s, while a client posts the group photo every 2 s for ``--seconds``
   (40): the answers and how long they took.
3. **one client's drips**: one client (from 127.0.0.9) keeps ``--drips`` (140, more than the two
   workers' 128 threads) uploads open, each sending a byte every 0.5 s and opened again when the
   server closes it, for ``--seconds``, while ``/healthz`` is read every 0.25 s from 127.0.0.1 and
   another client (127.0.0.10) posts the group photo every 2 s; once with ``MYSITE_CLIENT_THREADS=0``
   (no share: every thread open to one client, as before the share) and once as shipped. With
   ``--addresses N``, N such clients (127.0.0.9, then 127.0.0.11 on).
4. **one client's slow readers**: one client (127.0.0.9) opens ``--readers`` (24) connections one at a
   time, 1.5 s apart, each asking for a photo of noise drawn as PNG (a 9 MB answer) and reading it at
   16 KB/s; then, for ``--seconds``, another client (127.0.0.10) asks for the group photo drawn
   (``output=image``) every 2 s and ``/healthz`` is read every 0.25 s from 127.0.0.1; once with
   ``MYSITE_CLIENT_THREADS=0`` (no client named: the picture room shared by all, as before each client
   had a part of it) and once as shipped.

Prints Markdown tables; about six minutes. Only loopback addresses are contacted (127.0.0.1 the
server; 127.0.0.9 and 127.0.0.10 are the clients' own addresses).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from collections import Counter

import cv2
import numpy as np

from bench.server import HOST, ROOT, Server, multipart, request
from testkit.compose import noise_jpeg
from testkit.net import slow_reader, steady_upload


def phone_photo() -> bytes:
    """The group photo enlarged to 4000x3000 with a little noise: about 2.2 MB as a phone's JPEG."""
    image = cv2.imread(str(ROOT / "tests" / "data" / "group_17_faces.jpg"))
    big = cv2.resize(image, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    big = cv2.add(big, np.random.default_rng(1).integers(0, 12, big.shape, dtype=np.uint8))
    return cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def _status(raw: str) -> str:
    line = raw.split("\r\n", 1)[0].split(" ")
    return line[1] if len(line) > 1 else "none"


def slow_links(rates: list[float]) -> None:
    photo = phone_photo()
    results: dict[float, tuple[str, float]] = {}
    with Server(workers=2, cv_threads=1) as server:
        base = f"http://{HOST}:{server.port}"

        def send(rate: float) -> None:
            results[rate] = steady_upload(base, photo, rate * 1024, limit=180)

        threads = [threading.Thread(target=send, args=(rate,)) for rate in rates]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(200)
    print(f"\n{len(photo) / 1e6:.1f} MB photo, {len(rates)} clients at once\n")
    print("| rate (KB/s) | answer | seconds | sent in full would take (s) |")
    print("|---|---|---|---|")
    for rate in rates:
        raw, took = results.get(rate, ("", float("nan")))
        print(f"| {rate:g} | {_status(raw)} | {took:.1f} | {len(photo) / (rate * 1024):.0f} |")


def _hold(port: int, length: int) -> socket.socket:
    s = socket.create_connection((HOST, port), timeout=5)
    s.sendall(f"POST /detect HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n"
              f"Content-Length: {length}\r\n\r\n".encode())
    return s


def idle_bodies(holders: int, seconds: float, length: int = 13_000_000) -> None:
    body, content_type = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
    answers: list[tuple[int, float]] = []
    with Server(workers=2, cv_threads=1) as server:
        held: list[socket.socket] = []
        started = time.monotonic()
        renew = started
        try:
            while time.monotonic() - started < seconds:  # bounded by ``seconds``
                if time.monotonic() >= renew:  # the upload deadline let the last ones go
                    for s in held:
                        s.close()
                    held = [_hold(server.port, length) for _ in range(holders)]
                    renew += 19
                sent = time.monotonic()
                try:
                    status = request(server.port, "POST", "/detect", body, content_type, timeout=60)[0]
                except OSError:
                    status = 0
                answers.append((status, time.monotonic() - sent))
                time.sleep(max(0.0, 2 - (time.monotonic() - sent)))
        finally:
            for s in held:
                s.close()
    took = [t for _, t in answers]
    print(f"\n{holders} connections each declaring a {length / 1e6:.0f} MB body and sending none; "
          f"the group photo every 2 s for {seconds:g} s\n")
    print("| answers | seconds, median | seconds, max |")
    print("|---|---|---|")
    print(f"| {dict(sorted(Counter(s for s, _ in answers).items()))} | {statistics.median(took):.1f} | "
          f"{max(took):.1f} |")


DRIPPERS = ("127.0.0.9", "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15")


def _drip_open(port: int, source: str) -> socket.socket | None:
    s = socket.socket()
    try:
        s.bind((source, 0))
        s.connect((HOST, port))
        s.sendall(f"POST /detect HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/jpeg\r\n"
                  "Content-Length: 5000000\r\n\r\n".encode())
        s.setblocking(False)
        return s
    except OSError:
        s.close()
        return None


def _keep_dripping(port: int, count: int, stop: threading.Event, refused: list[int], addresses: int = 1) -> None:
    """``count`` uploads from each of ``addresses`` clients (127.0.0.9, .11, ...), a byte each every 0.5 s;
    one the server closes is opened again."""
    sources = [source for source in DRIPPERS[:addresses] for _ in range(count)]
    socks = [_drip_open(port, source) for source in sources]
    while not stop.wait(0.5):  # bounded by the caller's ``stop``
        for i, s in enumerate(socks):
            try:
                if s is None:
                    raise OSError
                s.send(b"x")
                if s.recv(65536) == b"":
                    raise OSError
            except BlockingIOError:
                continue
            except OSError:
                refused[0] += 1
                if s is not None:
                    s.close()
                socks[i] = _drip_open(port, sources[i])
    for s in socks:
        if s is not None:
            s.close()


def _from(port: int, source: str, method: str, path: str, body: bytes | None = None,
          content_type: str | None = None) -> tuple[int, float]:
    """The status (0: no answer) and seconds of one request from loopback address ``source``."""
    sent = time.monotonic()
    try:
        status = request(port, method, path, body, content_type, source=source)[0]
    except OSError:
        status = 0
    return status, time.monotonic() - sent


def _probe_health(port: int, stop: threading.Event, took: list[float]) -> None:
    while not stop.wait(0.25):  # bounded by the caller's ``stop``
        took.append(_from(port, "127.0.0.1", "GET", "/healthz")[1])


def one_client_drips(drips: int, seconds: float, addresses: int = 1) -> None:
    body, content_type = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
    print(f"\n{addresses} client(s) keeping {drips} uploads dripping each for {seconds:g} s; /healthz every 0.25 s "
          "from another address, the group photo every 2 s from another\n")
    print("| MYSITE_CLIENT_THREADS | /healthz p50 / p95 / max (s) | group photo: answers | seconds, median / max | "
          "drip connections closed |")
    print("|---|---|---|---|---|")
    for share in ("0", "16"):
        with Server(workers=2, cv_threads=1, extra_env={"MYSITE_CLIENT_THREADS": share}) as server:
            stop, refused = threading.Event(), [0]
            dripper = threading.Thread(target=_keep_dripping, args=(server.port, drips, stop, refused, addresses))
            dripper.start()
            health: list[float] = []
            photos: list[tuple[int, float]] = []

            prober = threading.Thread(target=_probe_health, args=(server.port, stop, health))
            time.sleep(1)
            prober.start()
            started = time.monotonic()
            while time.monotonic() - started < seconds:  # bounded by ``seconds``
                photos.append(_from(server.port, "127.0.0.10", "POST", "/detect", body, content_type))
                time.sleep(max(0.0, 2 - photos[-1][1]))
            stop.set()
            prober.join()
            dripper.join()
        took = [t for _, t in photos]
        p95 = statistics.quantiles(health, n=20, method="inclusive")[18] if len(health) > 1 else max(health)
        print(f"| {share} | {statistics.median(health):.2f} / {p95:.2f} / {max(health):.2f} ({len(health)} read) | "
              f"{dict(sorted(Counter(s for s, _ in photos).items()))} | {statistics.median(took):.1f} / "
              f"{max(took):.1f} | {refused[0]} |")


def _read_slowly(socks: list[socket.socket], stop: threading.Event) -> None:
    """Read 4 KB from each of ``socks`` (non-blocking, added to as it runs) every 0.25 s (16 KB/s each)
    until ``stop``."""
    while not stop.wait(0.25):  # bounded by the caller's ``stop``
        for s in list(socks):
            try:
                s.recv(4096)
            except OSError:  # nothing yet, or closed
                pass


def one_client_reads_slowly(readers: int, seconds: float) -> None:
    noise = noise_jpeg(2000, 1500)
    group = (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
    print(f"\none client opening {readers} slow readers of 9 MB PNG answers one at a time; then for {seconds:g} s "
          "another client asks for the group photo drawn every 2 s, /healthz every 0.25 s from a third\n")
    print("| MYSITE_CLIENT_THREADS | slow readers' answers | other client's pictures | seconds, median / max | "
          "/healthz max (s) |")
    print("|---|---|---|---|---|")
    for share in ("0", "16"):
        with Server(workers=2, cv_threads=1, extra_env={"MYSITE_CLIENT_THREADS": share}) as server:
            socks: list[socket.socket] = []
            lines: list[str] = []
            stop = threading.Event()
            reader = threading.Thread(target=_read_slowly, args=(socks, stop))
            reader.start()
            try:
                for _ in range(readers):
                    s, line = slow_reader(server.port, "/detect?output=image&format=png", noise, "image/jpeg",
                                          "127.0.0.9", timeout=60)
                    s.setblocking(False)
                    socks.append(s)
                    lines.append(_status(line.decode("latin-1")))
                    time.sleep(1.5)
                health: list[float] = []
                prober = threading.Thread(target=_probe_health, args=(server.port, stop, health))
                prober.start()
                pictures: list[tuple[int, float]] = []
                started = time.monotonic()
                while time.monotonic() - started < seconds:  # bounded by ``seconds``
                    pictures.append(_from(server.port, "127.0.0.10", "POST", "/detect?output=image", group,
                                          "image/jpeg"))
                    time.sleep(max(0.0, 2 - pictures[-1][1]))
                stop.set()
                prober.join()
            finally:
                stop.set()
                reader.join()
                for s in socks:
                    s.close()
        took = [t for _, t in pictures]
        print(f"| {share} | {dict(sorted(Counter(lines).items()))} | "
              f"{dict(sorted(Counter(status for status, _ in pictures).items()))} | {statistics.median(took):.2f} / "
              f"{max(took):.2f} | {max(health):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 40, 80, 160], help="KB/s, one client each")
    parser.add_argument("--holders", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--drips", type=int, default=140)
    parser.add_argument("--addresses", type=int, default=1, help="clients dripping, each --drips uploads (up to 6)")
    parser.add_argument("--readers", type=int, default=24)
    parser.add_argument("--only", choices=["links", "idle", "drips", "readers"], help="run one of the four")
    args = parser.parse_args()
    if args.only in (None, "links"):
        slow_links(args.rates[:16])
    if args.only in (None, "idle"):
        idle_bodies(min(args.holders, 64), min(args.seconds, 300))
    if args.only in (None, "drips"):
        one_client_drips(min(args.drips, 400), min(args.seconds, 300), max(1, min(args.addresses, len(DRIPPERS))))
    if args.only in (None, "readers"):
        one_client_reads_slowly(min(args.readers, 48), min(args.seconds, 300))


if __name__ == "__main__":
    main()
