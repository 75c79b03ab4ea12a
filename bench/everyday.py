"""``python -m bench.everyday``: Haar and YuNet beside the book on photos with known faces, 0.3 to 24 MP.

The photos are ``testkit.scenes.suite()`` (grids and random layouts, 5 to 100 faces, several
backgrounds) and the book's group photo. For each photo: the book's code, /detect with Haar
(the default) and with YuNet, through the app in-process (decode + detect + JSON), timed in
turn rep by rep so a busy machine slows them alike. Wall and CPU ms (median; CPU counts every
thread), the book's CPU time divided by each one's, recall of the placed faces at least the
detector's smallest face (``min_face`` of the long side, never below its ``min_size``) at IoU
>= 0.5, and false positives (boxes overlapping no placed face at IoU >= 0.3). Prints Markdown;
never fails. Options: ``--sizes "0.3 MP,1 MP"``, ``--reps N``.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from typing import Any

import cv2

from bench.measure import interleaved, iou, ratio, recall
from bench.server import ROOT
from mysite import create_app
from mysite.vision import fastpath
from mysite.vision.decode import read_header
from testkit import book, scenes

FP_IOU = 0.3
DETECTORS = {"haar": (25, 0.025), "yunet": (10, 0.025)}  # min_size, min_face: the models' defaults


def photos(sizes: tuple[str, ...]) -> list[tuple[str, bytes, list[list[int]]]]:
    out = []
    if "0.3 MP" in sizes:
        group = (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
        out.append(("0.3 MP book's group photo (book's 17 boxes)", group, [d["box"] for d in book.detect(group)]))
    for sc in scenes.suite(sizes):
        out.append((f"{sc.name}, {sc.background}", *scenes.build_jpeg(sc)))
    return out


def _detect(client: Any, data: bytes, detector: str) -> list[list[int]]:
    r = client.post(f"/detect?detector={detector}", data={"image": (io.BytesIO(data), "p.jpg")})
    if r.status_code != 200:
        raise RuntimeError(f"/detect answered {r.status_code}: {r.get_json()}")
    return [d["box"] for d in r.get_json()["result"]]


def quality(known: list[list[int]], boxes: list[list[int]], min_px: int) -> tuple[int, int, int, int]:
    """Placed faces >= min_px found (IoU >= 0.5), found with a box on them, how many there are, false positives.

    "A box on them": centred inside the placed box and IoU >= 0.3. The placed boxes are the book's
    (Haar's) boxes; YuNet's are narrower, which puts a few of its boxes on a face just under IoU 0.5.
    """
    wanted = [k for k in known if k[2] - k[0] >= min_px]
    hit, n = recall(wanted, boxes)
    on = sum(any(iou(k, b) >= FP_IOU and k[0] <= (b[0] + b[2]) / 2 <= k[2] and k[1] <= (b[1] + b[3]) / 2 <= k[3]
                 for b in boxes) for k in wanted)
    fp = sum(not any(iou(b, k) >= FP_IOU for k in known) for b in boxes)
    return hit, on, n, fp


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.everyday", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(scenes.SIZES), help="comma-separated, of: " + ", ".join(scenes.SIZES))
    ap.add_argument("--reps", type=int, default=0, help="repetitions per photo (default: 7 below 3 MP, else 3)")
    args = ap.parse_args(argv)
    sizes = tuple(s.strip() for s in args.sizes.split(","))
    started = time.perf_counter()
    print(f"bench.everyday: {os.cpu_count()} CPUs, OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), "
          f"load average {os.getloadavg()[0]:.2f} at start. Times in one run, interleaved; compare CPU ratios.\n")
    client = create_app({"MYSITE_URL_FETCH": "off", "MYSITE_LOG_LEVEL": "WARNING"}).test_client()
    print("| photo | detector | wall ms | CPU ms | book CPU ÷ CPU | found (IoU ≥ 0.5) / placed ≥ min | "
          "a box on it | book found | false positives |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, list[int]] = {}
    for name, data, known in photos(sizes):
        header = read_header(data)
        mp = header.width * header.height / 1e6
        reps = args.reps or (7 if mp < 3 else 3)
        fns: dict[str, Callable[[], Any]] = {"book": lambda data=data: [d["box"] for d in book.detect(data)]}
        for det in DETECTORS:
            fns[det] = lambda data=data, det=det: _detect(client, data, det)
        t = interleaved(fns, reps)
        for label, (timing, boxes) in t.items():
            min_size, min_face = DETECTORS.get(label, DETECTORS["haar"])
            min_px = fastpath.smallest(max(header.width, header.height), min_size, min_face)
            hit, on, n, fp = quality(known, boxes, min_px)
            b_hit = quality(known, t["book"][1], min_px)[0]
            tot = totals.setdefault(f"{name.split(' ')[0]} MP {label}", [0] * 7)
            for i, v in enumerate((hit, on, n, fp, b_hit, timing.cpu, t["book"][0].cpu)):
                tot[i] += v
            print(f"| {name} | {label} | {timing.median:.0f} | {timing.cpu:.0f} | "
                  f"{ratio(t['book'][0].cpu, timing.cpu):.2f}x | {hit}/{n} | {on}/{n} | {b_hit}/{n} | {fp} |", flush=True)
    print("\n| size | detector | book CPU ÷ CPU, all photos | found (IoU ≥ 0.5) / placed (≥ its min) | a box on it "
          "| the book found | false positives |")
    print("|---|---|---|---|---|---|---|")
    for key, (hit, on, n, fp, b_hit, cpu, book_cpu) in totals.items():
        size, det = key.rsplit(" ", 1)
        print(f"| {size} | {det} | {ratio(book_cpu, cpu):.2f}x | {hit}/{n} | {on}/{n} | {b_hit}/{n} | {fp} |")
    print(f"\n(took {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f} at end)")


if __name__ == "__main__":
    main()
