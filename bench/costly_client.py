"""``python -m bench.costly_client``: one client's costly requests, and everyone else's photos.

Starts the Procfile's gunicorn (two web workers, the CV pool) on loopback, facing the clients itself.
One client (127.0.0.9) keeps ``--hogs`` requests in flight, each a 12 MP photo (the group photo tiled,
3.7 MB) sent to ``/detect?min_face=0.01``: accepted, and several seconds of CV work each. Another
client (127.0.0.10) posts the group photo every second, without waiting for the last, and
``/healthz`` is read every 0.25 s from 127.0.0.1, for ``--seconds``. Prints a Markdown row per
``--hogs`` value: what each got, and how long the other client's photos took. ``--addresses N``: as
many costly clients, each from its own address (127.0.0.9, then 127.0.0.11 on), each keeping ``--hogs``
requests in flight. ``--behind-nginx``:
every request goes through Debian's nginx in front (``proxy_conf.standalone``, as the Docker image and
Elastic Beanstalk run it), so gunicorn sees one trusted peer and each client in ``X-Forwarded-For``.
``--forms``: the costly client sends three of its photos in one multipart form (13.7 MB, as a batch), and the
other client posts the 12 MP photo, once as a multipart file and once as ``image/jpeg``: a row for each.

Only loopback addresses are contacted (127.0.0.1 the server; 127.0.0.9 and 127.0.0.10 the clients').
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter
from contextlib import ExitStack

import cv2
import numpy as np

from bench.deploy import nginx
from bench.server import ROOT, Server, request

Body = tuple[bytes, str]  # a request body and its content type


def tiled_photo(quality: int = 90) -> bytes:
    """The group photo tiled to 4032x3024, as a phone's JPEG."""
    group = cv2.imread(str(ROOT / "tests" / "data" / "group_17_faces.jpg"))
    reps = (3024 // group.shape[0] + 1, 4032 // group.shape[1] + 1, 1)
    return cv2.imencode(".jpg", np.tile(group, reps)[:3024, :4032], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def form(*photos: bytes) -> Body:
    """A multipart form with a file part for each photo, as a browser sends it."""
    parts = [b'--xx\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
             b"Content-Type: image/jpeg\r\n\r\n" + photo + b"\r\n" for photo in photos]
    return b"".join(parts) + b"--xx--\r\n", "multipart/form-data; boundary=xx"


def _timed(port: int, source: str, path: str, body: Body | None = None) -> tuple[int, float]:
    """The status (0: no answer) and seconds of one request from loopback address ``source``."""
    data, content_type = body or (None, None)
    sent = time.monotonic()
    try:
        status = request(port, "POST" if data else "GET", path, data, content_type, timeout=120, source=source)[0]
    except OSError:
        status = 0
    return status, time.monotonic() - sent


def one_run(hogs: int, seconds: float, costly: Body, photo: Body, behind_nginx: bool = False,
            addresses: int = 1, costly_path: str = "/detect?min_face=0.01") -> str:
    with ExitStack() as stack:
        server = stack.enter_context(Server(workers=2, cv_threads=1))
        port = stack.enter_context(nginx([server.port], 120)).port if behind_nginx else server.port
        stop = threading.Event()
        hogged: Counter[int] = Counter()
        photos: list[tuple[int, float]] = []
        health: list[float] = []

        def hog(source: str) -> None:
            while not stop.is_set():  # bounded by ``stop``
                hogged[_timed(port, source, costly_path, costly)[0]] += 1

        def probe() -> None:
            while not stop.wait(0.25):  # bounded by ``stop``
                health.append(_timed(port, "127.0.0.1", "/healthz")[1])

        def one_photo() -> None:
            photos.append(_timed(port, "127.0.0.10", "/detect", photo))

        sources = ["127.0.0.9"] + [f"127.0.0.{11 + i}" for i in range(addresses - 1)]
        threads = [threading.Thread(target=hog, args=(source,)) for source in sources for _ in range(hogs)]
        threads.append(threading.Thread(target=probe))
        for thread in threads:
            thread.start()
        time.sleep(1)
        senders = []
        for _ in range(int(seconds)):  # one a second, each on its own thread
            senders.append(threading.Thread(target=one_photo))
            senders[-1].start()
            time.sleep(1)
        for sender in senders:
            sender.join()
        stop.set()
        for thread in threads:
            thread.join()
    took = [t for status, t in photos if status == 200]
    return (f"{dict(sorted(hogged.items()))} | {dict(sorted(Counter(s for s, _ in photos).items()))} | "
            f"{statistics.median(took) if took else 0:.2f} / {max(took, default=0):.2f} | {max(health):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hogs", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--behind-nginx", action="store_true", help="every request through nginx in front")
    parser.add_argument("--addresses", type=int, default=1, help="costly clients, each from its own address")
    parser.add_argument("--forms", action="store_true", help="three photos a costly request, in a multipart form; "
                        "the other client's 12 MP photo as a multipart file, then as image/jpeg")
    args = parser.parse_args()
    seconds = min(args.seconds, 300)
    if args.forms:
        forms(seconds)
        return
    costly, photo = tiled_photo(), (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
    print(f"one client keeping costly requests in flight ({len(costly) / 1e6:.1f} MB, /detect?min_face=0.01); "
          f"another posting the group photo every second for {args.seconds:g} s\n")
    print("| costly requests in flight | their answers | the other client's photos | seconds, median / max | "
          "/healthz max (s) |")
    print("|---|---|---|---|---|")
    for hogs in args.hogs:
        each = f"{hogs} from each of {args.addresses} addresses" if args.addresses > 1 else f"{hogs}"
        row = one_run(min(hogs, 32), seconds, (costly, "image/jpeg"), (photo, "image/jpeg"), args.behind_nginx,
                      min(args.addresses, 8))
        print(f"| {each} | {row}", flush=True)


def forms(seconds: float) -> None:
    """One costly form in flight, of three 12 MP photos (13.7 MB: near the body limit; min_face=0.02, as much work
    as one request may ask for three); the other client's 12 MP photo as a multipart file, then as image/jpeg."""
    costly, photo = form(tiled_photo(94), tiled_photo(94), tiled_photo(93)), tiled_photo()
    print(f"one client keeping a costly form in flight ({len(costly[0]) / 1e6:.1f} MB, /detect?min_face=0.02); another "
          f"posting a {len(photo) / 1e6:.1f} MB photo every second for {seconds:g} s\n")
    print("| the other client's photo sent as | the costly forms' answers | the other client's photos | "
          "seconds, median / max | /healthz max (s) |")
    print("|---|---|---|---|---|")
    for name, body in (("a multipart file", form(photo)), ("image/jpeg", (photo, "image/jpeg"))):
        print(f"| {name} | {one_run(1, seconds, costly, body, costly_path='/detect?min_face=0.02')}", flush=True)


if __name__ == "__main__":
    main()
