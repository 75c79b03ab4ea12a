"""Who is this face? YuNet finds the faces, dlib's ResNet turns each into a 128-number embedding.

Two embeddings of one person lie close together (Euclidean distance below about 0.6),
of two people far apart; matching them against registered people is the web side's
work (``mysite/faces/``). dlib's 5-point shape predictor places each face's eyes and
nose so the network sees the face aligned, at 150x150 pixels.

dlib is imported when a model is built, so a site without it still starts and only
the face-recognition routes answer 503, naming the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mysite.params import Param
from mysite.vision.shapes import Detection, WholeImage
from mysite.vision.yunet import PARAMS as YUNET_PARAMS
from mysite.vision.yunet import YuNet

DIMENSIONS = 128
# Faces embedded per image at most, largest first: each is a pass of the ResNet, the costliest work a request can ask for.
MAX_FACES = 50
# Faces the network embeds at once: a batch costs no less CPU, and its working memory grows with its size.
BATCH = 1

PARAMS = (
    *(p for p in YUNET_PARAMS if p.name != "min_confidence"),
    # Not min_confidence: on the recognition routes that name is DeepStack's match threshold.
    Param("detect_confidence", float, 0.7, min=0.0, max=1.0, doc="smallest face-detection score kept"),
    Param("max_faces", int, 20, min=1, max=MAX_FACES, doc="faces embedded per image at most, largest first"),
)

INSTALL_HINT = ("dlib is not installed: pip install dlib-bin (a prebuilt wheel for x86-64 Linux and Windows), "
                "or pip install dlib (built from source, needs CMake and a compiler)")


def load_dlib() -> Any:
    """The dlib module, or a ValueError naming the package to install."""
    try:
        import dlib  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return dlib


class FaceEmbedder(WholeImage):
    """dlib's face embedding network and shape predictor, fed with the faces YuNet finds (the whole
    image, decoded in full: the network wants every pixel of a face)."""

    input = "color"
    params = PARAMS

    def __init__(self, path: Path, landmarks: Path, detector: YuNet) -> None:
        dlib = load_dlib()
        self.path = Path(path)
        self._dlib = dlib
        try:
            self._net = dlib.face_recognition_model_v1(str(path))
        except RuntimeError as exc:
            raise ValueError(f"dlib cannot read {self.path.name} as a face recognition model: {exc}") from None
        try:
            self._shape = dlib.shape_predictor(str(landmarks))
        except RuntimeError as exc:
            raise ValueError(f"dlib cannot read {Path(landmarks).name} as a shape predictor: {exc}") from None
        self.detector = detector

    def embed(self, rgb: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
        """One unit-scale 128-d embedding per box (N x 128 float32) of an RGB image."""
        out = np.zeros((len(boxes), DIMENSIONS), np.float32)
        for start in range(0, len(boxes), BATCH):
            shapes = self._dlib.full_object_detections()
            for x1, y1, x2, y2 in boxes[start:start + BATCH]:
                shapes.append(self._shape(rgb, self._dlib.rectangle(int(x1), int(y1), int(x2), int(y2))))
            for i, v in enumerate(self._net.compute_face_descriptor(rgb, shapes), start):
                out[i] = np.asarray(v, np.float32)
        return out

    def run(self, image: np.ndarray, *, detect_confidence: float, nms: float, min_size: int, min_face: float,
            max_faces: int) -> list[Detection]:
        """Faces in a BGR image, largest first: box, detection confidence and ``embedding`` (128 floats)."""
        faces = self.detector.run(image, self.detector.plan_for(image, min_confidence=detect_confidence, nms=nms,
                                                                min_size=min_size, min_face=min_face))
        faces = [f for f in faces if f["box"][2] - f["box"][0] >= 8 and f["box"][3] - f["box"][1] >= 8]
        faces.sort(key=lambda f: -(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
        faces = faces[:max_faces]
        vectors = self._embed_in_place(image, [f["box"] for f in faces])
        return [{"box": f["box"], "confidence": f["confidence"], "embedding": v.tolist()}
                for f, v in zip(faces, vectors)]

    def _embed_in_place(self, image: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
        """``embed`` on the photo turned to RGB where it lies, and back: dlib wants RGB, and a copy of a
        whole photo would double what the request holds."""
        if image.ndim != 3 or not image.flags.writeable or not image.flags.c_contiguous:
            return self.embed(np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2
                                                                else cv2.COLOR_BGR2RGB)), boxes)
        _swap_red_blue(image)
        try:
            return self.embed(image, boxes)
        finally:
            _swap_red_blue(image)


def _swap_red_blue(image: np.ndarray, rows: int = 256) -> None:
    """BGR to RGB (or back) where the picture lies, a band of rows at a time: OpenCV's own conversion in
    place copies the whole picture first."""
    for top in range(0, image.shape[0], rows):
        band = image[top:top + rows]
        first = band[:, :, 0].copy()
        band[:, :, 0] = band[:, :, 2]
        band[:, :, 2] = first
