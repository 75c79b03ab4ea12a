"""Detections drawn onto an image: boxes, landmarks and short labels (pure OpenCV, no GUI)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import cv2
import numpy as np

from mysite.vision.boxes import clip

# BGR. Yellow boxes as in the book's demo_request_drawing.py; black text on a yellow tab reads on any photo.
BOX_COLOR = (0, 255, 255)
TEXT_COLOR = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_text(detection: Mapping[str, Any], default: str = "") -> str:
    """What to write on a box: its label (or ``default``) and its confidence when it has one."""
    label = str(detection.get("label") or default)
    confidence = detection.get("confidence")
    if isinstance(confidence, (int, float)):
        return f"{label} {confidence:.2f}".strip()
    return label


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
) -> np.ndarray:
    """A copy of ``image`` (BGR) with every ``{"box": [x1, y1, x2, y2]}`` drawn and labelled.

    Boxes outside the image are clipped; the input image is never modified.
    """
    out = as_color(image)
    height, width = out.shape[:2]
    # Line and text sizes follow the picture so they read the same on a thumbnail and on a 12 MP photo.
    short = min(width, height)
    thickness = max(1, round(short / 320))
    font_scale = max(0.35, short / 1000)
    for det in detections:
        # Clipped to the last pixel, not past it, so a box cut by the border still shows that edge.
        x1, y1, x2, y2 = clip(det["box"], width - 1, height - 1)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        draw_landmarks(out, det.get("landmarks") or {}, thickness, color)
        text = label_text(det, default_label)
        if text:
            _tab(out, text, (x1, y1), font_scale, color)
    return out


def draw_landmarks(image: np.ndarray, landmarks: Mapping[str, Any], thickness: int,
                   color: tuple[int, int, int] = BOX_COLOR) -> None:
    """Each ``{"name": [x, y]}`` point as a dot in ``color`` ringed in black, so it shows on skin and on hair."""
    height, width = image.shape[:2]
    radius = max(2, 2 * thickness)
    for point in landmarks.values():
        x, y = clip([point[0], point[1], point[0], point[1]], width - 1, height - 1)[:2]
        cv2.circle(image, (x, y), radius + max(1, thickness // 2), TEXT_COLOR, cv2.FILLED, cv2.LINE_AA)
        cv2.circle(image, (x, y), radius, color, cv2.FILLED, cv2.LINE_AA)


def _tab(image: np.ndarray, text: str, corner: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    """A filled label tab on the box's top-left corner, inside the box when there is no room above it."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    pad = max(1, round(th / 4))
    x, y = corner
    top = y - th - base - 2 * pad
    if top < 0:
        top = y
    x = min(x, max(0, image.shape[1] - tw - 2 * pad))
    cv2.rectangle(image, (x, top), (x + tw + 2 * pad, top + th + base + 2 * pad), color, cv2.FILLED)
    cv2.putText(image, text, (x + pad, top + pad + th), _FONT, scale, TEXT_COLOR, 1, cv2.LINE_AA)


def thumbnail(image: np.ndarray, side: int = 400) -> np.ndarray:
    """The image shrunk to fit a ``side`` x ``side`` box (never enlarged), as the bird classifier's page shows an upload."""
    height, width = image.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return as_color(image)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return as_color(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
