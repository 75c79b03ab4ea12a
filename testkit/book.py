"""The book's face detection, re-implemented faithfully as the baseline (not the book's code).

What its handler does per request: decode the upload at full resolution with
``IMREAD_UNCHANGED``, convert BGR to gray, run ``haarcascade_frontalface_alt.xml``
with scaleFactor 1.1, minNeighbors 5, minSize 25x25.
"""

from __future__ import annotations

import cv2
import numpy as np

CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_alt.xml"
_classifier: cv2.CascadeClassifier | None = None


def _clf() -> cv2.CascadeClassifier:
    global _classifier
    if _classifier is None:  # loaded once, as the book does at start-up
        _classifier = cv2.CascadeClassifier(CASCADE)
    return _classifier


def detect_rects(data: bytes) -> list[tuple[int, int, int, int]]:
    """The book's faces as (x, y, w, h), sorted (OpenCV's order varies run to run)."""
    image = cv2.imdecode(np.asarray(bytearray(data), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    rects = _clf().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(25, 25))
    return sorted(tuple(r) for r in np.asarray(rects).reshape(-1, 4).tolist())


def detect(data: bytes) -> list[dict[str, list[int]]]:
    """The book's JSON result: ``[{"box": [x1, y1, x2, y2]}]``."""
    return [{"box": [x, y, x + w, y + h]} for x, y, w, h in detect_rects(data)]
