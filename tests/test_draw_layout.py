"""Server drawings (``?output=image``, the page's form without JavaScript, the batch client's --draw-dir):
labels never cover a face, landmark marks stay small, on the group photo's 27-35 px faces and on a 12 MP one."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from mysite.vision import layout
from mysite.vision.draw import draw_detections

FACE_MARGIN = 3  # px inside each box's outline: what is left is the face


@pytest.fixture(scope="module")
def yunet_faces(app, group_jpg) -> list[dict]:
    r = app.test_client().post("/detect?detector=yunet", data={"image": (io.BytesIO(group_jpg), "g.jpg")},
                               content_type="multipart/form-data")
    faces = r.get_json()["result"]
    assert len(faces) == 17 and all(len(f["landmarks"]) == 5 for f in faces)
    return faces


def _covered(before: np.ndarray, after: np.ndarray, box: list[int], margin: int = FACE_MARGIN) -> float:
    """The share of a face's pixels (its box, less the outline) that the drawing changed."""
    x1, y1, x2, y2 = box
    inner = (np.abs(after.astype(int) - before.astype(int)).sum(axis=2) > 0)[y1 + margin:y2 - margin,
                                                                           x1 + margin:x2 - margin]
    return float(inner.mean())


def _yellow_tabs(after: np.ndarray, boxes: list[list[int]]) -> int:
    """Pixels of label tabs: box yellow, outside every box."""
    b, g, r = (after[..., i].astype(int) for i in range(3))
    yellow = (b < 60) & (g > 220) & (r > 220)
    for x1, y1, x2, y2 in boxes:
        yellow[max(0, y1 - 3):y2 + 4, max(0, x1 - 3):x2 + 4] = False
    return int(yellow.sum())


def test_labels_and_landmarks_leave_every_face_visible(group_jpg, yunet_faces) -> None:
    photo = cv2.imdecode(np.frombuffer(group_jpg, np.uint8), cv2.IMREAD_COLOR)
    drawn = draw_detections(photo, yunet_faces, default_label="face")
    boxes = [[round(v) for v in f["box"]] for f in yunet_faces]
    # Only the five small marks touch a face: no label, no neighbour's label, no big dots.
    worst = max(_covered(photo, drawn, box) for box in boxes)
    assert worst < 0.25, f"a face is {worst:.0%} covered"
    assert _yellow_tabs(drawn, boxes) > 17 * 100, "most faces still get their label, outside the boxes"


@pytest.mark.slow
def test_a_12_mp_photo_gets_small_marks_and_labels_off_the_faces(group_jpg, yunet_faces) -> None:
    photo = cv2.imdecode(np.frombuffer(group_jpg, np.uint8), cv2.IMREAD_COLOR)
    big = cv2.resize(photo, None, fx=6, fy=6, interpolation=cv2.INTER_LINEAR)  # 3840x2892, faces ~170 px
    faces = [{**f, "box": [6 * v for v in f["box"]],
              "landmarks": {k: [6 * p[0], 6 * p[1]] for k, p in f["landmarks"].items()}} for f in yunet_faces]
    drawn = draw_detections(big, faces, default_label="face")
    boxes = [[round(v) for v in f["box"]] for f in faces]
    worst = max(_covered(big, drawn, box, margin=3 * 6) for box in boxes)
    assert worst < 0.08, f"a face is {worst:.0%} covered"


def test_place_labels_keeps_off_boxes_and_other_labels() -> None:
    boxes = [[10, 30, 40, 60], [42, 30, 72, 60], [10, 0, 72, 8]]
    spots = layout.place_labels(boxes, [(30, 10)] * 3, 100, 100, gap=1)
    placed = [s for s in spots if s is not None]
    assert spots[0] is not None and spots[1] is not None  # below, since above is the third box
    for spot in placed:
        assert not any(layout._overlaps(spot, (b[0], b[1], b[2] + 1, b[3] + 1)) for b in boxes)
    assert not any(layout._overlaps(a, b) for i, a in enumerate(placed) for b in placed[i + 1:])
    # No room anywhere: the label is left out, not drawn over a face.
    assert layout.place_labels([[0, 0, 100, 100]], [(30, 10)], 100, 100, gap=1) == [None]


def crowd() -> tuple[list[list[int]], list[tuple[int, int] | None], int, int]:
    """320 boxes 80 px apart on a 1600x1280 picture, each with room for its label; the first five unlabelled."""
    boxes = [[x, y, x + 20, y + 20] for y in range(30, 1280, 80) for x in range(20, 1600, 80)]
    sizes: list[tuple[int, int] | None] = [None] * 5 + [(30, 10)] * (len(boxes) - 5)
    return boxes, sizes, 1600, 1280


def test_labels_are_tried_for_the_first_max_labels_labelled_boxes_only() -> None:
    boxes, sizes, width, height = crowd()
    spots = layout.place_labels(boxes, sizes, width, height, gap=1)
    assert len(boxes) == 320 and spots[:5] == [None] * 5
    assert all(spot is not None for spot in spots[5:5 + layout.MAX_LABELS])
    assert spots[5 + layout.MAX_LABELS:] == [None] * (len(boxes) - 5 - layout.MAX_LABELS)


def test_mark_radius_follows_the_face() -> None:
    assert layout.mark_radius([0, 0, 27, 27], line=2) == 1
    assert layout.mark_radius([0, 0, 170, 170], line=12) == 6
    assert not layout.ringed([0, 0, 27, 27]) and layout.ringed([0, 0, 170, 170])
