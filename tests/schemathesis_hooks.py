"""Real photos for schemathesis (``SCHEMATHESIS_HOOKS=schemathesis_hooks``): what the OpenAPI document
calls an image is one, in each way a body carries it (tests/test_schemathesis.py).

Each photo shows one face, large enough to register (YuNet finds it, dlib's model reads it), so
every image route and every face route (register, recognize, match) can succeed on any of them.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis import Case, HookContext
from schemathesis.core.parameters import ParameterLocation

import mysite.vision.decode  # noqa: F401 - registers the HEIC plugin (pillow-heif), as the server does

DATA = Path(__file__).with_name("data")
# (photo, the crop with its one face, the size it is sent at): the faces come out 64 and 61 pixels wide.
ONE_FACE = [("astronaut.png", (150, 30, 330, 210), (128, 128)), ("group_17_faces.jpg", (140, 20, 204, 68), (192, 144))]
FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/gif": "GIF", "image/bmp": "BMP",
           "image/tiff": "TIFF", "image/heic": "HEIF", "image/avif": "AVIF"}


def _photo(name: str, box: tuple[int, int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    """A small piece of a test photo: every route answers it quickly and within any budget."""
    picture = Image.open(DATA / name).convert("RGB").crop(box).resize(size)
    buf = io.BytesIO()
    picture.save(buf, fmt)
    return buf.getvalue()


PHOTOS = {media_type: [_photo(name, box, size, fmt) for name, box, size in ONE_FACE]
          for media_type, fmt in FORMATS.items()}
BASE64 = [base64.b64encode(photo).decode("ascii") for photos in PHOTOS.values() for photo in photos]

for media_type, photos in PHOTOS.items():
    schemathesis.openapi.media_type(media_type, st.sampled_from(photos))
schemathesis.openapi.format("byte", st.sampled_from(BASE64))


@schemathesis.hook
def filter_case(context: HookContext, case: Case) -> bool:
    """Not the cases built on the coverage phase's multipart template, which puts ``""`` in every required text
    field without an encoding (the name to register, here) whatever its pattern, and calls that valid."""
    meta = case.meta
    body = meta.components.get(ParameterLocation.BODY) if meta is not None else None
    return not (body is not None and body.mode.is_positive and isinstance(case.body, dict)
                and case.body.get("userid") == "")
