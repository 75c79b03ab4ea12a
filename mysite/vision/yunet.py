"""YuNet face detection (``cv2.FaceDetectorYN``): boxes, confidence and five landmarks, at planned scales.

YuNet finds faces from about 10 to 400 pixels wide in the image it is given
(larger ones lose confidence, then split). So the photo is looked at in one or
more *passes*: the first at the scale where the smallest wanted face
(``min_face`` of the long side, never below ``min_size``) is ``MIN_WORK`` pixels
wide, decoded reduced where libjpeg allows; while a face as large as the photo's
short side would still be over ``MAX_WORK`` pixels, another, smaller pass follows
(a selfie filling a 4000 px frame). A working image over ``TILE_AREA`` pixels is
run in overlapping tiles, so the net's memory is that of one tile. Boxes and
landmarks are scaled back to original pixels and clipped; a face seen by two
passes is kept once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mysite.params import Param
from mysite.vision import fastpath
from mysite.vision.budget import Budget
from mysite.vision.decode import Header
from mysite.vision.dnn import first_line, read_bytes
from mysite.vision.fastpath import ScanPlan
from mysite.vision.shapes import Detection, PerThread, Rescaling, UnreadableModel, sort

# YuNet's five points, in the order of its output (the subject's right eye is on the image's left).
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
MIN_WORK = 24  # px: the smallest wanted face in the first pass (smaller ones get looser boxes)
MAX_WORK = 400  # px: the largest face a pass is trusted with (larger ones score lower)
BIG_PASS = 256  # px: where a further pass puts the largest possible face (the short side)
MAX_SIDE = 1920  # px: the first pass's long side at most (the net's memory grows with its input)
TILE_AREA = 640 * 640  # px: a larger working image is run in overlapping tiles of at most this many pixels
# Candidates kept per image, and per tile before YuNet's own NMS, best first: NMS is quadratic in them,
# and a low min_confidence makes one of nearly every anchor. A tile holds at most about 700 faces of
# MIN_WORK px, and YuNet scores about one candidate more for every five faces.
TOP_K = 5000
TILE_TOP_K = 2000

PARAMS = (
    Param("min_confidence", float, 0.7, min=0.0, max=1.0, doc="smallest face score kept"),
    Param("nms", float, 0.3, min=0.0, max=1.0, doc="overlap (IoU) above which the weaker of two boxes is dropped"),
    Param("min_size", int, 10, min=1, max=10000, doc="smallest face to plan for, in pixels"),
    Param("min_face", float, 0.025, min=0.0, max=1.0,
          doc="smallest face to plan for, as a fraction of the image's long side (smaller ones may be found too)"),
)


def passes(width: int, height: int, min_px: int) -> list[float]:
    """Working scales (working pixels per original pixel), largest first, that cover faces from
    ``min_px`` up to the photo's short side."""
    scale = min(1.0, MIN_WORK / max(1, min_px), MAX_SIDE / max(width, height))
    scales = [scale]
    short = min(width, height)
    while short * scales[-1] > MAX_WORK:
        # As small as the largest face needs, but never so small that a gap opens between two passes.
        scales.append(max(BIG_PASS / short, scales[-1] * 2 * MIN_WORK / MAX_WORK))
    return scales


Tile = tuple[int, int, int, int, int, int, int, int]  # x0, y0, x1, y1 of the tile; then of its core


def tiles(width: int, height: int, overlap: int, area: int = TILE_AREA) -> list[Tile]:
    """Tiles of at most ``area`` pixels covering a ``width`` x ``height`` image, neighbours
    overlapping by at least ``overlap``, so every face up to ``overlap`` wide lies whole in the
    tile whose *core* holds its centre (the cores split each overlap down its middle and
    partition the image). One tile, the whole image, when it is small enough or tiles cannot
    overlap that much."""
    nx = ny = 1
    while True:
        tw = -(-(width + (nx - 1) * overlap) // nx)
        th = -(-(height + (ny - 1) * overlap) // ny)
        if tw * th <= area:
            break
        if (tw >= th and tw > overlap * 2) or th <= overlap * 2:
            nx += 1
        else:
            ny += 1
        if nx * ny > 64 or (tw <= overlap * 2 and th <= overlap * 2):
            return [(0, 0, width, height, 0, 0, width, height)]
    xs = _spans(width, nx, tw)
    ys = _spans(height, ny, th)
    return [(x0, y0, x1, y1, cx0, cy0, cx1, cy1) for (y0, y1, cy0, cy1) in ys for (x0, x1, cx0, cx1) in xs]


def _spans(length: int, n: int, size: int) -> list[tuple[int, int, int, int]]:
    """``n`` spans of ``size`` from 0 to ``length``, evenly spread, each with its core."""
    starts = [round(i * (length - size) / (n - 1)) if n > 1 else 0 for i in range(n)]
    ends = [min(length, s + size) for s in starts]
    cuts = [0] + [(ends[i] + starts[i + 1]) // 2 for i in range(n - 1)] + [length]
    return [(starts[i], ends[i], cuts[i], cuts[i + 1]) for i in range(n)]


@dataclass(frozen=True, kw_only=True)
class YuNetPlan(ScanPlan):
    """YuNet's look at one photo: the smallest face planned for and the passes' working scales."""

    min_px: int  # smallest face, in original pixels
    passes: tuple[float, ...]  # working pixels per original pixel, largest first (see ``passes``)
    top_k: int = TOP_K  # candidates kept: all of TOP_K, or a batch's image's share of it


class YuNet(Rescaling[YuNetPlan]):
    """A YuNet ``.onnx`` file; one ``cv2.FaceDetectorYN`` per thread."""

    input = "color"
    params = PARAMS

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._bytes = read_bytes(self.path)
        self._detectors = PerThread(self._create)
        # Build one now and run it on a blank image: a wrong file is reported at start-up.
        self._detect(np.zeros((64, 64, 3), np.uint8), 0.5, 0.3)

    def _create(self) -> cv2.FaceDetectorYN:
        try:
            return cv2.FaceDetectorYN.create("onnx", self._bytes, np.zeros(0, np.uint8), (320, 320), 0.6, 0.3, TILE_TOP_K)
        except cv2.error as exc:
            raise UnreadableModel(f"OpenCV cannot read {self.path.name} as a YuNet face detector: {first_line(exc)}") from None

    def _detect(self, image: np.ndarray, min_confidence: float, nms: float, top_k: int = TILE_TOP_K) -> np.ndarray:
        """N x 15 rows: x, y, w, h, five (x, y) landmarks, score, in ``image``'s pixels; the ``top_k`` best at most."""
        det = self._detectors.get()
        det.setInputSize((image.shape[1], image.shape[0]))
        det.setScoreThreshold(min_confidence)
        det.setNMSThreshold(nms)
        det.setTopK(top_k)
        _, rows = det.detect(image)
        return np.zeros((0, 15), np.float32) if rows is None else rows

    @staticmethod
    def _overlap(scales: tuple[float, ...], i: int) -> int:
        """The widest face pass ``i`` must find whole, in its working pixels: what the next pass
        does not see at MIN_WORK or more, with a quarter for boxes wider than the face; the
        largest a pass handles when none follows."""
        if i + 1 < len(scales):
            return int(MIN_WORK * scales[i] / scales[i + 1] * 1.25) + 1
        return MAX_WORK

    def _detect_tiled(self, image: np.ndarray, min_confidence: float, nms: float, overlap: int,
                      last: bool, top_k: int) -> np.ndarray:
        """``_detect`` over tiles of the image (see ``tiles``), in the image's pixels. A tile keeps
        the faces centred in its core that do not touch an edge it shares with another tile (a
        face cut there is whole in its neighbour); unless ``last``, faces wider than the overlap are
        left to the next pass, which sees them at 1.25 x MIN_WORK or more."""
        height, width = image.shape[:2]
        parts = tiles(width, height, overlap)
        if len(parts) == 1:
            return self._detect(image, min_confidence, nms, top_k).copy()
        found = []
        for x0, y0, x1, y1, cx0, cy0, cx1, cy1 in parts:
            rows = self._detect(image[y0:y1, x0:x1], min_confidence, nms, top_k).copy()
            rows[:, [0, 4, 6, 8, 10, 12]] += x0  # x of the box and of each landmark (w, h stay)
            rows[:, [1, 5, 7, 9, 11, 13]] += y0
            mx, my = rows[:, 0] + rows[:, 2] / 2, rows[:, 1] + rows[:, 3] / 2
            keep = (mx >= cx0) & (mx < cx1) & (my >= cy0) & (my < cy1)
            keep &= (x0 == 0) | (rows[:, 0] > x0 + 1)
            keep &= (y0 == 0) | (rows[:, 1] > y0 + 1)
            keep &= (x1 == width) | (rows[:, 0] + rows[:, 2] < x1 - 1)
            keep &= (y1 == height) | (rows[:, 1] + rows[:, 3] < y1 - 1)
            if not last:  # a face wider than the overlap may be cut by every tile: the next pass's
                keep &= np.maximum(rows[:, 2], rows[:, 3]) <= overlap
            found.append(rows[keep])
        return np.vstack(found)

    def plan(self, header: Header, values: dict[str, Any], explicit: Collection[str],
             limit: Budget | None = None) -> YuNetPlan:
        """The passes for this photo, decoded at the largest reduction the first allows; values as meant."""
        values = fastpath.as_meant(values, explicit)
        min_px = fastpath.smallest(max(header.width, header.height), values["min_size"], values["min_face"])
        scales = passes(header.width, header.height, min_px)
        return YuNetPlan(header.width, header.height, fastpath.reduction(scales[0]), values,
                         min_px=min_px, passes=tuple(scales), top_k=TOP_K // (limit.images if limit else 1))

    def run(self, image: np.ndarray, plan: YuNetPlan) -> list[Detection]:
        """Faces in a BGR image (decoded as ``plan`` says): box, confidence and landmarks, in original pixels."""
        width, height, min_px, scales = plan.width, plan.height, plan.min_px, plan.passes
        min_confidence, nms, scale = plan.values["min_confidence"], plan.values["nms"], plan.scale_of(image)
        found = []
        for i, s in enumerate(scales):
            work, work_scale = fastpath.working_image(image, scale, fastpath.Fit(min_px, s, 1))
            rows = self._detect_tiled(work, min_confidence, nms, self._overlap(scales, i),
                                      i + 1 == len(scales), min(TILE_TOP_K, plan.top_k))
            # On images a few pixels thin YuNet's decoded boxes can be infinite or NaN: no face there.
            rows = rows[np.isfinite(rows[:, :15]).all(axis=1)]
            rows[:, :14] /= work_scale  # box and landmarks back to original pixels; the score stays
            found.append(rows)
        rows = best(np.vstack(found), min_confidence, nms, len(scales) > 1, plan.top_k)
        return sort(_detections(rows, width, height))


def best(rows: np.ndarray, min_confidence: float, nms: float, passes: bool, top_k: int = TOP_K) -> np.ndarray:
    """The ``top_k`` highest-scoring rows; with several ``passes``, a face seen by two of them once."""
    if len(rows) > top_k:
        rows = rows[np.argpartition(-rows[:, 14], top_k)[:top_k]]
    if passes and len(rows):  # a face near a pass boundary is seen twice
        keep = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(), min_confidence, nms)
        rows = rows[np.asarray(keep, int).reshape(-1)]
    return rows


def _detections(rows: np.ndarray, width: int, height: int) -> list[Detection]:
    """Rows as detections, in whole pixels inside the image (rounded half to even, as ``shapes.clip`` rounds)."""
    x, y, w, h = rows[:, :4].astype(np.float64).T
    sides = np.array([width, height, width, height])
    boxes = np.clip(np.rint(np.column_stack([x, y, x + w, y + h])), 0, sides).astype(int).tolist()
    points = np.clip(np.rint(rows[:, 4:14]), 0, np.tile(sides[:2], 5)).astype(int).reshape(-1, 5, 2).tolist()
    scores = [round(s, 4) for s in rows[:, 14].astype(np.float64).tolist()]
    return [{"box": b, "confidence": s, "landmarks": dict(zip(LANDMARKS, p))} for b, s, p in zip(boxes, scores, points)]
