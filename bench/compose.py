"""Build the 12 MP benchmark photo: the test photos pasted at several scales, faces of known size.

Deterministic: the same OpenCV gives the same bytes. The face positions are known
because each pasted face is a face the book's detector finds in its source photo,
moved and scaled with it. Run ``python -m bench.compose out.jpg`` to write the JPEG.
"""

from __future__ import annotations

import sys
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
        from bench.book import detect_rects

        return detect_rects((DATA / name).read_bytes())
    return []


def build() -> tuple[np.ndarray, list[list[int]]]:
    """The 4000x3000 BGR picture and its known faces as ``[x1, y1, x2, y2]``, in reading order."""
    car = cv2.imread(str(DATA / "car.jpg"))
    s = HEIGHT / car.shape[0]
    background = cv2.resize(car, (round(car.shape[1] * s), HEIGHT), interpolation=cv2.INTER_LINEAR)
    x0 = (background.shape[1] - WIDTH) // 2
    canvas = np.ascontiguousarray(background[:, x0:x0 + WIDTH])
    faces: list[list[int]] = []
    for p in LAYOUT:
        image = cv2.imread(str(DATA / p.source), cv2.IMREAD_COLOR)
        cx, cy = 0, 0
        if p.crop:
            cx, cy, cw, ch = p.crop
            image = image[cy:cy + ch, cx:cx + cw]
        size = (round(image.shape[1] * p.scale), round(image.shape[0] * p.scale))
        interp = cv2.INTER_AREA if p.scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
        ax, ay = p.at
        if ax + size[0] > WIDTH or ay + size[1] > HEIGHT:
            raise ValueError(f"{p} does not fit in {WIDTH}x{HEIGHT}")
        canvas[ay:ay + size[1], ax:ax + size[0]] = image
        for x, y, w, h in _source_faces(p.source):
            x1, y1 = ax + (x - cx) * p.scale, ay + (y - cy) * p.scale
            faces.append([round(x1), round(y1), round(x1 + w * p.scale), round(y1 + h * p.scale)])
    faces.sort(key=lambda b: (b[1], b[0]))
    return canvas, faces


def build_jpeg() -> tuple[bytes, list[list[int]]]:
    """The composition as JPEG bytes (what a phone would upload) and its known faces."""
    canvas, faces = build()
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError("could not encode the composition")
    return buf.tobytes(), faces


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "composition_12mp.jpg")
    data, known = build_jpeg()
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, {WIDTH}x{HEIGHT}); {len(known)} known faces:")
    for box in known:
        print(f"  {box}  ({box[2] - box[0]} px)")
