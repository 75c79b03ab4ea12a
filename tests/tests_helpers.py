"""Small helpers shared by the test modules."""

from __future__ import annotations

import io


def multipart(field: str, data: bytes, filename: str = "photo.jpg") -> dict:
    """A Flask test-client form with one uploaded file."""
    return {field: (io.BytesIO(data), filename)}


def boxes_of(body: dict) -> list[list[int]]:
    return [d["box"] for d in body["result"]]
