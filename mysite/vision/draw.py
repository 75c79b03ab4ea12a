"""Detections drawn onto an image: boxes, landmarks and short labels (pure OpenCV, no GUI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import cv2
import numpy as np

from mysite.vision import layout
from mysite.vision.shapes import clip

# BGR. Yellow boxes as in the book's demo_request_drawing.py; black text on a yellow tab reads on any photo.
BOX_COLOR = (0, 255, 255)
TEXT_COLOR = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def as_color(image: np.ndarray) -> np.ndarray:
    """A 3-channel BGR copy of a gray, BGR or BGRA image, safe to draw on."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def draw_detections(
    image: np.ndarray,
    detections: Iterable[Mapping[str, Any]],
    *,
    default_label: str = "",
    color: tuple[int, int, int] = BOX_COLOR,
    labels: bool = True,
) -> np.ndarray:
    """A copy of ``image`` (BGR) with every ``{"box": [x1, y1, x2, y2]}`` drawn and labelled.

    Labels sit outside every box (``layout.place_labels``): one with no free place is left out.
    Boxes outside the image are clipped; the input image is never modified.
    """
    out = as_color(image)
    height, width = out.shape[:2]
    # Line and text sizes follow the picture so they read the same on a thumbnail and on a 12 MP photo.
    short = min(width, height)
    thickness = max(1, round(short / 320))
    font_scale = max(0.35, short / 1000)
    dets = list(detections)
    # Clipped to the last pixel, not past it, so a box cut by the border still shows that edge.
    boxes = [clip(det["box"], width - 1, height - 1) for det in dets]
    for (x1, y1, x2, y2), det in zip(boxes, dets, strict=True):
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        draw_landmarks(out, det.get("landmarks") or {}, thickness, color, box=(x1, y1, x2, y2))
    texts = [layout.label_text(det, default_label) if labels else "" for det in dets]
    sizes = [_tab_size(text, font_scale) if text else None for text in texts]
    spots = layout.place_labels(boxes, sizes, width, height, thickness)
    for text, spot in zip(texts, spots, strict=True):
        if spot is not None:
            _tab(out, text, spot, font_scale, color)
    return out


def draw_landmarks(image: np.ndarray, landmarks: Mapping[str, Any], thickness: int,
                   color: tuple[int, int, int] = BOX_COLOR, box: tuple[int, int, int, int] | None = None) -> None:
    """Each ``{"name": [x, y]}`` point as a small dot in ``color``, sized to its face (``box``).

    A face big enough gets a dark ring round each dot, so it shows on skin and on hair.
    """
    height, width = image.shape[:2]
    face = box or (0, 0, 30 * thickness, 30 * thickness)
    radius = layout.mark_radius(face, thickness)
    for point in landmarks.values():
        x, y = clip([point[0], point[1], point[0], point[1]], width - 1, height - 1)[:2]
        if layout.ringed(face):
            cv2.circle(image, (x, y), radius + 1, TEXT_COLOR, cv2.FILLED, cv2.LINE_AA)
        cv2.circle(image, (x, y), radius, color, cv2.FILLED, cv2.LINE_AA)


def _tab_size(text: str, scale: float) -> tuple[int, int]:
    """(width, height) of a label tab: the text and its padding."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    pad = max(1, round(th / 4))
    return tw + 2 * pad, th + base + 2 * pad


def _tab(image: np.ndarray, text: str, spot: layout.Rect, scale: float, color: tuple[int, int, int]) -> None:
    """A filled label tab filling ``spot`` (from ``layout.place_labels``), black text on ``color``."""
    (_, th), _ = cv2.getTextSize(text, _FONT, scale, 1)
    pad = max(1, round(th / 4))
    x1, y1, x2, y2 = spot
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), color, cv2.FILLED)
    cv2.putText(image, text, (x1 + pad, y1 + pad + th), _FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)


def thumbnail(image: np.ndarray, side: int = 400) -> np.ndarray:
    """The image shrunk to fit a ``side`` x ``side`` box (never enlarged), as the bird classifier's page shows an upload."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return as_color(image)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return as_color(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
