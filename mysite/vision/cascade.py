"""Haar cascade detection (faces, cat faces) with the book's parameters by default."""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mysite.params import Param
from mysite.vision import fastpath
from mysite.vision.boxes import Detection, clip, from_xywh
from mysite.vision.decode import Header
from mysite.vision.dnn import PerThread

PARAMS = (
    Param("scale_factor", float, 1.1, min=1.05, max=2.0,
          doc="pyramid step between scales (from 1.05: finer steps could outlast the worker timeout on a 40 MP photo)"),
    Param("min_neighbors", int, 5, min=0, max=100, doc="overlapping hits needed to keep a box"),
    Param("min_size", int, 25, min=1, max=10000, doc="smallest object, in pixels"),
    Param("min_face", float, 0.0, min=0.0, max=1.0,
          doc="smallest object as a fraction of the image's long side (0: min_size alone); "
              "an explicit min_size without min_face means min_size alone"),
)


class Cascade:
    """A Haar/LBP cascade file, loaded once and used by any number of threads."""

    input = "gray"
    params = PARAMS

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # One classifier per thread: detectMultiScale keeps per-call state inside the object.
        self._classifiers = PerThread(self._load)
        # Load now so a missing or broken file is reported at start-up, not on the first request.
        self._classifier()

    def _load(self) -> cv2.CascadeClassifier:
        clf = cv2.CascadeClassifier(str(self.path))
        if clf.empty():
            raise ValueError(f"{self.path} is not a cascade OpenCV can load")
        return clf

    def _classifier(self) -> cv2.CascadeClassifier:
        return self._classifiers.get()

    @property
    def window(self) -> int:
        """The cascade's detection window (20 px for the frontal face cascade)."""
        return int(max(self._classifier().getOriginalWindowSize()))

    def prepare(self, header: Header, values: dict[str, Any], explicit: Collection[str]) -> tuple[int, dict[str, Any]]:
        """The decode reduction for this photo, and the values as the request meant them.

        A request that names ``min_size`` but not ``min_face`` asks for that size exactly.
        """
        values = fastpath.as_meant(values, explicit)
        p = fastpath.plan(header.width, header.height, min_size=values["min_size"],
                          min_face=values["min_face"], window=self.window)
        return p.reduce, values

    def run(
        self, gray: np.ndarray, *, scale_factor: float, min_neighbors: int, min_size: int,
        min_face: float = 0.0, scale: float = 1.0,
    ) -> list[Detection]:
        """Boxes of every object found in a grayscale image, in original pixels.

        ``scale`` is the image's pixels per original pixel (below 1 when decoded reduced).
        """
        height, width = round(gray.shape[0] / scale), round(gray.shape[1] / scale)  # the original's
        p = fastpath.plan(width, height, min_size=min_size, min_face=min_face, window=self.window)
        work, work_scale = fastpath.working_image(gray, scale, p)
        # Scan a margin below a smallest object set by min_face: min_neighbors counts the hits of
        # windows a little smaller than a face too, and with minSize at its exact size a face exactly
        # that wide lost them (17 of 24 found at 100 px on 4000 px photos; starting the scan on a level
        # of exactly its size: 19). Never below min_size: the book's minSize=25 gives its exact boxes.
        min_px = max(1, math.floor(max(min_size, p.min_px * fastpath.MARGIN) * work_scale))
        rects = self._classifier().detectMultiScale(
            work, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_px, min_px)
        )
        # detectMultiScale answers an empty tuple, not an array, when it finds nothing.
        found = from_xywh(np.asarray(rects).reshape(-1, 4).tolist(), work_scale)
        if work_scale != 1.0:  # rounding while scaling back may step a pixel past the edge
            for d in found:
                d["box"] = clip(d["box"], width, height)
        return found
