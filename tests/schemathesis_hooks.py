"""Real photos for schemathesis (``SCHEMATHESIS_HOOKS=schemathesis_hooks``): what the OpenAPI document
calls an image is one, in each way a body carries it (tests/test_schemathesis.py)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from PIL import Image

import mysite.vision.decode  # noqa: F401 - registers the HEIC plugin (pillow-heif), as the server does

DATA = Path(__file__).with_name("data")


def _small(name: str, box: tuple[int, int, int, int] | None, fmt: str, size: tuple[int, int] | None = None) -> bytes:
    """A small piece of a test photo: every route answers it quickly and within any budget."""
    picture = Image.open(DATA / name).convert("RGB")
    if box is not None:
        picture = picture.crop(box)
    if size is not None:
        picture = picture.resize(size)
    buf = io.BytesIO()
    picture.save(buf, fmt)
    return buf.getvalue()


FACE = (140, 20, 204, 68)  # one face of the group photo, 64x48
PHOTOS = {
    "image/jpeg": [_small("group_17_faces.jpg", FACE, "JPEG"), _small("cat.jpg", None, "JPEG", (96, 72))],
    "image/png": [_small("digit_7.png", None, "PNG", (56, 56)), _small("astronaut.png", None, "PNG", (80, 80))],
    "image/webp": [_small("group_17_faces.jpg", FACE, "WEBP")],
    "image/gif": [_small("digit_7.png", None, "GIF", (56, 56))],
    "image/bmp": [_small("cat.jpg", None, "BMP", (96, 72))],
    "image/tiff": [_small("astronaut.png", None, "TIFF", (80, 80))],
    "image/heic": [_small("group_17_faces.jpg", FACE, "HEIF")],
    "image/avif": [_small("cat.jpg", None, "AVIF", (96, 72))],
}
BASE64 = [base64.b64encode(photo).decode("ascii") for photos in PHOTOS.values() for photo in photos]

for media_type, photos in PHOTOS.items():
    schemathesis.openapi.media_type(media_type, st.sampled_from(photos))
schemathesis.openapi.format("byte", st.sampled_from(BASE64))
