"""The cascade's grouping of raw hits (``cascade.group_rectangles``) against OpenCV's ``groupRectangles``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tests_helpers import BOOK_GROUP_BOXES, read

from mysite.vision.cascade import group_by_grid, group_rectangles

FACE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"


def opencv(raw: list[list[int]], threshold: int) -> list[list[int]]:
    return sorted(np.asarray(cv2.groupRectangles(raw, threshold, 0.2)[0]).reshape(-1, 4).tolist())


def clusters(rng: np.random.Generator) -> list[list[int]]:
    """Hits piled around a few places and sizes, some inside others, some not square, some tiny."""
    k, n = rng.integers(1, 15), rng.integers(1, 120)
    centres, sizes = rng.uniform(0, 400, (k, 2)), np.exp(rng.uniform(np.log(2), np.log(300), k))
    which = rng.integers(0, k, n)
    side = np.maximum(0, sizes[which] * rng.uniform(0.85, 1.2, n)).astype(int)
    corner = (centres[which] - side[:, None] / 2 + rng.normal(0, rng.uniform(0.2, 8), (n, 2))).astype(int)
    height = (side * rng.choice([1.0, 1.0, 1.3, 0.7], n)).astype(int)
    return np.column_stack([corner, side, height]).tolist()


@pytest.mark.parametrize("seed", range(2))
def test_the_same_groups_as_opencv(seed):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        raw = clusters(rng)
        for threshold in (1, 2, 3, 5):
            assert sorted(group_by_grid(np.asarray(raw).reshape(-1, 4), threshold)) == opencv(raw, threshold), raw


@pytest.mark.slow
def test_the_same_groups_as_opencv_for_a_photo_tiled_with_faces():
    """Tens of thousands of raw hits, as a photo of many small faces gives: OpenCV compares every pair."""
    photo = cv2.imdecode(np.frombuffer(read("group_17_faces.jpg"), np.uint8), cv2.IMREAD_GRAYSCALE)
    x1, y1, x2, y2 = BOOK_GROUP_BOXES[0]
    margin = (x2 - x1) // 4
    face = cv2.resize(photo[y1 - margin:y2 + margin, x1 - margin:x2 + margin], (40, 40))
    tiled = np.tile(face, (23, 30))  # 1200x920: 690 faces
    raw = np.asarray(cv2.CascadeClassifier(FACE).detectMultiScale(tiled, 1.05, 0, minSize=(20, 20)))
    raw = raw.reshape(-1, 4).tolist()
    assert len(raw) > 10_000
    for threshold in (1, 5):
        grouped = sorted(group_rectangles(raw, threshold))
        assert len(grouped) > 500 and grouped == opencv(raw, threshold)


def test_few_hits_are_grouped_by_opencv_many_by_the_grid(monkeypatch):
    import mysite.vision.cascade as cascade

    used = []
    monkeypatch.setattr(cascade, "group_by_grid", lambda r, t, eps=0.2: used.append(len(r)) or [])
    rng = np.random.default_rng(9)
    few = clusters(rng)
    assert sorted(group_rectangles(few, 2)) == opencv(few, 2) and used == []
    many = (rng.integers(0, 3000, (cascade._OPENCV_AT_MOST + 1, 4)) + [0, 0, 20, 20]).tolist()
    group_rectangles(many, 2)
    assert used == [cascade._OPENCV_AT_MOST + 1]


def test_nothing_to_group():
    assert group_rectangles([], 3) == []
    assert group_rectangles([[1, 2, 30, 30]], 0) == [[1, 2, 30, 30]]
    assert group_rectangles([[1, 2, 30, 30]], 1) == opencv([[1, 2, 30, 30]], 1) == []
