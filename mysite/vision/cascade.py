"""Haar cascade detection (faces, cat faces) with the book's parameters by default."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from mysite.errors import Unprocessable
from mysite.params import Param
from mysite.vision import budget, coarse_scan, fastpath
from mysite.vision.decode import Header
from mysite.vision.fastpath import ScanPlan
from mysite.vision.shapes import Detection, PerThread, Rescaling, UnreadableModel, clip, from_xywh

PARAMS = (
    Param("scale_factor", float, 1.1, min=1.05, max=2.0,
          doc="pyramid step between scales (from 1.05: finer steps could outlast the worker timeout on a 40 MP photo)"),
    Param("min_neighbors", int, 5, min=0, max=100, doc="overlapping hits needed to keep a box"),
    Param("min_size", int, 25, min=1, max=10000, doc="smallest object, in pixels"),
    Param("min_face", float, 0.0, min=0.0, max=1.0,
          doc="smallest object as a fraction of the image's long side (0: min_size alone); "
              "an explicit min_size without min_face means min_size alone"),
)


class Cost(NamedTuple):
    """What one way of scanning a photo costs, and what the request leaves for it."""

    windows: int  # windows OpenCV's full scan evaluates
    biggest: int  # bytes of the largest pyramid level's buffer
    room: int  # bytes left for that buffer beside the decoded and working images
    decode: int  # bytes of the decode


@dataclass(frozen=True, kw_only=True)
class CascadePlan(ScanPlan):
    """A cascade's scan of one photo: its working scale, and the pyramid buffer one band may use."""

    fit: fastpath.Fit  # the smallest object, the working scale and the decode reduction
    band_pixels: int | None = None  # None: the whole pyramid at once


class Cascade(Rescaling[CascadePlan]):
    """A Haar/LBP cascade file, loaded once and used by any number of threads."""

    input = "gray"
    params = PARAMS

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # One classifier per thread: detectMultiScale keeps per-call state inside the object.
        self._classifiers = PerThread(self._load)
        # Load now so a missing or broken file is reported at start-up, not on the first request.
        clf = self._classifier()
        self.window_size: tuple[int, int] = tuple(int(v) for v in clf.getOriginalWindowSize())  # type: ignore[assignment]
        text = self.path.read_text(encoding="utf-8", errors="replace")
        self.buffer_bytes = _bytes_per_buffer_pixel(text)
        # The coarse look's cascade (coarse_scan.py): this one without its last stages, built per thread too.
        short = coarse_scan.proposer_xml(text)
        self._proposers = PerThread(lambda: coarse_scan.load_xml(short) if short else self._load())

    def _load(self) -> cv2.CascadeClassifier:
        clf = cv2.CascadeClassifier(str(self.path))
        if clf.empty():
            raise UnreadableModel(f"{self.path} is not a cascade OpenCV can load")
        return clf

    def _classifier(self) -> cv2.CascadeClassifier:
        return self._classifiers.get()

    @property
    def window(self) -> int:
        """The cascade's detection window (20 px for the frontal face cascade)."""
        return max(self.window_size)

    def plan(self, header: Header, values: dict[str, Any], explicit: Collection[str],
             limit: budget.Budget | None = None) -> CascadePlan:
        """The decode reduction, working scale and scan for this photo, values as the request meant them.

        A request that names ``min_size`` but not ``min_face`` asks for that size exactly.
        With a ``limit``, the scan is checked against it before any pixel is decoded: too many
        windows or a pyramid level larger than the memory left is a 422 naming the parameters
        and the smallest ``min_face`` that would fit; a pyramid that fits only in parts is
        scanned in bands (``band_pixels``), which gives the same answer. ``work`` is the windows
        OpenCV's full scan evaluates: a bound, as the coarse look (``coarse_scan``) evaluates fewer.
        """
        values = fastpath.as_meant(values, explicit)
        fit = fastpath.plan(header.width, header.height, min_size=values["min_size"],
                            min_face=values["min_face"], window=self.window)
        levels, work_px = self._scan(header.width, header.height, fit, values["scale_factor"])
        windows = budget.windows(levels, self.window_size)
        band = None
        if limit is not None:
            band = self._check(header, fit, values, limit, self._cost(header, fit, levels, work_px, limit))
        return CascadePlan(header.width, header.height, fit.reduce, values, windows, fit=fit, band_pixels=band)

    def _scan(self, width: int, height: int, fit: fastpath.Fit, scale_factor: float) -> tuple[list[budget.Scale], int]:
        """The pyramid levels of ``fit``'s working image, and that image's pixels."""
        w, h = max(1, round(width * fit.scale)), max(1, round(height * fit.scale))
        # run() scans down to MARGIN below min_face's size: count those levels too (an upper bound
        # when min_size, which has no margin, sets the smallest object).
        m = max(1, math.floor(fit.min_px * fastpath.MARGIN * fit.scale))
        return budget.pyramid(w, h, self.window_size, scale_factor, (m, m)), w * h

    def _cost(self, header: Header, fit: fastpath.Fit, levels: list[budget.Scale], work_px: int,
              limit: budget.Budget) -> Cost:
        """What scanning as ``fit`` says costs, beside what the request may spend."""
        room = limit.memory - math.ceil(header.width / fit.reduce) * math.ceil(header.height / fit.reduce) - work_px
        biggest = max((budget.pyramid_buffer([lv]) for lv in levels), default=0)
        return Cost(budget.windows(levels, self.window_size), biggest * self.buffer_bytes, room,
                    budget.decode_memory(header, True, fit.reduce))

    def _check(self, header: Header, fit: fastpath.Fit, values: dict[str, Any], limit: budget.Budget,
               planned: Cost) -> int:
        """Refuse a scan over the budget (422); the buffer pixels one band may use.

        The decode counts too: the smallest objects a scan looks for set how much of the
        image is decoded (``fastpath.plan``), and a full-size gray decode holds BGR and gray at once.
        An image no parameter could make fit is left to the caller's decode check (413).
        """
        sf = values["scale_factor"]

        def cost(min_px: int) -> Cost:
            """The cost of another plan, looking for objects of ``min_px`` and larger."""
            other = fastpath.plan(header.width, header.height, min_size=min_px, min_face=0.0, window=self.window)
            return self._cost(header, other, *self._scan(header.width, header.height, other, sf), limit)

        def fits(c: Cost) -> bool:
            return c.windows <= limit.work and c.biggest <= c.room and c.decode <= limit.memory

        long_side = max(header.width, header.height)
        if not fits(planned) and fits(cost(long_side)):
            lo, hi = fit.min_px, long_side
            while lo < hi:  # the smallest object size that fits: every cost falls as it grows
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if fits(cost(mid)) else (mid + 1, hi)
            fix = (f"ask for larger objects (min_face={math.ceil(lo / long_side * 1000) / 1000:g} "
                   f"or min_size={lo}), a larger scale_factor, or send a smaller image")
            what = (f"scanning this {header.width}x{header.height} image for objects from {fit.min_px} px "
                    f"(min_size={values['min_size']}, min_face={values['min_face']:g}, scale_factor={sf:g})")
            budget.check_work(planned.windows, limit, what, fix, status=Unprocessable)
            if planned.decode > limit.memory:
                raise Unprocessable(
                    f"{what} decodes it at full size, which needs about {budget.mb(planned.decode)}; the limit for "
                    f"one request is {budget.mb(limit.memory)} (MYSITE_REQUEST_MEMORY_MB): {fix}")
            raise Unprocessable(
                f"{what} needs about {budget.mb(planned.biggest)} for the largest level of its pyramid, and "
                f"{budget.mb(max(0, planned.room))} of the request's {budget.mb(limit.memory)} are left beside the "
                f"image (MYSITE_REQUEST_MEMORY_MB): {fix}")
        return max(1, planned.room // self.buffer_bytes)

    def run(self, gray: np.ndarray, plan: CascadePlan) -> list[Detection]:
        """Boxes of every object found in a grayscale image (decoded as ``plan`` says), in original pixels.

        ``plan.band_pixels`` bounds the pyramid buffer OpenCV builds: a larger pyramid is scanned
        a band of levels at a time, each band's raw hits kept and grouped at the end as
        ``detectMultiScale`` itself groups them (``groupRectangles``, eps 0.2).
        """
        width, height, p, band_pixels = plan.width, plan.height, plan.fit, plan.band_pixels
        scale_factor, min_neighbors, min_size = (plan.values[k] for k in ("scale_factor", "min_neighbors", "min_size"))
        work, work_scale = fastpath.working_image(gray, plan.scale_of(gray), p)
        # Scan a margin below a smallest object set by min_face: min_neighbors counts the hits of
        # windows a little smaller than a face too, and with minSize at its exact size a face exactly
        # that wide loses them. Never below min_size: the book's minSize=25 gives its exact boxes.
        min_px = max(1, math.floor(max(min_size, p.min_px * fastpath.MARGIN) * work_scale))
        asked_px = max(1, math.floor(max(min_size, p.min_px) * work_scale))  # the smallest object asked for
        levels = budget.pyramid(work.shape[1], work.shape[0], self.window_size, scale_factor, (min_px, min_px))
        parts = budget.bands(levels, band_pixels) if band_pixels else [levels]
        clf = self._classifier()
        # coarse_scan: OpenCV's own scan where it is cheap, a coarse look first elsewhere; a photo at its
        # own size has each object's group of hits scanned whole, for the book's exact boxes. Every raw hit
        # (min_neighbors=0) needs OpenCV's full scan.
        coarse = len(parts) <= 1 and (min_neighbors > 0 or work_scale != 1.0)
        # The largest pyramid buffer the classifier builds: OpenCV's full scan's, or what the coarse look's scans used.
        held = budget.pyramid_buffer(levels if len(parts) <= 1 else max(parts, key=budget.pyramid_buffer))
        try:
            raw: list[list[int]] = []
            if coarse:
                scanned = coarse_scan.scan(clf, self._proposers.get(), work, levels, window=self.window_size,
                                           scale_factor=scale_factor, asked_px=asked_px, exact=work_scale == 1.0)
                raw, held = [list(r) for r in scanned.hits], scanned.buffer
            else:  # in bands when one pyramid would not fit in the request's memory
                for band in parts:
                    # A fresh classifier per band: one keeps the widest rows and the most rows it has
                    # seen, separately, so bands of different shapes would add up to more than either.
                    if len(parts) > 1:
                        self._classifiers.reset()
                    hits = self._classifier().detectMultiScale(work, scaleFactor=scale_factor, minNeighbors=0,
                                                               minSize=band[0].window, maxSize=band[-1].window)
                    raw += np.asarray(hits).reshape(-1, 4).tolist()
            rects = group_rectangles(raw, min_neighbors) if min_neighbors > 0 else raw
        finally:
            # OpenCV's classifier keeps its largest pyramid buffer for good: drop a big one now.
            if held * self.buffer_bytes > KEEP_BYTES:
                self._classifiers.reset()
            if coarse and coarse_scan.proposer_buffer(work.shape[1], work.shape[0], self.window_size,
                                                      scale_factor) * self.buffer_bytes > KEEP_BYTES:
                self._proposers.reset()
        # detectMultiScale answers an empty tuple, not an array, when it finds nothing.
        found = from_xywh(np.asarray(rects).reshape(-1, 4).tolist(), work_scale)
        if work_scale != 1.0:  # rounding while scaling back may step a pixel past the edge
            for d in found:
                d["box"] = clip(d["box"], width, height)
        return found


# A classifier whose pyramid buffer is larger than this is thrown away after the request (reloading
# one is cheap); smaller ones are kept, so ordinary photos pay nothing.
KEEP_BYTES = 16 * 1024 * 1024


def _bytes_per_buffer_pixel(text: str) -> int:
    """Bytes per pixel of the pyramid buffer: the resized level, and 32-bit integral images.

    Haar keeps a sum and a squared sum (9 bytes), plus a tilted sum when a feature is tilted
    (13); LBP one sum (5). Measured retained RSS: 11 B/px for the face cascade, 15.5 for
    the extended cat-face one (with the packing waste, which ``pyramid_buffer`` counts).
    """
    if "<featureType>LBP" in text:
        return 5
    return 13 if re.search(r"<tilted>\s*1\s*</tilted>", text) else 9


# detectMultiScale's: two hits are alike when each side differs by at most a fifth of the shorter side's mean.
GROUP_EPS = 0.2
_PAIRS_AT_ONCE = 1 << 20  # pairs of hits compared in one numpy step: their arrays stay a few tens of MB
_OPENCV_AT_MOST = 1500  # hits OpenCV groups faster itself, all pairs compared in C


def group_rectangles(rects: Sequence[Sequence[int]] | np.ndarray, threshold: int, eps: float = GROUP_EPS) -> list[list[int]]:
    """The boxes ``cv2.groupRectangles(rects, threshold, eps)`` answers (in another order), in about linear time.

    OpenCV compares every pair of hits (its ``partition``): quicker for an ordinary photo's few
    hundred, but the tens of thousands a photo tiled with small faces gives cost seconds.
    """
    r = np.asarray(rects, np.int64).reshape(-1, 4)
    if threshold <= 0 or not len(r):
        return [list(map(int, row)) for row in r]
    if len(r) <= _OPENCV_AT_MOST:
        return np.asarray(cv2.groupRectangles(r.tolist(), threshold, eps)[0], np.int64).reshape(-1, 4).tolist()
    return group_by_grid(r, threshold, eps)


def group_by_grid(r: np.ndarray, threshold: int, eps: float = GROUP_EPS) -> list[list[int]]:
    """``group_rectangles`` for many hits (``r``: N x 4, N > 0): alike hits have about the same size and place,
    so each is compared only with hits of its own or the next size class, in its own or a neighbouring
    cell of a grid that size. ``eps`` below 0.5 keeps alike hits within one size class."""
    r, hits = np.unique(r, axis=0, return_counts=True)  # equal hits are alike: compared once
    labels = np.unique(_classes(r, eps), return_inverse=True)[1].reshape(-1)
    counts = np.bincount(labels, weights=hits).astype(np.int64)
    means = np.empty((len(counts), 4), np.int64)
    inverse = np.float32(1) / counts.astype(np.float32)  # OpenCV's mean is a float's, rounded to even
    for c in range(4):
        sums = np.bincount(labels, weights=r[:, c] * hits).astype(np.int64)  # exact: far below 2**53
        means[:, c] = np.rint(sums.astype(np.float32) * inverse)
    keep = counts > threshold
    return [list(map(int, row)) for row in _not_inside_stronger(means[keep], counts[keep], eps)]


def _classes(r: np.ndarray, eps: float) -> np.ndarray:
    """Each hit's class, named by its first hit: the connected parts of "alike" (OpenCV's ``SimilarRects``)."""
    x, y = r[:, 0], r[:, 1]
    size = _size_class(r, eps)
    edges: list[tuple[np.ndarray, np.ndarray]] = []
    for level in np.unique(size):
        cell = float(2 ** (level + 1))  # more than any reach of this class
        mine = np.flatnonzero(size == level)
        pool = np.flatnonzero((size == level) | (size == level + 1))
        pool, keys = _sorted_by_key(pool, _cells(x[pool] // cell, y[pool] // cell))
        cx, cy = x[mine] // cell, y[mine] // cell
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                start, count = _ranges(keys, _cells(cx + dx, cy + dy))
                for i, j in _pairs(mine, start, count, pool):
                    alike = ((i < j) | (size[j] > level)) & _alike(r[i], r[j], eps)
                    edges.append((i[alike], j[alike]))
    u = np.concatenate([e[0] for e in edges]) if edges else np.zeros(0, np.int64)
    v = np.concatenate([e[1] for e in edges]) if edges else np.zeros(0, np.int64)
    return _components(len(r), u, v)


def _size_class(r: np.ndarray, eps: float) -> np.ndarray:
    """log2 of the most an alike box's corner may be away (``eps`` of its mean side), whatever the other's size."""
    size: np.ndarray = np.floor(np.log2(np.maximum(eps * (r[:, 2] + r[:, 3]) / 2, 1.0))).astype(np.int64)
    return size


def _cells(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return (cx.astype(np.int64) + 1) * (1 << 32) + cy.astype(np.int64) + 1


def _sorted_by_key(items: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    return items[order], keys[order]


def _ranges(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each wanted key's run starts in the sorted ``keys``, and how long it is."""
    start = np.searchsorted(keys, wanted, "left")
    return start, np.searchsorted(keys, wanted, "right") - start


def _pairs(first: np.ndarray, start: np.ndarray, count: np.ndarray,
           pool: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each ``first[k]`` with each of ``pool[start[k]:start[k] + count[k]]``, at most about ``_PAIRS_AT_ONCE`` at a time."""
    ends = np.cumsum(count)
    k = 0
    while k < len(first):
        done = int(ends[k - 1]) if k else 0
        stop = max(k + 1, int(np.searchsorted(ends, done + _PAIRS_AT_ONCE, "right")))
        c = count[k:stop]
        total = int(c.sum())
        if total:
            offsets = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            yield np.repeat(first[k:stop], c), pool[np.repeat(start[k:stop], c) + offsets]
        k = stop


def _alike(p: np.ndarray, q: np.ndarray, eps: float) -> np.ndarray:
    """OpenCV's ``SimilarRects``, row by row."""
    delta = eps * (np.minimum(p[:, 2], q[:, 2]) + np.minimum(p[:, 3], q[:, 3])) * 0.5
    alike: np.ndarray = ((np.abs(p[:, 0] - q[:, 0]) <= delta) & (np.abs(p[:, 1] - q[:, 1]) <= delta)
                         & (np.abs(p[:, 0] + p[:, 2] - q[:, 0] - q[:, 2]) <= delta)
                         & (np.abs(p[:, 1] + p[:, 3] - q[:, 1] - q[:, 3]) <= delta))
    return alike


def _components(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """For each of ``n`` nodes, the smallest node it is joined to through the edges ``u``-``v``.

    Each round hooks every root onto the smallest root it has an edge to, then flattens: every
    part that can still join does, so the number of parts at least halves each round."""
    parent = np.arange(n)
    while True:
        pu, pv = parent[u], parent[v]
        low, high = np.minimum(pu, pv), np.maximum(pu, pv)
        apart = low != high
        if not apart.any():
            return parent
        np.minimum.at(parent, high[apart], low[apart])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _not_inside_stronger(m: np.ndarray, n: np.ndarray, eps: float) -> np.ndarray:
    """OpenCV's last step: drop a group inside another (with ``eps`` of that one's size as margin) that
    has more hits than it and than 3 (or any other, when it has under 3).

    A group can only be inside one whose margined box covers its corner: each is looked for in the
    cell holding that corner, of a grid per size class of cells at least twice that class's boxes."""
    dx, dy = np.rint(m[:, 2] * eps).astype(np.int64), np.rint(m[:, 3] * eps).astype(np.int64)
    left, top, right, bottom = m[:, 0] - dx, m[:, 1] - dy, m[:, 0] + m[:, 2] + dx, m[:, 1] + m[:, 3] + dy
    size = _size_class(m, eps)
    everyone = np.arange(len(m))
    drop = np.zeros(len(m), bool)
    for level in np.unique(size):
        cell = 2.0 ** (level + 3) / eps  # a margined box of this class spans at most two cells each way
        outer = np.flatnonzero(size == level)
        x0, x1, y0, y1 = (v[outer] // cell for v in (left, right, top, bottom))
        spans = [(outer[(x0 + i <= x1) & (y0 + j <= y1)], (x0 + i)[(x0 + i <= x1) & (y0 + j <= y1)],
                  (y0 + j)[(x0 + i <= x1) & (y0 + j <= y1)]) for i in (0, 1) for j in (0, 1)]
        pool, keys = _sorted_by_key(np.concatenate([s[0] for s in spans]),
                                    _cells(np.concatenate([s[1] for s in spans]), np.concatenate([s[2] for s in spans])))
        start, count = _ranges(keys, _cells(m[:, 0] // cell, m[:, 1] // cell))
        for a, b in _pairs(everyone, start, count, pool):
            inside = ((a != b) & (m[a, 0] >= left[b]) & (m[a, 1] >= top[b]) & (m[a, 0] + m[a, 2] <= right[b])
                      & (m[a, 1] + m[a, 3] <= bottom[b]) & ((n[b] > np.maximum(3, n[a])) | (n[a] < 3)))
            drop[a[inside]] = True
    kept: np.ndarray = m[~drop]
    return kept
