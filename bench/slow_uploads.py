"""``python -m bench.slow_uploads``: uploads over slow links, and connections that declare a body and send none.

Starts the Procfile's gunicorn (its two web workers and the CV pool) on loopback, facing the clients
itself (no nginx), and measures:

1. **slow links**: a 2.2 MB phone photo (4000x3000) sent to ``/detect`` at each of ``--rates`` KB/s
   at once, as phones on poor uplinks send it: the answer and how long it took.
   ``MYSITE_UPLOAD_DEADLINE`` (20 s) and ``MYSITE_UPLOAD_MIN_RATE_KB`` (32) decide which get through.
2. **idle bodies**: ``--holders`` (12) connections that each declare a 13 MB text body and send none
   of it, opened again every 19 s, while a client posts the group photo every 2 s for ``--seconds``
   (40): the answers and how long they took.

Prints Markdown tables; about two minutes. Only 127.0.0.1 is contacted.
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
from testkit.net import steady_upload


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[20, 40, 80, 160], help="KB/s, one client each")
    parser.add_argument("--holders", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    slow_links(args.rates[:16])
    idle_bodies(min(args.holders, 64), min(args.seconds, 300))


if __name__ == "__main__":
    main()
