"""The client's pictures, with Pillow alone: detections drawn on a photo, and a server's picture saved.

The client runs where OpenCV and numpy may not be installed (a laptop, a Raspberry Pi,
a CI job), so nothing here imports them; Pillow is imported only when a picture is drawn.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mysite.client import ClientError
from mysite.vision.layout import label_text

# Yellow boxes as in the book's demo_request_drawing.py; black text on a yellow tab reads on any photo.
BOX_COLOR = (255, 255, 0)
TEXT_COLOR = (0, 0, 0)
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF",
            ".tif": "TIFF", ".tiff": "TIFF"}


def _format(out: Path) -> str:
    fmt = _FORMATS.get(out.suffix.lower() or ".png")
    if fmt is None:
        raise ClientError(f"cannot write an image named {out} (use .png or .jpg)")
    return fmt


def _corners(detection: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """x1, y1, x2, y2 of the book's ``box`` or of DeepStack's ``x_min``/``y_min``/``x_max``/``y_max``."""
    box = detection.get("box")
    if isinstance(box, (list, tuple)) and len(box) == 4:
        return float(box[0]), float(box[1]), float(box[2]), float(box[3])
    keys = ("x_min", "y_min", "x_max", "y_max")
    if all(isinstance(detection.get(k), (int, float)) for k in keys):
        return tuple(float(detection[k]) for k in keys)  # type: ignore[return-value]
    return None


def draw_file(image: bytes, detections: Sequence[Mapping[str, Any]], out: Path, label: str = "") -> None:
    """Write ``image`` with ``detections`` drawn to ``out`` (its suffix picks the format).

    The photo is turned as its EXIF orientation says first: the server answers boxes on the
    picture as it is seen, not as its pixels are stored.
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

    fmt = _format(out)
    try:
        with Image.open(io.BytesIO(image)) as opened:
            picture = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ClientError(f"the image could not be decoded here to draw on: {exc}") from None
    draw = ImageDraw.Draw(picture)
    short = min(picture.size)
    width = max(1, round(short / 320))  # lines and text follow the picture: alike on a thumbnail and 12 MP
    font = ImageFont.load_default(size=max(10, round(short / 40)))
    radius = max(1, width)
    for det in detections:
        corners = _corners(det)
        if corners is None:
            continue
        x1, y1, x2, y2 = corners
        draw.rectangle((x1, y1, x2, y2), outline=BOX_COLOR, width=width)
        for point in (det.get("landmarks") or {}).values():
            x, y = float(point[0]), float(point[1])
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=BOX_COLOR, outline=TEXT_COLOR)
        text = label_text(det, label)
        if text:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tab_h = bottom - top + 2 * width
            ty = y1 - tab_h if y1 - tab_h >= 0 else y1  # above the box, inside it when there is no room
            draw.rectangle((x1, ty, x1 + right - left + 2 * width, ty + tab_h), fill=BOX_COLOR)
            draw.text((x1 + width - left, ty + width - top), text, fill=TEXT_COLOR, font=font)
    _save(picture, out, fmt)


def save_as(picture: bytes, out: Path) -> None:
    """Write a picture the server answered: as it came when ``out`` names its format, else converted."""
    from PIL import Image, UnidentifiedImageError

    fmt = _format(out)
    try:
        with Image.open(io.BytesIO(picture)) as opened:
            if opened.format == fmt:
                out.write_bytes(picture)
                return
            converted = opened.convert("RGB" if fmt == "JPEG" else opened.mode)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ClientError(f"the server's answer is no picture that can be saved: {exc}") from None
    _save(converted, out, fmt)


def _save(picture: Any, out: Path, fmt: str) -> None:
    buf = io.BytesIO()
    picture.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    out.write_bytes(buf.getvalue())
