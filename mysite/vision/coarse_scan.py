"""A cascade scan that scans closely only where a cheaper look found something.

Why: ``detectMultiScale``'s time on a reduced 12 MP photo goes to two kinds of level. The levels
whose window is twice the cascade's or more are scanned at every pixel (OpenCV's ``ystep`` 1),
four times as densely as the rest: about 70 % of the time. And the margin levels, a little
smaller than the smallest object asked for (scanned so that an object exactly that small keeps
the neighbours ``min_neighbors`` counts): about 20 %. Here:

1. The levels from the smallest object asked for up to twice the window are scanned by OpenCV,
   as ``detectMultiScale`` scans them.
2. The margin levels are scanned closely around those hits: an object the margin helps has
   hits at its own size too.
3. The large levels are first looked at coarsely: the image halved once per octave, so each is
   seen at the 2-pixel step OpenCV uses for the small levels, every other level, by the cascade
   without its last stages (a window the whole cascade accepts passes its first stages too, so
   an object yields more of these proposals than hits). They are then scanned closely around
   the proposals and the hits of (1).

"Closely" means as OpenCV scans that level: the whole cascade, at OpenCV's step, on the level
image OpenCV itself builds (same size, same INTER_LINEAR_EXACT interpolation), so a window
evaluated here answers what it answers in ``detectMultiScale``. The raw hits are grouped by the
caller as ``detectMultiScale`` groups them. What can differ from the full scan: windows no hit
or proposal led to, and, for the margin levels, objects smaller than the smallest asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from mysite.vision import budget

Rect = tuple[int, int, int, int]  # x, y, w, h in pixels of the image scanned

STAGES_DROPPED = 6  # the proposer is the cascade without its last 6 stages (of 22 for faces, 20 for cat faces)
MIN_STAGES = 10  # a cascade with fewer stages left proposes with all of them
LEVEL_STRIDE = 2  # the coarse look visits every other level (scale_factor ** 2 apart)
NEAR_LARGE = 2  # a proposal leads to a close scan of the levels this many steps either side of its size
NEAR_MARGIN = 4  # a hit at a size asked for leads to the margin levels this many steps below it
PAD = 3  # a close scan covers a region this many level pixels wider, each side, than the window


def proposer_xml(text: str) -> str | None:
    """The cascade file's text without its last stages, or None when it cannot or need not be cut."""
    m = re.search(r"<stageNum>\s*(\d+)\s*</stageNum>", text)
    start, end = text.find("<stages>"), text.find("</stages>")
    if m is None or start < 0 or end < start or int(m.group(1)) - STAGES_DROPPED < MIN_STAGES:
        return None
    keep = int(m.group(1)) - STAGES_DROPPED
    depth, count = 0, 0
    for tag in re.finditer(r"<(/?)_>", text[start:end]):  # stages are the outermost <_> elements
        depth += -1 if tag.group(1) else 1
        if tag.group(1) and depth == 0:
            count += 1
            if count == keep:
                cut = start + tag.end()
                return text[:m.start()] + f"<stageNum>{keep}</stageNum>" + text[m.end():cut] + text[end:]
    return None


def load_xml(text: str) -> cv2.CascadeClassifier:
    """A classifier read from a cascade file's text."""
    storage = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    clf = cv2.CascadeClassifier()
    if not clf.read(storage.getFirstTopLevelNode()):
        raise ValueError("not a cascade OpenCV can read")
    return clf


def scan(clf: cv2.CascadeClassifier, proposer: cv2.CascadeClassifier, image: np.ndarray,
         levels: list[budget.Scale], *, window: tuple[int, int], scale_factor: float, asked_px: int) -> list[Rect]:
    """Raw hits of ``clf`` on a grayscale image, ungrouped, on the pyramid ``levels`` that
    ``detectMultiScale`` would scan (``budget.pyramid``): objects from ``asked_px`` up, and the
    margin levels below it."""
    large = [lv for lv in levels if _dense(lv)]
    small = [lv for lv in levels if lv.window[0] >= asked_px and not _dense(lv)]
    hits: set[Rect] = set()
    if small:  # OpenCV's own scan
        hits.update(_rects(clf.detectMultiScale(image, scaleFactor=scale_factor, minNeighbors=0,
                                                minSize=small[0].window, maxSize=small[-1].window)))
    if large:
        near = scale_factor ** (NEAR_LARGE + 0.5)
        leads = _array(hits | set(_coarse(proposer, image, window, scale_factor)))
        for lv in large:
            hits.update(_closely(clf, image, lv, window, leads, near, near))
    leads = _array(hits)
    for lv in levels:
        if lv.window[0] < asked_px and not _dense(lv):  # a margin level: near hits of the sizes just above it
            hits.update(_closely(clf, image, lv, window, leads, 1.0, scale_factor ** (NEAR_MARGIN + 0.5)))
    return list(hits)


def _dense(lv: budget.Scale) -> bool:
    """Whether OpenCV scans this level at every pixel (its factor, a float there, is 2 or more)."""
    return bool(np.float32(lv.factor) >= 2)


def _rects(found: Iterable[Any]) -> list[Rect]:
    """detectMultiScale's answer (an empty tuple when it finds nothing) as tuples."""
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in np.asarray(found).reshape(-1, 4)]


def _array(rects: Iterable[Rect]) -> np.ndarray:
    return np.array(sorted(rects), dtype=np.float64).reshape(-1, 4)


def proposer_buffer(width: int, height: int, window: tuple[int, int], scale_factor: float) -> int:
    """Pixels of the pyramid buffer the proposer keeps after scanning an image this size (its first octave's)."""
    levels = budget.pyramid(width // 2, height // 2, window, scale_factor ** LEVEL_STRIDE, window,
                            _below_large(window))
    return budget.pyramid_buffer(levels)


def _below_large(window: tuple[int, int]) -> tuple[int, int]:
    """The largest object an octave's coarse look asks for: the next octave sees twice the window and up."""
    return 2 * window[0] - 1, 2 * window[1] - 1


def _coarse(proposer: cv2.CascadeClassifier, image: np.ndarray, window: tuple[int, int],
            scale_factor: float) -> list[Rect]:
    """Proposals for objects of twice the window and more: each octave halved, seen at OpenCV's 2-pixel step."""
    out: list[Rect] = []
    img, k = image, 1
    while img.shape[1] >= 4 * window[0] and img.shape[0] >= 4 * window[1]:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        k *= 2
        last = img.shape[1] < 4 * window[0] or img.shape[0] < 4 * window[1]
        found = proposer.detectMultiScale(img, scaleFactor=scale_factor ** LEVEL_STRIDE, minNeighbors=0,
                                          minSize=window, maxSize=(0, 0) if last else _below_large(window))
        out += [(x * k, y * k, w * k, h * k) for x, y, w, h in _rects(found)]
    return out


def _closely(clf: cv2.CascadeClassifier, image: np.ndarray, lv: budget.Scale, window: tuple[int, int],
             leads: np.ndarray, smaller: float, larger: float) -> list[Rect]:
    """Hits of one level near the ``leads`` of about its size (from ``size / smaller`` to ``size * larger``)."""
    ww, wh = window
    f = np.float32(lv.factor)  # OpenCV keeps the factor as a float
    size = ww * float(f)
    mine = leads[(leads[:, 2] >= size / smaller) & (leads[:, 2] <= size * larger)]
    if not len(mine):
        return []
    # The level image exactly as OpenCV's FeatureEvaluator::setImage makes it.
    lw, lh = int(np.rint(np.float32(image.shape[1]) / f)), int(np.rint(np.float32(image.shape[0]) / f))
    level = cv2.resize(image, (lw, lh), interpolation=cv2.INTER_LINEAR_EXACT)
    centres = zip((mine[:, 0] + mine[:, 2] / 2) / float(f), (mine[:, 1] + mine[:, 3] / 2) / float(f))
    regions = _merged([(max(0, int(cx - ww / 2) - PAD), max(0, int(cy - wh / 2) - PAD),
                        min(lw, int(cx - ww / 2) + ww + PAD + 1), min(lh, int(cy - wh / 2) + wh + PAD + 1))
                       for cx, cy in centres])
    if not _dense(lv):  # OpenCV scans this level at even positions only: each region starts on one
        regions = [(x0 - x0 % 2, y0 - y0 % 2, x1, y1) for x0, y0, x1, y1 in regions]
    regions = [r for r in regions if r[2] - r[0] >= ww and r[3] - r[1] >= wh]
    if not regions:
        return []
    # The regions side by side in one strip, each from an even column, scanned in one call.
    starts, x = [], 0
    for x0, _, x1, _ in regions:
        starts.append(x)
        x += (x1 - x0 + 1) // 2 * 2
    strip = np.zeros((max(r[3] - r[1] for r in regions), x), np.uint8)
    for (x0, y0, x1, y1), s in zip(regions, starts):
        strip[:y1 - y0, s:s + x1 - x0] = level[y0:y1, x0:x1]
    if not _dense(lv):  # at factor 1 alone, OpenCV scans the strip at its 2-pixel step
        found = clf.detectMultiScale(strip, scaleFactor=2.0, minNeighbors=0, minSize=window, maxSize=window)
        positions = [(hx, hy) for hx, hy, _, _ in _rects(found)]
    else:
        # OpenCV scans at every pixel only from factor 2: the strip goes in doubled (each pixel 2x2,
        # which its halving gives back exactly) and is scanned at factor 2 alone, every position
        # visited as OpenCV visits a large level (the next one skipped after a first-stage rejection).
        doubled = cv2.resize(strip, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        twice = (2 * ww, 2 * wh)
        found = clf.detectMultiScale(doubled, scaleFactor=2.0, minNeighbors=0, minSize=twice, maxSize=twice)
        positions = [(hx // 2, hy // 2) for hx, hy, _, _ in _rects(found)]
    out = []
    for sx, sy in positions:
        i = int(np.searchsorted(starts, sx, side="right")) - 1
        x0, y0, x1, y1 = regions[i]
        lx, ly = x0 + sx - starts[i], y0 + sy
        if lx + ww <= x1 and ly + wh <= y1:  # inside one region: not across a seam or in the padding
            out.append((int(np.rint(np.float32(lx) * f)), int(np.rint(np.float32(ly) * f)),
                        int(np.rint(np.float32(ww) * f)), int(np.rint(np.float32(wh) * f))))
    return out


def _merged(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Overlapping boxes ``(x0, y0, x1, y1)`` merged into their bounding boxes, until none overlap."""
    merged = sorted(boxes)
    changed = True
    while changed:
        changed = False
        out: list[list[int]] = []
        for b in merged:
            for q in out:
                if b[0] < q[2] and q[0] < b[2] and b[1] < q[3] and q[1] < b[3]:
                    q[:] = [min(q[0], b[0]), min(q[1], b[1]), max(q[2], b[2]), max(q[3], b[3])]
                    changed = True
                    break
            else:
                out.append(list(b))
        merged = [(q[0], q[1], q[2], q[3]) for q in out]
    return merged
