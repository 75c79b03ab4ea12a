"""``python -m bench.upload_memory``: what request bodies cost a web worker, beside what it counts for them.

A web worker counts each body in flight at a multiple of its length (``inputs.body_share``) and holds
them to ``MYSITE_UPLOAD_MEMORY_MB`` together (``memory.Room``). This starts the Procfile's gunicorn on
loopback and measures both halves:

1. **one at a time** (one web worker): each input form at the largest body the limits allow (a
   9.9 MB JPEG, or its base64, and text built to make decoding dear: one character past Latin-1 in
   13 MB of text), sent twice; the growth of the web worker's peak RSS (``VmHWM``, reset before
   each) beside what the worker counted for it. A ratio over 1 is a body that costs more than counted.
2. **a crowd** (the Procfile's two web workers): ``--clients`` (16) clients send one such body each,
   all at once, for each of a few forms; the peak RSS of each web worker and the answers.
   ``--room MB`` sets ``MYSITE_UPLOAD_MEMORY_MB`` (say 100000 to see the workers without the room).
3. **slow readers** (one web worker): ``--readers`` (48) clients each send a 0.5 MB noisy JPEG, ask
   for it drawn as PNG (a 15 MB answer) and read it at 32 KB/s for 25 s; the web worker's peak RSS
   and the answers (``--room`` applies here too).

``--file-parts`` (alone): multipart file parts of 1 to 9.9 MB on the routes that copy them most, one web
worker: the peak growth of three runs after a first, per byte of the body, beside the rate counted.

Prints Markdown tables; about a minute and a half on 2 CPUs. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import threading
import time
from collections import Counter
from functools import partial

import cv2
import numpy as np
from werkzeug.test import EnvironBuilder

from bench.memory import peak_pss_while, reset_peak, rss_mb, status_mb
from bench.server import HOST, Server, multipart
from mysite.settings import Settings
from mysite.web import inputs

EMOJI = "\N{GRINNING FACE}".encode()


def photo(scale: float = 1.0) -> bytes:
    """A JPEG of about 9.9 MB: the upload limit's worth of a noisy photo (``scale``: of its length, about)."""
    rng = np.random.default_rng(1)
    side = scale ** 0.5
    noise = cv2.GaussianBlur((rng.random((int(2880 * side), int(3800 * side), 3)) * 255).astype(np.uint8), (3, 3), 0)
    return cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 97])[1].tobytes()


def _part(name: str, value: bytes) -> tuple[bytes, str]:
    body = f'--xx\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n--xx--\r\n"
    return body, "multipart/form-data; boundary=xx"


def forms(jpg: bytes) -> dict[str, tuple[bytes, str]]:
    """Every way of sending the image, at the size limit, and text made dear to decode."""
    b64 = base64.b64encode(jpg)
    return {
        "multipart file": multipart(jpg),
        "raw image/jpeg": (jpg, "image/jpeg"),
        "raw octet-stream": (jpg, "application/octet-stream"),
        "base64 body": (b64, "text/plain"),
        "JSON": (json.dumps({"image": b64.decode()}).encode(), "application/json"),
        "multipart text field": _part("image", b64),
        "JSON, one \\u escape past Latin-1": (b'{"image": "' + b64 + b'\\ud83d\\ude00"}', "application/json"),
        "JSON, one UTF-8 emoji": (b'{"image": "' + b64 + EMOJI + b'"}', "application/json"),
        "multipart parameter with an emoji": _part("min_size", b"A" * len(b64) + EMOJI),
        "multipart text field with an emoji": _part("image", b64 + EMOJI),
        "urlencoded with an emoji": (b"image=" + b"A" * len(b64) + EMOJI, "application/x-www-form-urlencoded"),
        "base64 body with an emoji": (b64 + EMOJI, "text/plain"),
    }


def counted(body: bytes, content_type: str) -> int:
    """What the worker counts for this body (``inputs.body_share`` under the default settings)."""
    environ = EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ()
    return inputs.body_share(inputs.MemoryRequest(environ), Settings())


def post(port: int, body: bytes, content_type: str, path: str = "/detect") -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("POST", path, body, {"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def one_at_a_time(all_forms: dict[str, tuple[bytes, str]]) -> None:
    print("| body | MB | status | web worker peak growth (MB) | counted (MB) | ratio |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    with Server(workers=1, cv_threads=1) as server:
        (web,) = server.web_pids()
        for name, (body, content_type) in all_forms.items():
            for _ in range(2):  # the second is the one shown: the first may grow the worker's kept heap
                reset_peak(web)
                start = rss_mb(web)
                status = post(server.port, body, content_type)
                grown = status_mb(web, "VmHWM") - start
            share = counted(body, content_type) / 2**20
            worst = max(worst, grown / share)
            print(f"| {name} | {len(body) / 2**20:.1f} | {status} | {grown:.0f} | {share:.0f} | {grown / share:.2f} |")
    print(f"\nWorst ratio of measured to counted: {worst:.2f}\n")


def _files(*parts: tuple[str, bytes]) -> tuple[bytes, str]:
    """A multipart body of file parts (field name, content), with the page's task when one is ``endpoint``."""
    body = b"".join(f'--xx\r\nContent-Disposition: form-data; name="{name}"'.encode()
                    + (b"" if name == "endpoint" else b'; filename="p.jpg"\r\nContent-Type: image/jpeg')
                    + b"\r\n\r\n" + value + b"\r\n" for name, value in parts)
    return body + b"--xx--\r\n", "multipart/form-data; boundary=xx"


def file_parts(scales: list[float]) -> None:
    """What a multipart body's file parts cost, per byte, at several sizes, on the routes that copy them most."""
    print("| route | MB | status | web worker peak growth (MB, three runs) | per byte | counted per byte |")
    print("|---|---|---|---|---|---|")
    with Server(workers=1, cv_threads=1) as server:
        (web,) = server.web_pids()
        for scale in scales:
            jpg, half = photo(scale), photo(scale / 2)
            junk = bytes(len(jpg))
            for name, path, (body, content_type) in (
                ("/detect", "/detect", _files(("image", jpg))),
                ("/detect, two images", "/detect", _files(("image", half), ("image", half))),
                ("/v1/vision/face/match", "/v1/vision/face/match", _files(("image1", half), ("image2", half))),
                ("the page, a file not named image (not an image: 415)", "/",
                 _files(("endpoint", b"/detect"), ("upload", junk))),
            ):
                grown = []
                for _ in range(4):  # the first may grow the worker's kept heap: not shown
                    reset_peak(web)
                    start = rss_mb(web)
                    status = post(server.port, body, content_type, path)
                    grown.append(status_mb(web, "VmHWM") - start)
                size = len(body) / 2**20
                print(f"| {name} | {size:.1f} | {status} | {', '.join(f'{g:.0f}' for g in grown[1:])} | "
                      f"{max(grown[1:]) / size:.2f} | {counted(body, content_type) / len(body):.2f} |", flush=True)


def crowd(all_forms: dict[str, tuple[bytes, str]], clients: int, room: float | None) -> None:
    env = {"MYSITE_UPLOAD_MEMORY_MB": str(room)} if room else {}
    print(f"{clients} clients at once, MYSITE_UPLOAD_MEMORY_MB={room or Settings().upload_memory_mb:g}\n")
    print("| body | answers | slowest (s) | peak RSS of each web worker (MB) | whole server, PSS peak (MB) |")
    print("|---|---|---|---|---|")
    with Server(workers=2, cv_threads=1, extra_env=env) as server:
        webs = server.web_pids()
        for name in ("multipart file", "JSON", "multipart text field", "JSON, one UTF-8 emoji"):
            body, content_type = all_forms[name]
            for pid in webs:
                reset_peak(pid)
            results: list[tuple[int, float]] = []
            whole = peak_pss_while(server, [partial(_timed_post, server.port, body, content_type, results)] * clients)
            answers = Counter(status for status, _ in results)
            slowest = max((took for _, took in results), default=0.0)
            peaks = ", ".join(f"{status_mb(pid, 'VmHWM'):.0f}" for pid in webs)
            print(f"| {name} | {dict(sorted(answers.items()))} | {slowest:.1f} | {peaks} | {whole:.0f} |")


def _timed_post(port: int, body: bytes, content_type: str, results: list[tuple[int, float]]) -> None:
    """Post ``body``; its status and seconds go to ``results``."""
    began = time.perf_counter()
    status = post(port, body, content_type)
    results.append((status, time.perf_counter() - began))


def slow_readers(readers: int, room: float | None) -> None:
    rng = np.random.default_rng(3)
    noisy = cv2.imencode(".jpg", (rng.random((2000, 2600, 3)) * 255).astype(np.uint8),
                         [cv2.IMWRITE_JPEG_QUALITY, 10])[1].tobytes()
    env = {"MYSITE_UPLOAD_MEMORY_MB": str(room)} if room else {}
    with Server(workers=1, cv_threads=1, extra_env=env) as server:
        (web,) = server.web_pids()
        reset_peak(web)
        start = rss_mb(web)
        statuses: list[str] = []
        threads = [threading.Thread(target=_read_slowly, args=(server.port, noisy, statuses)) for _ in range(readers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        print(f"\n{readers} slow readers of {len(noisy) // 1024} KB JPEGs drawn as PNG, "
              f"MYSITE_UPLOAD_MEMORY_MB={room or Settings().upload_memory_mb:g}: answers "
              f"{dict(sorted(Counter(statuses).items()))}; web worker RSS {start:.0f} MB at the start, "
              f"peak {status_mb(web, 'VmHWM'):.0f} MB")


def _read_slowly(port: int, jpeg: bytes, statuses: list[str]) -> None:
    """Ask for ``jpeg`` drawn as PNG and read the answer 64 KB every 2 s, for 25 s at most."""
    with socket.create_connection((HOST, port), timeout=60) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        conn.sendall(f"POST /detect?output=image&format=png HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/jpeg"
                     f"\r\nContent-Length: {len(jpeg)}\r\nConnection: close\r\n\r\n".encode() + jpeg)
        first = conn.recv(4096)
        statuses.append(first.split(b" ")[1].decode() if first.count(b" ") else "none")
        ends = time.monotonic() + 25
        while time.monotonic() < ends:
            try:
                if not conn.recv(65536):
                    break
            except OSError:
                break
            time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--room", type=float, default=None, help="MYSITE_UPLOAD_MEMORY_MB for the crowd")
    parser.add_argument("--readers", type=int, default=48, help="slow readers (0: none)")
    parser.add_argument("--no-single", action="store_true", help="no one-at-a-time table")
    parser.add_argument("--file-parts", action="store_true",
                        help="only multipart file parts of 1, 2.5, 5 and 9.9 MB, per byte, on several routes")
    args = parser.parse_args()
    if args.file_parts:
        file_parts([0.1, 0.25, 0.5, 1.0])
        return
    all_forms = forms(photo())
    if not args.no_single:
        one_at_a_time(all_forms)
    crowd(all_forms, min(args.clients, 64), args.room)
    if args.readers:
        slow_readers(min(args.readers, 64), args.room)


if __name__ == "__main__":
    main()
