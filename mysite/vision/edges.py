"""Canny edge maps, the book's first web example."""

from __future__ import annotations

import cv2
import numpy as np

from mysite.params import Param
from mysite.vision.shapes import WholeImage

PARAMS = (
    Param("low", int, 100, min=0, max=10000, doc="lower hysteresis threshold"),
    Param("high", int, 200, min=0, max=10000, doc="upper hysteresis threshold"),
)


class Canny(WholeImage):
    """Edge detector; needs no file, so it is always loaded."""

    input = "gray"
    params = PARAMS

    def run(self, gray: np.ndarray, *, low: int, high: int) -> np.ndarray:
        """A white-on-black edge map the size of the input."""
        return cv2.Canny(gray, min(low, high), max(low, high))
