"""``python -m bench.detectors``: every /detect detector side by side with the book, on photos with known faces.

Photos: the book's group photo (its 17 faces are the reference), the 12 MP composition
(testkit/compose.py), compositions of three sizes whose faces are exactly ``min_face`` wide
(2.5 % of the long side; the group photo in them spans 0.85-1.15 of it), and two selfies
(one face of 1200 and 2000 px in a 4000x3000 frame). For each photo and detector: wall and
CPU time in-process (the app's test client: decode + detect + JSON) and over HTTP (the
Procfile's gunicorn, one worker, on loopback; CPU is the worker's), faces found, recall
(IoU >= 0.5) of the placed faces >= min_face and of the book's boxes >= min_face, and false
positives (boxes overlapping no placed face, IoU < 0.3). Then the peak RSS of a worker with
every shipped model loaded after 12 MP requests. Prints Markdown tables; never fails.
Takes about 3 minutes on an idle 2-CPU machine (``--quick``: about half).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2

from bench.measure import Timing, interleaved, iou, ratio, recall
from bench.server import ROOT, Server, multipart, request
from mysite import create_app
from mysite.vision.decode import read_header
from mysite.web.endpoints import FACE_DETECTORS
from mysite.web.state import current_registry
from testkit import book, compose

MIN_FACE = 0.025  # the face models' default (models.toml)
FP_IOU = 0.3  # a found box overlapping no placed face at least this much is a false positive


@dataclass
class Photo:
    name: str
    data: bytes
    known: list[list[int]]  # faces placed (compositions) or the book's own boxes (its group photo)
    reps: int

    @property
    def min_px(self) -> int:
        header = read_header(self.data)
        return round(MIN_FACE * max(header.width, header.height))


def photos(quick: bool) -> list[Photo]:
    """The photos, each with its known faces; repetitions fewer where the book takes seconds."""
    big = 2 if quick else 3
    group = (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
    out = [Photo("group photo 640x482", group, [d["box"] for d in book.detect(group)], 5 if quick else 15)]
    out.append(Photo("12 MP composition 4000x3000", *compose.build_jpeg(), big))
    for w, h in ((4000, 3000), (3000, 2000), (6000, 4000)):
        px = round(MIN_FACE * max(w, h))
        data, known = compose.build_jpeg(compose.exact_layout(px, w, h), w, h)
        out.append(Photo(f"faces at min_face ({px} px) {w}x{h}", data, known, big if w * h < 20e6 else 2))
    for face in (1200, 2000):
        data, known = compose.build_jpeg(compose.selfie_layout(face, 4000, 3000), 4000, 3000)
        out.append(Photo(f"selfie, {face} px face, 4000x3000", data, known, big))
    return out


@dataclass
class Result:
    detector: str
    local: Timing
    http: Timing | None
    boxes: list[list[int]]


def measure(p: Photo, client: Any, srv: Server | None, detectors: list[str]) -> list[Result]:
    """The book and each detector, in-process and over HTTP, timed in turn rep by rep."""
    body, ctype = multipart(p.data)
    fns: dict[str, Callable[[], Any]] = {"book": lambda: [d["box"] for d in book.detect(p.data)]}
    cpu: dict[str, Callable[[], float]] = {}
    for det in detectors:
        fns[det] = lambda det=det: _boxes(client.post(f"/detect?detector={det}", data=body, content_type=ctype))
        if srv is not None:
            fns[f"{det} http"] = lambda det=det: _post(srv.port, f"/detect?detector={det}", body, ctype)
            cpu[f"{det} http"] = srv.cpu_seconds
    t = interleaved(fns, p.reps, cpu)
    return [Result(name, t[name][0], t.get(f"{name} http", (None,))[0], t[name][1]) for name in ["book", *detectors]]


def _boxes(response: Any) -> list[list[int]]:
    if response.status_code != 200:
        raise RuntimeError(f"/detect answered {response.status_code}: {response.get_json()}")
    return [d["box"] for d in response.get_json()["result"]]


def _post(port: int, path: str, body: bytes, ctype: str) -> None:
    status, text = request(port, "POST", path, body, ctype)
    if status != 200:
        raise RuntimeError(f"{path} answered {status}: {text[:200]!r}")


def quality(p: Photo, r: Result, book_boxes: list[list[int]]) -> tuple[str, str, int]:
    """Recall of the placed faces >= min_face, recall of the book's boxes >= min_face, false positives."""
    wanted = [k for k in p.known if k[2] - k[0] >= p.min_px]
    hit, n = recall(wanted, r.boxes)
    b_hit, b_n = recall([b for b in book_boxes if b[2] - b[0] >= p.min_px], r.boxes)
    fp = sum(not any(iou(b, k) >= FP_IOU for k in p.known) for b in r.boxes)
    return _pct(hit, n), _pct(b_hit, b_n), fp


def _pct(hit: int, n: int) -> str:
    return f"{hit}/{n} = {100 * hit / n:.0f} %" if n else "-"


def peak_rss(big: Photo, detectors: list[str]) -> list[tuple[str, float]]:
    """Peak RSS (VmHWM) of a fresh one-worker server (every shipped model loaded) after 12 MP requests."""
    body, ctype = multipart(big.data)
    out = []
    for plan in [[d] for d in detectors] + [detectors]:
        with Server(1, cv2.getNumThreads()) as srv:
            for det in plan:
                _post(srv.port, f"/detect?detector={det}", body, ctype)
            out.append((" then ".join(plan), max(srv.peak_rss_mb()[1])))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.detectors", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--no-http", action="store_true", help="in-process only")
    args = ap.parse_args(argv)
    started, cpu0 = time.perf_counter(), time.process_time()
    print(f"bench.detectors: {os.cpu_count()} CPUs, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    app = create_app({"MYSITE_URL_FETCH": "off", "MYSITE_LOG_LEVEL": "WARNING"})
    registry = current_registry(app)
    detectors = [v for v, model in FACE_DETECTORS.models.items() if registry.entries[model].loaded]
    missing = [v for v in FACE_DETECTORS.models if v not in detectors]
    client = app.test_client()
    items = photos(args.quick)
    rows: list[tuple[Photo, list[Result]]] = []
    if args.no_http:
        for p in items:
            rows.append((p, measure(p, client, None, detectors)))
            print(f"  {p.name}: done", file=sys.stderr, flush=True)
    else:
        with Server(1, cv2.getNumThreads()) as srv:
            for p in items:
                rows.append((p, measure(p, client, srv, detectors)))
                print(f"  {p.name}: done", file=sys.stderr, flush=True)
    print_table(rows)
    if missing:
        print(f"\nNot loaded here, so not measured: {', '.join(missing)}")
    if not args.no_http:
        print("\n### Peak RSS of a gunicorn worker, every shipped model loaded, after 12 MP requests\n")
        print("| requests (12 MP composition, detector=) | worker peak RSS (MB) |")
        print("|---|---|")
        for plan, mb in peak_rss(items[1], detectors):
            print(f"| {plan} | {mb:.0f} |")
    print(f"\n(took {time.perf_counter() - started:.0f} s wall, {time.process_time() - cpu0:.0f} s CPU in this "
          f"process; load average {os.getloadavg()[0]:.2f} at end)")


def print_table(rows: list[tuple[Photo, list[Result]]]) -> None:
    print("\n### /detect detectors vs the book (ms: median / p90 wall; CPU: median, every thread)\n")
    print("book = the book's code in-process (full-size Haar, minSize 25). Recall at IoU >= 0.5; false "
          f"positives: boxes overlapping no placed face (IoU < {FP_IOU}). On the group photo the placed faces "
          "are the book's 17 boxes.\n")
    print("| photo | detector | in-process wall | in-process CPU | HTTP wall | HTTP worker CPU | "
          "book ÷ HTTP (wall) | book ÷ HTTP (CPU) | faces | recall placed >= min_face | "
          "recall book's >= min_face | false positives |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p, results in rows:
        book_r = results[0]
        for r in results:
            placed, of_book, fp = quality(p, r, book_r.boxes)
            http = f"{r.http}" if r.http else "-"
            http_cpu = f"{r.http.cpu:.0f}" if r.http else "-"
            x_wall = f"{ratio(book_r.local.median, r.http.median):.1f}x" if r.http else "-"
            x_cpu = f"{ratio(book_r.local.cpu, r.http.cpu):.1f}x" if r.http else "-"
            print(f"| {p.name} | {r.detector} | {r.local} | {r.local.cpu:.0f} | {http} | {http_cpu} | {x_wall} | "
                  f"{x_cpu} | {len(r.boxes)} | {placed} | {of_book} | {fp} |")


if __name__ == "__main__":
    main()
