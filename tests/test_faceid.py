"""The face embedder converts only each face's surroundings to RGB, not the whole photo."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import cv2
import numpy as np
from tests_helpers import FACE_MODELS, face_model_or_skip, read

from mysite.vision.faceid import FaceEmbedder
from mysite.vision.yunet import YuNet

YUNET = Path(__file__).resolve().parents[1] / "mysite" / "models" / "data" / "yunet_s_640_640.onnx"
VALUES = {"detect_confidence": 0.7, "nms": 0.3, "min_size": 0, "min_face": 0.0, "max_faces": 20}


def test_faces_are_embedded_from_their_surroundings_as_from_the_whole_photo():
    """An RGB copy of a 12 MP photo was as large as the photo; the faces' surroundings give the same numbers."""
    embedder = FaceEmbedder(face_model_or_skip(), FACE_MODELS / "shape_predictor_5_face_landmarks.dat", YuNet(YUNET))
    photo = cv2.resize(cv2.imdecode(np.frombuffer(read("group_17_faces.jpg"), np.uint8), cv2.IMREAD_COLOR),
                       (4000, 3000))
    embedder.run(photo, **VALUES)  # the first run sets up the networks
    tracemalloc.start()
    try:
        faces = embedder.run(photo, **VALUES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(faces) == 17
    whole = embedder.embed(np.ascontiguousarray(photo[:, :, ::-1]), [f["box"] for f in faces])
    assert np.array_equal(np.array([f["embedding"] for f in faces], np.float32), whole)
    assert peak < photo.nbytes / 2, (peak, photo.nbytes)
