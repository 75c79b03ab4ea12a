"""Build the 12 MP benchmark photo: the test photos pasted at several scales, faces of known size.

Deterministic: the same OpenCV gives the same bytes. The face positions are known
because each pasted face is a face the book's detector finds in its source photo,
moved and scaled with it. ``python -m bench.compose out.jpg`` writes the JPEG.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
WIDTH, HEIGHT = 4000, 3000
QUALITY = 92
# The book's boxes (x, y, w, h) in the source photos, as its detector finds them there.
_ASTRONAUT_FACE = (176, 65, 98, 98)
_ASTRONAUT_CROP = (128, 16, 200, 200)  # x, y, w, h: a square around the face
_SELFIE_CROP = (152, 41, 146, 146)  # the face and a quarter of its width around it


@dataclass(frozen=True)
class Paste:
    """One source photo (or a crop of it) scaled by ``scale`` with its top-left corner at ``at``."""

    source: str
    scale: float
    at: tuple[int, int]
    crop: tuple[int, int, int, int] | None = None


# Faces 112-152 px (group x3.3) and 118/196/294/392 px (astronaut); a group at x1.6 adds 17
# faces of 54-75 px, below 2.5 % of the long side, that the book finds and a fast path may skip.
LAYOUT = (
    Paste("group_17_faces.jpg", 3.3, (40, 40)),
    Paste("group_17_faces.jpg", 1.6, (40, 1720)),
    Paste("cat.jpg", 1.0, (2220, 40)),
    Paste("astronaut.png", 2.0, (3380, 40), _ASTRONAUT_CROP),
    Paste("astronaut.png", 1.2, (1200, 1760), _ASTRONAUT_CROP),
    Paste("astronaut.png", 3.0, (1560, 1760), _ASTRONAUT_CROP),
    Paste("astronaut.png", 4.0, (3120, 1460), _ASTRONAUT_CROP),
)


def _source_faces(name: str) -> list[tuple[int, int, int, int]]:
    """The faces the book's detector finds in a source photo (x, y, w, h)."""
    if name.startswith("astronaut"):
        return [_ASTRONAUT_FACE]
    if name.startswith("group"):
        from testkit.book import detect_rects

        return detect_rects((DATA / name).read_bytes())
    return []


def build(layout: tuple[Paste, ...] = LAYOUT, width: int = WIDTH,
          height: int = HEIGHT) -> tuple[np.ndarray, list[list[int]]]:
    """The BGR picture (the car photo as background) and its known faces as ``[x1, y1, x2, y2]``,
    in reading order. The default: the 4000x3000 composition."""
    car = cv2.imread(str(DATA / "car.jpg"))
    s = max(height / car.shape[0], width / car.shape[1])
    background = cv2.resize(car, (max(width, round(car.shape[1] * s)), max(height, round(car.shape[0] * s))),
                            interpolation=cv2.INTER_LINEAR)
    x0, y0 = (background.shape[1] - width) // 2, (background.shape[0] - height) // 2
    canvas = np.ascontiguousarray(background[y0:y0 + height, x0:x0 + width])
    faces: list[list[int]] = []
    for p in layout:
        image = cv2.imread(str(DATA / p.source), cv2.IMREAD_COLOR)
        cx, cy = 0, 0
        if p.crop:
            cx, cy, cw, ch = p.crop
            image = image[cy:cy + ch, cx:cx + cw]
        size = (round(image.shape[1] * p.scale), round(image.shape[0] * p.scale))
        interp = cv2.INTER_AREA if p.scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
        ax, ay = p.at
        if ax + size[0] > width or ay + size[1] > height:
            raise ValueError(f"{p} does not fit in {width}x{height}")
        canvas[ay:ay + size[1], ax:ax + size[0]] = image
        for x, y, w, h in _source_faces(p.source):
            x1, y1 = ax + (x - cx) * p.scale, ay + (y - cy) * p.scale
            faces.append([round(x1), round(y1), round(x1 + w * p.scale), round(y1 + h * p.scale)])
    faces.sort(key=lambda b: (b[1], b[0]))
    return canvas, faces


def exact_layout(face_px: int, width: int, height: int) -> tuple[Paste, ...]:
    """Astronaut portraits whose face is exactly ``face_px`` wide, in a grid, and the group photo
    scaled so its faces (34-46 px in the source) span ``face_px`` x 0.85 to 1.15."""
    s = face_px / _ASTRONAUT_FACE[2]
    cell = round(_ASTRONAUT_CROP[2] * s) + face_px // 2
    group_scale = face_px / 40
    group_w, group_h = round(640 * group_scale), round(482 * group_scale)
    out = [Paste("group_17_faces.jpg", group_scale, (width - group_w - 10, height - group_h - 10))]
    for row in range(max(1, (height - group_h - 20) // cell)):
        for col in range(max(1, (width - 20) // cell)):
            out.append(Paste("astronaut.png", s, (10 + col * cell, 10 + row * cell), _ASTRONAUT_CROP))
    return tuple(out[:13])  # 12 portraits at most: the group adds 17 more faces


def selfie_layout(face_px: int, width: int, height: int) -> tuple[Paste, ...]:
    """One astronaut portrait whose face is ``face_px`` wide (a selfie fills the frame), centred."""
    s = face_px / _ASTRONAUT_FACE[2]
    side = round(_SELFIE_CROP[2] * s)
    if side > min(width, height):
        raise ValueError(f"a {face_px} px face needs a {side} px crop; the frame is {width}x{height}")
    return (Paste("astronaut.png", s, ((width - side) // 2, (height - side) // 2), _SELFIE_CROP),)


def jpeg(canvas: np.ndarray) -> bytes:
    """JPEG bytes, as a phone would upload them."""
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError("could not encode the composition")
    return buf.tobytes()


def build_jpeg(layout: tuple[Paste, ...] = LAYOUT, width: int = WIDTH,
               height: int = HEIGHT) -> tuple[bytes, list[list[int]]]:
    """A composition as JPEG bytes and its known faces (default: the 12 MP one)."""
    canvas, faces = build(layout, width, height)
    return jpeg(canvas), faces


def noise_jpeg(width: int, height: int, seed: int = 1) -> bytes:
    """A photo of noise: its PNG answer is about as large as its pixels (9 MB at 2000x1500)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
