"""The face embedder hands dlib the photo in RGB without a copy of it."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from tests_helpers import FACE_MODELS, face_model_or_skip, read

from mysite.vision.faceid import FaceEmbedder
from mysite.vision.yunet import YuNet

YUNET = Path(__file__).resolve().parents[1] / "mysite" / "models" / "data" / "yunet_s_640_640.onnx"
VALUES = {"detect_confidence": 0.7, "nms": 0.3, "min_size": 0, "min_face": 0.0, "max_faces": 20}


def _photo(name: str, crop: tuple[slice, slice] | None, side: tuple[int, int]) -> np.ndarray:
    picture = cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)
    return cv2.resize(picture[crop] if crop else picture, side)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "crop", "faces"), [
    ("group_17_faces.jpg", None, 17),
    ("astronaut.png", (slice(40, 230), slice(140, 330)), 1),  # a portrait: the face fills the photo
])
def test_faces_are_embedded_as_from_an_rgb_copy_without_one(name, crop, faces):
    """An RGB copy of a 12 MP photo was as large as the photo, and not in the budget; a copy of each face's
    surroundings was the whole photo again for a portrait."""
    embedder = FaceEmbedder(face_model_or_skip(), FACE_MODELS / "shape_predictor_5_face_landmarks.dat", YuNet(YUNET))
    photo = _photo(name, crop, (4000, 3000))
    original = photo.copy()
    embedder.run(photo, **VALUES)  # the first run sets up the networks
    tracemalloc.start()
    try:
        found = embedder.run(photo, **VALUES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(found) == faces
    assert np.array_equal(photo, original)  # given back as it came
    copied = embedder.embed(np.ascontiguousarray(photo[:, :, ::-1]), [f["box"] for f in found])
    assert np.array_equal(np.array([f["embedding"] for f in found], np.float32), copied)
    assert peak < photo.nbytes / 4, (peak, photo.nbytes)
