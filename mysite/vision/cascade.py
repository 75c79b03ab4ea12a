"""Haar cascade detection (faces, cat faces) with the book's parameters by default."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from mysite.params import Param
from mysite.vision.boxes import Detection, from_xywh

PARAMS = (
    Param("scale_factor", float, 1.1, min=1.01, max=2.0, doc="pyramid step between scales"),
    Param("min_neighbors", int, 5, min=0, max=100, doc="overlapping hits needed to keep a box"),
    Param("min_size", int, 25, min=1, max=10000, doc="smallest object, in pixels"),
)


class Cascade:
    """A Haar/LBP cascade file, loaded once and used by any number of threads."""

    input = "gray"
    params = PARAMS

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # Load now so a missing or broken file is reported at start-up, not on the first request.
        self._classifier()

    def _classifier(self) -> cv2.CascadeClassifier:
        # One classifier per thread: detectMultiScale keeps per-call state inside the object.
        clf = getattr(self._local, "clf", None)
        if clf is None:
            clf = cv2.CascadeClassifier(str(self.path))
            if clf.empty():
                raise ValueError(f"{self.path} is not a cascade OpenCV can load")
            self._local.clf = clf
        return clf

    def run(self, gray: np.ndarray, *, scale_factor: float, min_neighbors: int, min_size: int) -> list[Detection]:
        """Boxes of every object found in a grayscale image."""
        rects = self._classifier().detectMultiScale(
            gray, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size)
        )
        # detectMultiScale answers an empty tuple, not an array, when it finds nothing.
        return from_xywh(np.asarray(rects).reshape(-1, 4).tolist())
