"""Where a drawing puts its labels and how big its landmark marks are: no OpenCV.

A label goes outside every box (above, below or beside its own), never over a face, and never over
another label; one with no free place is left out (the page shows it on hover or tap). Labels are
tried for the first ``MAX_LABELS`` labelled boxes only. The page's script (``static/draw.js``)
follows the same rules, so server and browser drawings agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 (x2, y2 exclusive)
# Each label tried is tested against every box: without a bound, thousands of low-confidence boxes
# (min_confidence=0, nms=1) cost time in the square of their number. A picture with this many
# labels has little room left for more. draw.js holds the same number.
MAX_LABELS = 256


def label_text(detection: Mapping[str, Any], default: str = "") -> str:
    """What to write on a box: its label (or ``default``) and its confidence when it has one: "face 0.93"."""
    label = str(detection.get("label") or default)
    confidence = detection.get("confidence")
    if isinstance(confidence, (int, float)):
        return f"{label} {confidence:.2f}".strip()
    return label


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def candidates(box: Sequence[int], size: tuple[int, int], gap: int) -> list[Rect]:
    """The places tried for a ``size`` (width, height) label of ``box``, best first: above, below, beside."""
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    w, h = size
    spots = [(x1, y1 - gap - h), (x1, y2 + gap), (x2 - w, y1 - gap - h), (x2 - w, y2 + gap),
             (x2 + gap, y1), (x1 - gap - w, y1)]
    return [(x, y, x + w, y + h) for x, y in spots]


def place_labels(boxes: Sequence[Sequence[int]], sizes: Sequence[tuple[int, int] | None],
                 width: int, height: int, gap: int) -> list[Rect | None]:
    """A rectangle for each label, or None where it would cover a box or another label, or leave the picture.

    ``sizes[i]`` is label i's (width, height), None for a box without a label. Every box is padded by
    ``gap`` (its line) so a label never touches another face's outline.
    """
    import numpy as np  # here: the client, without numpy, reads label_text from this module

    edges = np.array([[int(v) for v in b[:4]] for b in boxes], np.int64).reshape(-1, 4).T
    x1, y1, x2, y2 = edges[0] - gap, edges[1] - gap, edges[2] + gap + 1, edges[3] + gap + 1

    def off_every_box(r: Rect) -> bool:
        return not np.any((r[0] < x2) & (x1 < r[2]) & (r[1] < y2) & (y1 < r[3]))

    placed: list[Rect] = []
    out: list[Rect | None] = []
    tried = 0
    for box, size in zip(boxes, sizes, strict=True):
        spot = None
        if size is not None and tried < MAX_LABELS:
            tried += 1
            spot = next((r for r in candidates(box, size, gap + 1)
                         if r[0] >= 0 and r[1] >= 0 and r[2] <= width and r[3] <= height
                         and not any(_overlaps(r, p) for p in placed) and off_every_box(r)), None)
        if spot is not None:
            placed.append(spot)
        out.append(spot)
    return out


def mark_radius(box: Sequence[int], line: int) -> int:
    """The radius of a landmark mark on ``box``: about 1/30 of the face, at least 1 px, at most the line."""
    side = min(int(box[2]) - int(box[0]), int(box[3]) - int(box[1]))
    return max(1, min(line, round(side / 30)))


def ringed(box: Sequence[int]) -> bool:
    """Whether a mark gets a dark ring (it shows on skin and hair): not on faces too small to spare the pixels."""
    return min(int(box[2]) - int(box[0]), int(box[3]) - int(box[1])) >= 60
