"""Faces found and time taken by each /detect detector on the test photos (prints, never fails).

    MYSITE_MODEL_DIR=/path/with/face_detection_full_range.tflite python bench/faces.py

Times are the median of in-process ``model.run`` calls on an already decoded
image (decoding is the same for every detector). "matches Haar" counts the
boxes overlapping (IoU > 0.3) one of Haar's boxes, which on the group photo
are the 17 faces.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mysite import create_app  # noqa: E402
from mysite.web.api import FACE_DETECTORS  # noqa: E402


def iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main(runs: int = 20) -> None:
    registry = create_app({"MYSITE_LOG_LEVEL": "ERROR"}).extensions["mysite.registry"]
    for photo in ("astronaut.png", "group_17_faces.jpg"):
        color = cv2.imread(str(ROOT / "tests/data" / photo))
        haar_boxes: list[list[int]] = []
        for value, name in FACE_DETECTORS.models.items():
            entry = registry.entries[name]
            if not entry.loaded:
                print(f"{photo:20} {value:9} not loaded ({name}: run python -m mysite.models fetch {name})")
                continue
            model = entry.model
            image = cv2.cvtColor(color, cv2.COLOR_BGR2GRAY) if model.input == "gray" else color
            params = {p.name: p.default for p in model.params}
            found = model.run(image, **params)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                model.run(image, **params)
                times.append(time.perf_counter() - started)
            boxes = [d["box"] for d in found]
            if value == "haar":
                haar_boxes = boxes
            matched = sum(any(iou(b, h) > 0.3 for h in haar_boxes) for b in boxes)
            print(f"{photo:20} {value:9} {len(found):3} faces, {matched:3} match Haar, "
                  f"median {statistics.median(times) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
