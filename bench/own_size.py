"""``python -m bench.own_size``: Haar's boxes on photos scanned at their own size, against the book's, box for box.

Photos no larger than about 1 MP are not reduced (the default ``min_face`` asks for faces under 1.7
cascade windows), so the coarse look scans them for OpenCV's exact boxes. For each photo: the
book's boxes (OpenCV's full scan, minSize 25) and ours (``Cascade.run`` with the model's defaults),
both limited to faces at least the smallest asked for; whether they are identical; the CPU time of
each (median, one thread, interleaved). Photos: the group photo, the astronaut, the scenes of
``tests/test_coarse_scan.py`` and of ``bench.everyday`` at 0.3 and 1 MP, and ``--more`` others
(sizes 640x480 to 960x1280, grids and random layouts, 3 to 24 faces). Prints Markdown; never fails.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from bench.server import ROOT
from mysite.vision import fastpath
from mysite.vision.cascade import Cascade, CascadePlan
from testkit import scenes

DATA = ROOT / "tests" / "data"
FACE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt.xml"
MIN_SIZE, MIN_FACE = 25, 0.025
SIZES = [(640, 480), (1024, 768), (1155, 866), (1280, 720), (960, 1280), (800, 600)]


def photos(more: int) -> list[tuple[str, np.ndarray]]:
    out = [("group photo", cv2.imread(str(DATA / "group_17_faces.jpg"))),
           ("astronaut", cv2.imread(str(DATA / "astronaut.png")))]
    for i, (w, h) in enumerate([(640, 480), (1155, 866), (800, 600)]):  # tests/test_coarse_scan.py's
        lo = max(MIN_SIZE, round(MIN_FACE * w))
        for n, layout, hi in ((20, "grid", 1.6 * lo), (12, "random", 3 * lo), (5, "random", 4 * lo)):
            sc = scenes.Scene(f"{w}x{h} {n}", w, h, n, (lo, hi), layout, scenes.BACKGROUNDS[(i + n) % 5], 300 + i + n)
            out.append((f"{sc.name} {layout}, {sc.background}", scenes.build(sc)[0]))
    for sc in scenes.suite(("0.3 MP", "1 MP")):  # bench.everyday's, as JPEG
        out.append((f"{sc.name}, {sc.background}", _jpeg_decoded(sc)))
    rng = np.random.default_rng(7)
    for k in range(more):
        w, h = SIZES[k % len(SIZES)]
        lo = max(MIN_SIZE, round(MIN_FACE * max(w, h)))
        n, layout, hi = int(rng.integers(3, 25)), ("grid", "random")[k % 2], lo * float(rng.uniform(1.5, 5))
        sc = scenes.Scene(f"{w}x{h} {n} {layout}", w, h, n, (lo, hi), layout, scenes.BACKGROUNDS[k % 5], 1000 + k)
        try:
            out.append((f"{sc.name}, {sc.background}", _jpeg_decoded(sc)))
        except ValueError:  # too many faces for the frame: skipped
            pass
    return out


def _jpeg_decoded(sc: scenes.Scene) -> np.ndarray:
    """The scene as a client sends it: through JPEG."""
    return cv2.imdecode(np.frombuffer(scenes.build_jpeg(sc)[0], np.uint8), cv2.IMREAD_COLOR)


def _cpu_ms(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        started = time.process_time()
        fn()
        times.append((time.process_time() - started) * 1000)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.own_size", description=__doc__.splitlines()[0])
    ap.add_argument("--more", type=int, default=12, help="extra random scenes (default 12)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per photo (default 3)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)  # CPU time of one thread: the same work, whatever the machine's load
    face = Cascade(FACE)
    print("| photo | size | book's boxes | ours | identical | book CPU ms | ours CPU ms | book ÷ ours |")
    print("|---|---|---|---|---|---|---|---|")
    same = total = 0
    book_ms = ours_ms = 0.0
    for name, image in photos(args.more):
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        asked = fastpath.smallest(max(gray.shape), MIN_SIZE, MIN_FACE)
        plan = face.plan_for(gray, scale_factor=1.1, min_neighbors=5, min_size=MIN_SIZE, min_face=MIN_FACE)

        def book(gray: np.ndarray = gray) -> list[list[int]]:
            rects = face._classifier().detectMultiScale(gray, 1.1, 5, minSize=(MIN_SIZE, MIN_SIZE))
            return sorted([x, y, x + w, y + h] for x, y, w, h in np.asarray(rects).reshape(-1, 4).tolist())

        def ours(gray: np.ndarray = gray, plan: CascadePlan = plan) -> list[list[int]]:
            return sorted(d["box"] for d in face.run(gray, plan))

        b = [x for x in book() if x[2] - x[0] >= asked]
        o = [x for x in ours() if x[2] - x[0] >= asked]
        tb, to = _cpu_ms(book, args.reps), _cpu_ms(ours, args.reps)
        same += b == o
        total += 1
        book_ms += tb
        ours_ms += to
        print(f"| {name} | {gray.shape[1]}x{gray.shape[0]} | {len(b)} | {len(o)} | {'yes' if b == o else 'no'} | "
              f"{tb:.0f} | {to:.0f} | {tb / to:.2f}x |", flush=True)
    print(f"\n{same}/{total} photos with the book's boxes exactly; CPU, all photos: book {book_ms:.0f} ms, "
          f"ours {ours_ms:.0f} ms, {book_ms / ours_ms:.2f}x")


if __name__ == "__main__":
    main()
