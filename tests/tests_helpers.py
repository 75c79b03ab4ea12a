"""Small helpers shared by the test modules."""

from __future__ import annotations

import io
from pathlib import Path

DATA = Path(__file__).parent / "data"
# dlib's face recognition model files, from the shared folder beside the checkout (not shipped: 31 MB).
FACE_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "dlib-face"
FACE_MODEL = FACE_MODELS / "dlib_face_recognition_resnet_model_v1.dat"


def face_model_or_skip() -> Path:
    """The face recognition model file; a skip outside CI without it, a failure under CI=true."""
    import os

    import pytest

    if not FACE_MODEL.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{FACE_MODEL} is missing; CI=true requires the face recognition tests to run")
        pytest.skip(f"{FACE_MODEL} is not there (the shared model folder beside the checkout)")
    return FACE_MODEL

# The book's printed answer for its own photo (demo_request.py output), sorted.
BOOK_GROUP_BOXES = sorted([
    [151, 29, 193, 71], [77, 38, 115, 76], [448, 37, 490, 79], [81, 172, 127, 218], [536, 47, 574, 85],
    [288, 173, 331, 216], [509, 170, 553, 214], [357, 48, 399, 90], [182, 179, 219, 216], [251, 38, 293, 80],
    [400, 174, 444, 218], [390, 87, 430, 127], [54, 89, 97, 132], [499, 91, 542, 134], [159, 95, 198, 134],
    [310, 115, 344, 149], [225, 116, 265, 156],
])


def read(name: str) -> bytes:
    """The bytes of a test photo in tests/data."""
    return (DATA / name).read_bytes()


def multipart(field: str, data: bytes, filename: str = "photo.jpg") -> dict:
    """A Flask test-client form with one uploaded file."""
    return {field: (io.BytesIO(data), filename)}


def boxes_of(body: dict) -> list[list[int]]:
    return [d["box"] for d in body["result"]]
