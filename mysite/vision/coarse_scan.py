"""A cascade scan that scans closely only where a cheaper look found something.

Why: ``detectMultiScale``'s time on a photo goes to two kinds of level. The levels
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

A photo scanned at its own size (no reduction: most photos up to about 1 MP) is scanned the
same way for the book's exact boxes (``exact``): the levels of (1) every other one, those between
closely around their hits, and every close scan reaching further in size, so that each object's
group of raw hits is whole and grouping it gives OpenCV's own box.

A close scan takes the window positions near its leads in bands of rows, cut where a window's
width is left out, and has OpenCV scan each part on its own (the part's image and a window's
width and height beyond): parts put side by side in one image would add the positions of every
window across a seam, several times the positions asked for, for a call that costs microseconds.
A level whose close scans would visit much of it is scanned whole by OpenCV instead.

"Closely" means as OpenCV scans that level: the whole cascade, at OpenCV's step, on the level
image OpenCV itself builds (same size, same INTER_LINEAR_EXACT interpolation), so a window
evaluated here answers what it answers in ``detectMultiScale``. The raw hits are grouped by the
caller as ``detectMultiScale`` groups them. What can differ from the full scan: windows no hit
or proposal led to, and, for the margin levels, objects smaller than the smallest asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import cv2
import numpy as np

from mysite.vision import budget

Rect = tuple[int, int, int, int]  # x, y, w, h in pixels of the image scanned

STAGES_DROPPED = 6  # the proposer is the cascade without its last 6 stages (of 22 for faces, 20 for cat faces)
MIN_STAGES = 10  # a cascade with fewer stages left proposes with all of them
LEVEL_STRIDE = 2  # the coarse look visits every other level (scale_factor ** 2 apart)
SMALL_STRIDE = 3  # an exact scan has OpenCV scan every third level below twice the window
NEAR_LARGE = 2  # a proposal leads to a close scan of the levels this many steps either side of its size
EXACT_REACH = 1.54  # the same as a size ratio (4 steps of 1.1), for a photo whose exact boxes are wanted:
# a group's hits span more sizes
NEAR_MARGIN = 4  # a hit at a size asked for leads to the margin levels this many steps below it
WHOLE_LEVEL = 0.6  # close scans visiting this fraction of a level's positions scan it whole instead
PAD = 3  # a close scan looks at window positions this many level pixels either side of a lead's
WARM = 4  # positions (of the level's step) a part of a close scan starts early, discarded
BAND = 8  # rows of positions a close scan takes together


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


class Scanned(NamedTuple):
    """A scan's raw hits, and the largest pyramid buffer (pixels) it made ``clf`` build."""

    hits: list[Rect]
    buffer: int


class _Counted:
    """A classifier's scans, each of one image between two object sizes, and the pyramid buffer they
    made it build: as wide as the widest and as tall as the tallest, which it keeps until it is thrown
    away (scans of many differently shaped parts add up to more than any one of them)."""

    def __init__(self, clf: cv2.CascadeClassifier, window: tuple[int, int]) -> None:
        self.clf, self.window = clf, window
        self.width = self.rows = 0

    @property
    def buffer(self) -> int:
        return self.width * self.rows

    def hits(self, image: np.ndarray, scale_factor: float, smallest: tuple[int, int],
             largest: tuple[int, int]) -> list[Rect]:
        levels = budget.pyramid(image.shape[1], image.shape[0], self.window, scale_factor, smallest, largest)
        width, rows = budget.pyramid_shape(levels)
        self.width, self.rows = max(self.width, width), max(self.rows, rows)
        return _rects(self.clf.detectMultiScale(image, scaleFactor=scale_factor, minNeighbors=0,
                                                minSize=smallest, maxSize=largest))


def scan(clf: cv2.CascadeClassifier, proposer: cv2.CascadeClassifier, image: np.ndarray,
         levels: list[budget.Scale], *, window: tuple[int, int], scale_factor: float, asked_px: int,
         exact: bool = False) -> Scanned:
    """Raw hits of ``clf`` on a grayscale image, ungrouped, on the pyramid ``levels`` that
    ``detectMultiScale`` would scan (``budget.pyramid``): objects from ``asked_px`` up, and the
    margin levels below it.

    ``exact``: for a photo scanned at its own size, whose boxes should be the book's. The levels
    below twice the window are scanned by OpenCV every third one (those between closely around
    the hits), and every close scan reaches EXACT_REACH in size either side of its leads, so that an
    object's group of hits is whole and grouping it gives OpenCV's own box.
    """
    counted = _Counted(clf, window)
    small = [lv for lv in levels if lv.window[0] >= asked_px and not _dense(lv)]
    rest = [_Level(counted, image, lv, scale_factor) for lv in levels if lv not in small]
    near = scale_factor ** (NEAR_LARGE + 0.5)
    if exact:
        near = max(near, EXACT_REACH)
    hits: set[Rect] = set()
    between: list[_Level] = []
    if small and not exact:  # OpenCV's own scan
        hits.update(counted.hits(image, scale_factor, small[0].window, small[-1].window))
    for i, lv in enumerate(small if exact else []):
        if i % SMALL_STRIDE == 0 or i == len(small) - 1:
            hits.update(counted.hits(image, scale_factor, lv.window, lv.window))
        else:
            between.append(_Level(counted, image, lv, scale_factor))
    leads = _array(hits)
    for b in between:
        hits.update(b.near(leads, near, near, PAD))
    large = [part for part in rest if part.dense]
    if large:
        leads = _array(hits | set(_coarse(proposer, image, window, scale_factor)))
        for part in large:
            hits.update(part.near(leads, near, near, PAD))
    leads = _array(hits)
    for part in rest:
        if not part.dense:  # a margin level: near hits of the sizes just above it
            hits.update(part.near(leads, 1.0, scale_factor ** (NEAR_MARGIN + 0.5), PAD))
    return Scanned(list(hits), counted.buffer)


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


class _Level:
    """One pyramid level as ``detectMultiScale`` scans it, looked at in parts: the window positions
    near some leads, each position once."""

    def __init__(self, clf: _Counted, image: np.ndarray, lv: budget.Scale, scale_factor: float) -> None:
        self.clf, self.image, self.lv, self.window, self.scale_factor = clf, image, lv, clf.window, scale_factor
        self.f = np.float32(lv.factor)  # OpenCV keeps the factor as a float
        self.dense = _dense(lv)
        self.step = 1 if self.dense else 2
        # The level image's size, as OpenCV's FeatureEvaluator::setImage makes it.
        self.lw = int(np.rint(np.float32(image.shape[1]) / self.f))
        self.lh = int(np.rint(np.float32(image.shape[0]) / self.f))
        self.pw, self.ph = self.lw - self.window[0] + 1, self.lh - self.window[1] + 1  # window positions
        self.done: np.ndarray | None = None  # positions looked at
        self.whole = False  # scanned whole by OpenCV: every hit is known
        self.looked = 0  # window positions the close scans of this level visited or would visit
        self._level: np.ndarray | None = None

    def near(self, leads: np.ndarray, smaller: float, larger: float, pad: int) -> list[Rect]:
        """Hits at positions not looked at yet within ``pad`` level pixels of a window centred on a
        lead of about this level's size (``size / smaller`` to ``size * larger``).

        Where that would make most of the level looked at, OpenCV scans the whole level instead: cheaper.
        """
        ww, wh = self.window
        size = ww * float(self.f)
        mine = leads[(leads[:, 2] >= size / smaller) & (leads[:, 2] <= size * larger)]
        if not len(mine) or self.whole or self.pw <= 0 or self.ph <= 0:
            return []
        xs = np.clip(((mine[:, 0] + mine[:, 2] / 2) / float(self.f) - ww / 2).astype(int), 0, self.pw - 1)
        ys = np.clip(((mine[:, 1] + mine[:, 3] / 2) / float(self.f) - wh / 2).astype(int), 0, self.ph - 1)
        # Only the part of the level the leads reach, from a band's first row and an even column (so
        # bands and OpenCV's even positions fall where they fall on the whole level).
        y0, x0 = max(0, int(ys.min()) - pad) // BAND * BAND, max(0, int(xs.min()) - pad) // 2 * 2
        y1, x1 = min(self.ph, int(ys.max()) + pad + 1), min(self.pw, int(xs.max()) + pad + 1)
        want = np.zeros((y1 - y0, x1 - x0), np.uint8)
        want[ys - y0, xs - x0] = 1
        want = cv2.dilate(want, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8)).view(bool)
        if self.step == 2:  # OpenCV visits even positions only
            want[1::2, :] = False
            want[:, 1::2] = False
        if self.done is None:
            self.done = np.zeros((self.ph, self.pw), bool)
        done = self.done[y0:y1, x0:x1]
        new = want & ~done
        if not new.any():
            return []
        done |= new
        return self._scan(want, new, x0, y0)

    def _whole(self) -> list[Rect]:
        self.whole = True
        return self.clf.hits(self.image, self.scale_factor, self.lv.window, self.lv.window)

    def _scan(self, want: np.ndarray, new: np.ndarray, ox: int, oy: int) -> list[Rect]:
        """Hits at the positions ``new`` (of ``want``; both from position ``ox``, ``oy`` of the level): bands
        of rows, each cut where a window's width is left out, each part that holds a new position scanned
        by OpenCV on its own at this level's step. Parts follow ``want``, not ``new`` alone: a ring of new
        positions around old ones would otherwise be cut into many small parts."""
        ww, wh = self.window
        warm = WARM * self.step
        regions = []  # x0, y0, x1, y1 of the positions of each part, inclusive
        fresh_rows = np.asarray(new.any(axis=1))
        for b0 in range(0, new.shape[0], BAND):
            if not fresh_rows[b0:b0 + BAND].any():
                continue
            rows = want[b0:b0 + BAND]
            fresh = np.asarray(new[b0:b0 + BAND].any(axis=0))
            used = np.flatnonzero(rows.any(axis=1))
            cols = np.flatnonzero(rows.any(axis=0))
            cut = np.flatnonzero(np.diff(cols) > ww + warm)
            for s, e in zip(cols[np.append(0, cut + 1)], cols[np.append(cut, len(cols) - 1)]):
                if not fresh[s:e + 1].any():
                    continue
                # A part starts a few positions early: after a window rejected by the cascade's first stage
                # OpenCV skips the next, so a row's first positions may be visited where OpenCV does not.
                regions.append((max(0, ox + int(s) - warm), oy + b0 + int(used[0]), ox + int(e),
                                oy + b0 + int(used[-1])))
        self.looked += sum((x1 - x0 + 1) * (y1 - y0 + 1) for x0, y0, x1, y1 in regions)
        if self.looked > WHOLE_LEVEL * self.pw * self.ph:
            return self._whole()
        if self._level is None:  # the level image exactly as OpenCV's FeatureEvaluator::setImage makes it
            self._level = cv2.resize(self.image, (self.lw, self.lh), interpolation=cv2.INTER_LINEAR_EXACT)
        out = []
        f = self.f
        for x0, y0, x1, y1 in regions:
            # One pixel more each way where the level has it: OpenCV never places a window at its
            # image's last row or column of positions.
            part = self._level[y0:y1 + wh + 1, x0:x1 + ww + 1]
            if not self.dense:  # at factor 1 alone, OpenCV scans the part at its 2-pixel step
                positions = [(hx, hy) for hx, hy, _, _ in self.clf.hits(part, 2.0, self.window, self.window)]
            else:
                # OpenCV scans at every pixel only from factor 2: the part goes in doubled (each pixel 2x2,
                # which its halving gives back exactly) and is scanned at factor 2 alone, every position
                # visited as OpenCV visits a large level (the next one skipped after a first-stage rejection).
                doubled = cv2.resize(part, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
                twice = (2 * ww, 2 * wh)
                positions = [(hx // 2, hy // 2) for hx, hy, _, _ in self.clf.hits(doubled, 2.0, twice, twice)]
            for sx, sy in positions:
                lx, ly = x0 + sx, y0 + sy
                # One of the positions asked for, not the warm-up's or one looked at before.
                if ox <= lx <= x1 and ly <= y1 and new[ly - oy, lx - ox]:
                    out.append((int(np.rint(np.float32(lx) * f)), int(np.rint(np.float32(ly) * f)),
                                int(np.rint(np.float32(ww) * f)), int(np.rint(np.float32(wh) * f))))
        return out
