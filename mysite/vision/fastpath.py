"""Detect at a working resolution chosen from the smallest object asked for.

Why: ``detectMultiScale``'s cost is set by its first pyramid level (image size x
window / smallest object). The book's fixed 25 px minimum makes a 12 MP photo scan
a 3200x2400 level. Here the smallest object is a fraction of the photo's long side
(``min_face``, never below ``min_size``), the image is decoded at a reduced size
(libjpeg scales while decoding) and resized so that object is ``WORK_WINDOWS``
cascade windows wide; boxes are scaled back to original pixels. A small photo
needs no reduction; ``coarse_scan``'s exact scan gives it the book's boxes.

A model that rescales plans its look at a photo once, from the header (``ScanPlan``), and
runs that plan on the decoded image.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# The smallest object's size in the working image, in cascade windows (20 px for the face
# cascade -> 34 px): the smallest that keeps every real face (docs/performance.md says how it was chosen).
WORK_WINDOWS = 1.7
MARGIN = 0.8  # scan objects down to this fraction of the smallest asked for (no blind spot at the boundary)
REDUCTIONS = (8, 4, 2)  # what libjpeg (and OpenCV's IMREAD_REDUCED_* flags) can decode directly


@dataclass(frozen=True)
class ScanPlan:
    """How a ``Rescaling`` model looks at one photo: made from its header before any pixel is decoded,
    followed by ``run`` as it is. Each model adds what its scan needs."""

    width: int  # the original's size, as the picture is seen
    height: int
    reduce: int  # decode at 1/reduce of the size (1, 2, 4 or 8)
    values: Mapping[str, Any]  # the model's parameters, as the request meant them
    work: int = 0  # what the scan costs in the budget's units; 0 when the decode's cost says it all

    def scale_of(self, image: np.ndarray) -> float:
        """The decoded image's pixels per original pixel: long side over long side, as ``decode_image`` says."""
        return float(max(image.shape[:2]) / max(self.width, self.height))


@dataclass(frozen=True)
class Fit:
    """The working scale that fits the smallest object asked for (``min_px`` original pixels) to the
    model's window, and the decode reduction that serves it: a part of a model's ``ScanPlan``."""

    min_px: int  # smallest object, in original pixels
    scale: float  # working pixels per original pixel (<= 1)
    reduce: int  # decode at 1/reduce of the size (1, 2, 4 or 8)


def smallest(long_side: int, min_size: int, min_face: float) -> int:
    """The smallest object to look for: ``min_face`` of the long side, never below ``min_size``."""
    return max(min_size, math.ceil(min_face * long_side - 1e-9))


def as_meant(values: dict[str, Any], explicit: Collection[str]) -> dict[str, Any]:
    """The request's values as it meant them: naming ``min_size`` but not ``min_face`` asks for that size exactly."""
    if "min_size" in explicit and "min_face" not in explicit:
        return {**values, "min_face": 0.0}
    return values


def reduction(scale: float) -> int:
    """The largest decode reduction that still leaves at least ``scale`` of the original's pixels per side."""
    return next((r for r in REDUCTIONS if 1 / r >= scale), 1)


def plan(width: int, height: int, *, min_size: int, min_face: float, window: int) -> Fit:
    """The working scale and decode reduction for a photo of this size."""
    min_px = smallest(max(width, height), min_size, min_face)
    scale = min(1.0, WORK_WINDOWS * window / min_px)
    return Fit(min_px, scale, reduction(scale))


def working_image(image: np.ndarray, decoded_scale: float, p: Fit) -> tuple[np.ndarray, float]:
    """The image at the plan's working scale (no copy when it already is) and its scale to the original."""
    factor = p.scale / decoded_scale
    if factor >= 0.98:  # within 2 %: resizing would cost more than it saves
        return image, decoded_scale
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), size[0] / w * decoded_scale
