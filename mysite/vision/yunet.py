"""YuNet face detection (``cv2.FaceDetectorYN``): boxes, confidence and five landmarks, at planned scales.

YuNet finds faces from about 10 to 400 pixels wide in the image it is given
(larger ones lose confidence, then split). So the photo is looked at in one or
more *passes*: the first at the scale where the smallest wanted face
(``min_face`` of the long side, never below ``min_size``) is ``MIN_WORK`` pixels
wide, decoded reduced where libjpeg allows; while a face as large as the photo's
short side would still be over ``MAX_WORK`` pixels, another, smaller pass follows
(a selfie filling a 4000 px frame). Boxes and landmarks are scaled back to
original pixels and clipped; a face seen by two passes is kept once.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mysite.params import Param
from mysite.vision import fastpath
from mysite.vision.boxes import Detection, clip, sort
from mysite.vision.decode import Header
from mysite.vision.dnn import PerThread, first_line, read_bytes

# YuNet's five points, in the order of its output (the subject's right eye is on the image's left).
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
MIN_WORK = 24  # px: the smallest wanted face in the first pass (100 px on a 4000 px photo -> 960 px wide;
# at 16 px, boxes of faces exactly that small overlapped the placed ones less: IoU 0.5, 23 of 24)
MAX_WORK = 400  # px: the largest face a pass is trusted with (measured: 500 px scores 0.83, 700 px 0.64)
BIG_PASS = 256  # px: where a further pass puts the largest possible face (the short side)
MAX_SIDE = 1920  # px: the first pass's long side at most (measured: 2000x1500 peaks at +210 MB; 4000x3000 near 1 GB)

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


class YuNet:
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
            return cv2.FaceDetectorYN.create("onnx", self._bytes, np.zeros(0, np.uint8), (320, 320), 0.6, 0.3, 5000)
        except cv2.error as exc:
            raise ValueError(f"OpenCV cannot read {self.path.name} as a YuNet face detector: {first_line(exc)}") from None

    def _detect(self, image: np.ndarray, min_confidence: float, nms: float) -> np.ndarray:
        """N x 15 rows: x, y, w, h, five (x, y) landmarks, score, in ``image``'s pixels."""
        det = self._detectors.get()
        det.setInputSize((image.shape[1], image.shape[0]))
        det.setScoreThreshold(min_confidence)
        det.setNMSThreshold(nms)
        _, rows = det.detect(image)
        return np.zeros((0, 15), np.float32) if rows is None else rows

    def prepare(self, header: Header, values: dict[str, Any], explicit: Collection[str]) -> tuple[int, dict[str, Any]]:
        """Decode at the largest reduction the first pass allows; values as the request meant them."""
        values = fastpath.as_meant(values, explicit)
        min_px = fastpath.smallest(max(header.width, header.height), values["min_size"], values["min_face"])
        return fastpath.reduction(passes(header.width, header.height, min_px)[0]), values

    def run(self, image: np.ndarray, *, min_confidence: float, nms: float, min_size: int, min_face: float,
            scale: float = 1.0) -> list[Detection]:
        """Faces in a BGR image: box, confidence and landmarks, in original pixels.

        ``scale`` is the image's pixels per original pixel (below 1 when decoded reduced).
        """
        height, width = round(image.shape[0] / scale), round(image.shape[1] / scale)  # the original's
        min_px = fastpath.smallest(max(width, height), min_size, min_face)
        scales = passes(width, height, min_px)
        found = []
        for s in scales:
            work, work_scale = fastpath.working_image(image, scale, fastpath.Plan(min_px, s, 1))
            rows = self._detect(work, min_confidence, nms).copy()
            # On images a few pixels thin YuNet's decoded boxes can be infinite or NaN: no face there.
            rows = rows[np.isfinite(rows[:, :15]).all(axis=1)]
            rows[:, :14] /= work_scale  # box and landmarks back to original pixels; the score stays
            found.append(rows)
        rows = np.vstack(found)
        if len(scales) > 1 and len(rows):  # a face near a pass boundary is seen twice
            keep = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(), min_confidence, nms)
            rows = rows[np.asarray(keep, int).reshape(-1)]
        return sort([_detection(r, width, height) for r in rows])


def _detection(row: np.ndarray, width: int, height: int) -> Detection:
    x, y, w, h = (float(v) for v in row[:4])
    points = row[4:14].reshape(5, 2)
    return {
        "box": clip([x, y, x + w, y + h], width, height),
        "confidence": round(float(row[14]), 4),
        "landmarks": {name: clip([px, py, px, py], width, height)[:2] for name, (px, py) in zip(LANDMARKS, points)},
    }
