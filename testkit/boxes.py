"""Boxes compared: intersection over union and recall, for tests and benchmark tables alike."""

from __future__ import annotations

from collections.abc import Sequence

Box = Sequence[float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def recall(reference: Sequence[Box], found: Sequence[Box], threshold: float = 0.5) -> tuple[int, int]:
    """How many reference boxes some found box overlaps with IoU >= ``threshold``, out of how many."""
    hit = sum(any(iou(r, f) >= threshold for f in found) for r in reference)
    return hit, len(reference)
