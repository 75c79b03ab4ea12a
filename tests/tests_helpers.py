"""Small helpers shared by the test modules."""

from __future__ import annotations

import io
from pathlib import Path

DATA = Path(__file__).parent / "data"

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
