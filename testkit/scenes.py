"""Photos with known faces at any size: single faces cut from the test photos and pasted at chosen
sizes on several backgrounds, on a grid or at random places (tests and bench.everyday).

Deterministic (a seed per scene). Faces: the 17 of the book's group photo (each the book's box
and a quarter of its width around it) and the astronaut's; the known box of a pasted face is the
source's box moved and scaled with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from testkit.compose import _ASTRONAUT_FACE, DATA, _source_faces, jpeg

CONTEXT = 0.25  # each side of a face's box, as a fraction of its width, pasted with it
BACKGROUNDS = ("car", "cat", "noise", "gradient", "blurred group")


@dataclass(frozen=True)
class Scene:
    """``faces`` faces ``face_px`` (lo, hi) wide, on a grid or at random places (never overlapping)."""

    name: str
    width: int
    height: int
    faces: int
    face_px: tuple[int, int]
    layout: str = "grid"  # or "random"
    background: str = "car"
    seed: int = 0


@cache
def _faces() -> list[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """Face crops (BGR) and the face's box (x, y, w, h) in the crop."""
    out = []
    group = cv2.imread(str(DATA / "group_17_faces.jpg"))
    astronaut = cv2.imread(str(DATA / "astronaut.png"))
    sources = [(group, r) for r in _source_faces("group_17_faces.jpg")]
    sources.append((astronaut, _ASTRONAUT_FACE))
    for image, (x, y, w, h) in sources:
        m = round(CONTEXT * w)
        x0, y0 = max(0, x - m), max(0, y - m)
        x1, y1 = min(image.shape[1], x + w + m), min(image.shape[0], y + h + m)
        out.append((image[y0:y1, x0:x1].copy(), (x - x0, y - y0, w, h)))
    return out


def background(kind: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A face-free background of this kind and size."""
    if kind in ("car", "cat"):
        src = cv2.imread(str(DATA / f"{kind}.jpg"))
        return cv2.resize(src, (width, height), interpolation=cv2.INTER_LINEAR)
    if kind == "noise":  # textured: smoothed colour noise
        small = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    if kind == "gradient":
        x = np.linspace(40, 220, width, dtype=np.float32)
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
        plane = (x[None, :] * (0.6 + 0.4 * y)).astype(np.uint8)
        return cv2.merge([plane, np.flipud(plane), np.full_like(plane, 128)])
    if kind == "blurred group":  # the group photo too blurred for any face to be found in it
        src = cv2.GaussianBlur(cv2.imread(str(DATA / "group_17_faces.jpg")), (0, 0), 9)
        return cv2.resize(src, (width, height), interpolation=cv2.INTER_LINEAR)
    raise ValueError(f"unknown background {kind!r}")


def build(scene: Scene) -> tuple[np.ndarray, list[list[int]]]:
    """The picture and its faces as ``[x1, y1, x2, y2]``, in reading order."""
    rng = np.random.default_rng(scene.seed)
    canvas = np.ascontiguousarray(background(scene.background, scene.width, scene.height, rng))
    faces = _faces()
    sizes = rng.uniform(scene.face_px[0], scene.face_px[1], scene.faces)
    cells = _grid(scene, max(sizes)) if scene.layout == "grid" else None
    placed: list[tuple[int, int, int, int]] = []  # x0, y0, x1, y1 of each paste
    known: list[list[int]] = []
    for i, size in enumerate(sizes):
        crop, (fx, fy, fw, fh) = faces[int(rng.integers(len(faces)))] if cells is None else faces[i % len(faces)]
        s = size / fw
        pw, ph = max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))
        if pw > scene.width or ph > scene.height:
            raise ValueError(f"a {size:.0f} px face does not fit in {scene.width}x{scene.height}")
        if cells is not None:
            cx, cy, cell = cells[i]
            x, y = cx + (cell - pw) // 2, cy + (cell - ph) // 2
        else:
            for _ in range(500):  # bounded: a crowded scene raises rather than loops
                x, y = int(rng.integers(0, scene.width - pw + 1)), int(rng.integers(0, scene.height - ph + 1))
                if not any(x < q[2] and q[0] < x + pw and y < q[3] and q[1] < y + ph for q in placed):
                    break
            else:
                raise ValueError(f"no room for {scene.faces} faces in {scene.name}")
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        canvas[y:y + ph, x:x + pw] = cv2.resize(crop, (pw, ph), interpolation=interp)
        placed.append((x, y, x + pw, y + ph))
        known.append([round(x + fx * s), round(y + fy * s), round(x + (fx + fw) * s), round(y + (fy + fh) * s)])
    known.sort(key=lambda b: (b[1], b[0]))
    return canvas, known


def _grid(scene: Scene, largest: float) -> list[tuple[int, int, int]]:
    """Cells (x, y, side) in reading order: as square as the photo allows, one per face."""
    n = scene.faces
    cols = max(1, round((n * scene.width / scene.height) ** 0.5))
    rows = -(-n // cols)
    cell = min(scene.width // cols, scene.height // rows)
    if cell < largest * (1 + 2 * CONTEXT):
        raise ValueError(f"{n} faces of {largest:.0f} px do not fit on a grid in {scene.width}x{scene.height}")
    ox, oy = (scene.width - cols * cell) // 2, (scene.height - rows * cell) // 2
    return [(ox + (i % cols) * cell, oy + (i // cols) * cell, cell) for i in range(n)]


def build_jpeg(scene: Scene) -> tuple[bytes, list[list[int]]]:
    canvas, known = build(scene)
    return jpeg(canvas), known


SIZES = {"0.3 MP": (640, 480), "1 MP": (1155, 866), "3 MP": (2000, 1500), "12 MP": (4000, 3000),
         "24 MP": (6000, 4000)}


def suite(sizes: tuple[str, ...] = tuple(SIZES)) -> list[Scene]:
    """Scenes for every size: few and many faces, grids and random places, each background.

    Faces from 2.5 % of the long side (the face models' default ``min_face``) to about 15 %.
    """
    out = []
    for i, label in enumerate(sizes):
        w, h = SIZES[label]
        lo = round(0.025 * max(w, h))
        big = max(w, h) // 7
        mid = max(lo + 2, round(0.06 * max(w, h)))
        out += [
            Scene(f"{label} grid 20 faces {lo}-{mid} px", w, h, 20, (lo, mid), "grid", BACKGROUNDS[i % 5], i),
            Scene(f"{label} random 12 faces {lo}-{big} px", w, h, 12, (lo, big), "random", BACKGROUNDS[(i + 1) % 5],
                  10 + i),
            Scene(f"{label} random 5 faces {mid}-{big} px", w, h, 5, (mid, big), "random", BACKGROUNDS[(i + 2) % 5],
                  20 + i),
        ]
        if label in ("12 MP", "24 MP"):
            fit = min(w // 10, h // 10) / (1 + 2 * CONTEXT)  # 100 faces on a 10 x 10 grid
            out += [
                Scene(f"{label} grid 100 faces {lo}-{round(fit)} px", w, h, 100, (lo, fit), "grid",
                      BACKGROUNDS[(i + 3) % 5], 30 + i),
                Scene(f"{label} grid 20 faces 132-159 px", w, h, 20, (132, 159), "grid", BACKGROUNDS[(i + 4) % 5],
                      40 + i),
                Scene(f"{label} random 40 faces {lo}-{3 * lo} px", w, h, 40, (lo, 3 * lo), "random",
                      BACKGROUNDS[i % 5], 50 + i),
            ]
    return out

