"""The coarse-to-fine scan of a reduced photo's large levels (mysite/vision/coarse_scan.py), against
OpenCV's full scan of the same working image: real photos, the shipped cascades."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from mysite.vision import budget, coarse_scan, fastpath
from mysite.vision.cascade import Cascade
from testkit.boxes import iou, recall
from testkit.compose import build, exact_layout, selfie_layout

DATA = Path(__file__).parent / "data"
FACE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt.xml"
CAT = Path(cv2.data.haarcascades) / "haarcascade_frontalcatface_extended.xml"
MIN_FACE = 0.025


@pytest.fixture(scope="module")
def face() -> Cascade:
    return Cascade(FACE)


def _work(cascade: Cascade, gray: np.ndarray) -> tuple[np.ndarray, int, int, float]:
    """The working image Cascade.run scans for a full-size gray photo, its smallest window (the
    margin's), the smallest object asked for there, and its scale."""
    p = fastpath.plan(gray.shape[1], gray.shape[0], min_size=25, min_face=MIN_FACE, window=cascade.window)
    work, scale = fastpath.working_image(gray, 1.0, p)
    return (work, max(1, math.floor(max(25, p.min_px * fastpath.MARGIN) * scale)),
            max(1, math.floor(max(25, p.min_px) * scale)), scale)


def _full_scan(cascade: Cascade, gray: np.ndarray) -> list[list[int]]:
    """OpenCV's own scan of the working image, grouped, in original pixels [x1, y1, x2, y2]."""
    work, min_px, _, scale = _work(cascade, gray)
    rects = cascade._classifier().detectMultiScale(work, scaleFactor=1.1, minNeighbors=5, minSize=(min_px, min_px))
    return [[round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale)]
            for x, y, w, h in np.asarray(rects).reshape(-1, 4).tolist()]


def _run(cascade: Cascade, gray: np.ndarray) -> list[list[int]]:
    found = cascade.run(gray, cascade.plan_for(gray, scale_factor=1.1, min_neighbors=5, min_size=25, min_face=MIN_FACE))
    return [d["box"] for d in found]


def test_the_proposer_is_the_cascade_without_its_last_stages_and_accepts_all_it_accepts(face):
    text = FACE.read_text()
    short = coarse_scan.proposer_xml(text)
    assert short is not None and "<stageNum>16</stageNum>" in short
    proposer = coarse_scan.load_xml(short)
    gray = cv2.cvtColor(cv2.imread(str(DATA / "group_17_faces.jpg")), cv2.COLOR_BGR2GRAY)
    # The same positions are visited (stage 0 decides the skips, and it is the same stage), and a
    # window that passes 22 stages passes the first 16.
    full = {tuple(r) for r in np.asarray(face._classifier().detectMultiScale(gray, 1.1, 0)).reshape(-1, 4).tolist()}
    coarse = {tuple(r) for r in np.asarray(proposer.detectMultiScale(gray, 1.1, 0)).reshape(-1, 4).tolist()}
    assert full and full < coarse


def test_a_cascade_too_short_to_cut_proposes_with_all_its_stages():
    text = FACE.read_text().replace("<stageNum>22</stageNum>", "<stageNum>12</stageNum>")
    assert coarse_scan.proposer_xml(text) is None
    assert coarse_scan.proposer_xml("<opencv_storage></opencv_storage>") is None


@pytest.fixture(scope="module")
def composition_scans(face) -> tuple[set, set, int, int, np.ndarray]:
    """The 12 MP composition's raw hits, ours and those of OpenCV's full scan of the same working
    image; its smallest window and smallest object asked for; the full scan's detections."""
    canvas, _ = build()
    work, min_px, asked_px, _ = _work(face, cv2.cvtColor(canvas, cv2.COLOR_BGR2GRAY))
    proposer = coarse_scan.load_xml(coarse_scan.proposer_xml(FACE.read_text()) or "")
    levels = budget.pyramid(work.shape[1], work.shape[0], face.window_size, 1.1, (min_px, min_px))
    ours = set(coarse_scan.scan(face._classifier(), proposer, work, levels, window=face.window_size,
                                scale_factor=1.1, asked_px=asked_px).hits)
    theirs = {tuple(r) for r in np.asarray(face._classifier().detectMultiScale(
        work, 1.1, 0, minSize=(min_px, min_px))).reshape(-1, 4).tolist()}
    return ours, theirs, min_px, asked_px, cv2.groupRectangles([list(r) for r in theirs], 5, 0.2)[0]


@pytest.mark.parametrize("which", ["margin", "asked", "large"])
@pytest.mark.slow
def test_every_level_is_scanned_as_opencv_scans_it(face, composition_scans, which):
    """A window evaluated here answers what it answers in detectMultiScale, and the windows left out
    are few: those far from any hit or proposal."""
    ours, theirs, min_px, asked_px, detections = composition_scans
    large = 2 * face.window_size[0]
    sizes = {"margin": (min_px, asked_px - 1), "asked": (asked_px, large - 1), "large": (large, 10 ** 6)}[which]
    ours = {r for r in ours if sizes[0] <= r[2] <= sizes[1]}
    theirs = {r for r in theirs if sizes[0] <= r[2] <= sizes[1]}
    assert len(theirs) > 50
    if which == "asked":  # scanned by OpenCV itself
        assert ours == theirs
        return
    # What is found here, OpenCV's scan finds (but for a window or two its scan skips after a
    # first-stage rejection on the window beside it, which a region's edge can visit) ...
    assert len(ours - theirs) <= 0.03 * len(ours)
    # ... and of its hits that make its detections, all but a few (the rest are far from any hit of
    # a size asked for, or from any proposal: background, and objects smaller than asked for).
    def xyxy(r: tuple) -> list[int]:
        return [r[0], r[1], r[0] + r[2], r[1] + r[3]]
    asked = [d for d in detections if d[2] >= asked_px]  # detections of objects at least as large as asked
    making = {r for r in theirs if any(iou(xyxy(r), xyxy(d)) >= 0.5 for d in asked)}
    assert len(making) > 20
    assert len(ours & making) >= 0.95 * len(making)


@pytest.mark.parametrize("photo", ["12 MP composition", "faces at min_face 4000x3000", "faces at min_face 6000x4000",
                                   "selfie 300 px", "selfie 1200 px"])
@pytest.mark.slow
def test_a_reduced_photo_gets_the_full_scans_faces(face, photo):
    layouts = {
        "12 MP composition": build(),
        "faces at min_face 4000x3000": build(exact_layout(100, 4000, 3000), 4000, 3000),
        "faces at min_face 6000x4000": build(exact_layout(150, 6000, 4000), 6000, 4000),
        "selfie 300 px": build(selfie_layout(300, 4000, 3000), 4000, 3000),
        "selfie 1200 px": build(selfie_layout(1200, 4000, 3000), 4000, 3000),
    }
    canvas, known = layouts[photo]
    gray = cv2.cvtColor(canvas, cv2.COLOR_BGR2GRAY)
    full, ours = _full_scan(face, gray), _run(face, gray)
    wanted = [k for k in known if k[2] - k[0] >= MIN_FACE * max(gray.shape)]
    assert recall(wanted, ours) == recall(wanted, full) == (len(wanted), len(wanted))
    # No box the full scan does not have (a false positive of ours alone), and its boxes kept.
    assert all(any(iou(b, f) >= 0.5 for f in full) for b in ours)
    assert sum(any(iou(f, b) >= 0.8 for b in ours) for f in full) >= 0.9 * len(full)


@pytest.mark.slow
def test_a_cat_face_in_a_reduced_photo_is_found_as_the_full_scan_finds_it():
    cat = Cascade(CAT)
    photo = cv2.cvtColor(cv2.imread(str(DATA / "cat.jpg")), cv2.COLOR_BGR2GRAY)
    gray = np.full((3000, 4000), 128, np.uint8)  # its 242 px cat face in a 12 MP frame
    gray[1000:1000 + photo.shape[0], 1500:1500 + photo.shape[1]] = photo
    full, ours = _full_scan(cat, gray), _run(cat, gray)
    assert full and len(ours) == len(full)
    assert all(any(iou(b, f) >= 0.8 for b in ours) for f in full)


def _book(cascade: Cascade, gray: np.ndarray, min_neighbors: int = 5) -> list[list[int]]:
    """What the book's code answers: OpenCV's full scan from 25 px, as [x1, y1, x2, y2], sorted."""
    rects = cascade._classifier().detectMultiScale(gray, 1.1, min_neighbors, minSize=(25, 25))
    return sorted([x, y, x + w, y + h] for x, y, w, h in np.asarray(rects).reshape(-1, 4).tolist())


def _own_size_photos() -> list[tuple[str, np.ndarray]]:
    from testkit import scenes

    out = [("astronaut", cv2.imread(str(DATA / "astronaut.png")))]
    for i, (w, h) in enumerate([(640, 480), (1155, 866), (800, 600)]):
        lo = max(25, round(MIN_FACE * w))
        for n, layout, hi in ((20, "grid", 1.6 * lo), (12, "random", 3 * lo), (5, "random", 4 * lo)):
            sc = scenes.Scene(f"{w}x{h} {n}", w, h, n, (lo, hi), layout, scenes.BACKGROUNDS[(i + n) % 5], 300 + i + n)
            out.append((sc.name, scenes.build(sc)[0]))
    return out


@pytest.mark.slow
def test_photos_at_their_own_size_get_the_books_boxes(face):
    """No reduction (the smallest face asked for is under 1.7 windows): the coarse look, with each group
    of hits scanned whole, gives OpenCV's own boxes; the book's group photo is checked in test_fastpath."""
    exact, total = 0, 0
    for name, image in _own_size_photos():
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        asked = fastpath.smallest(max(gray.shape), 25, MIN_FACE)
        assert fastpath.plan(gray.shape[1], gray.shape[0], min_size=25, min_face=MIN_FACE, window=face.window).scale == 1
        book = [b for b in _book(face, gray) if b[2] - b[0] >= asked]
        ours = sorted(b for b in _run(face, gray) if b[2] - b[0] >= asked)
        assert recall(book, ours, 0.8) == (len(book), len(book)) and len(ours) == len(book), name
        exact += ours == book
        total += 1
    assert exact >= total - 1  # a box a pixel off on at most one photo


def test_every_raw_hit_at_its_own_size_is_opencvs(face):
    """min_neighbors=0 asks for every raw hit: OpenCV's full scan, not the coarse look."""
    gray = cv2.cvtColor(cv2.imread(str(DATA / "group_17_faces.jpg")), cv2.COLOR_BGR2GRAY)
    found = face.run(gray, face.plan_for(gray, scale_factor=1.1, min_neighbors=0, min_size=25, min_face=MIN_FACE))
    assert sorted(d["box"] for d in found) == _book(face, gray, 0)


def test_the_buffer_counted_is_the_widest_and_tallest_a_classifier_kept_each_on_its_own():
    """OpenCV keeps the widest rows and the most rows it has built, separately: a wide strip then a tall one
    leave a buffer as wide as the first and as tall as the second, more than either built."""
    clf = cv2.CascadeClassifier(str(FACE))
    counted = coarse_scan._Counted(clf, (20, 20))
    wide, tall = np.zeros((40, 400), np.uint8), np.zeros((400, 40), np.uint8)
    one = [budget.pyramid_shape(budget.pyramid(w, h, (20, 20), 1.1, (20, 20), (40, 40))) for w, h in ((400, 40), (40, 400))]
    counted.hits(wide, 1.1, (20, 20), (40, 40))
    counted.hits(tall, 1.1, (20, 20), (40, 40))
    assert counted.buffer == one[0][0] * one[1][1]
    assert counted.buffer > max(w * r for w, r in one)
