"""Detections as plain data: boxes in original-image pixels, in a stable order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Detection = dict[str, Any]  # {"box": [x1, y1, x2, y2], optional "label", "confidence", "landmarks"}


def from_xywh(rects: Iterable[Iterable[float]], scale: float = 1.0) -> list[Detection]:
    """OpenCV ``(x, y, w, h)`` rectangles found at ``scale`` to the book's ``{"box": [x1, y1, x2, y2]}``."""
    out = []
    for x, y, w, h in rects:
        out.append({"box": [round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale)]})
    return sort(out)


def sort(detections: list[Detection]) -> list[Detection]:
    """Reading order (top to bottom, then left to right): OpenCV's own order varies run to run."""
    return sorted(detections, key=lambda d: (d["box"][1], d["box"][0], d["box"][3], d["box"][2], d.get("label", "")))


def clip(box: list[float], width: int, height: int) -> list[int]:
    """Round a box to whole pixels inside a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = box
    return [
        int(min(max(round(x1), 0), width)),
        int(min(max(round(y1), 0), height)),
        int(min(max(round(x2), 0), width)),
        int(min(max(round(y2), 0), height)),
    ]
