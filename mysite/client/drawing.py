"""The client's pictures, with Pillow alone: detections drawn on a photo, and a server's picture saved.

The client runs where OpenCV and numpy may not be installed (a laptop, a Raspberry Pi,
a CI job), so nothing here imports them; Pillow is imported only when a picture is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mysite.client import ClientError
from mysite.vision.layout import label_text

# Yellow boxes as in the book's demo_request_drawing.py; black text on a yellow tab reads on any photo.
BOX_COLOR = (255, 255, 0)
TEXT_COLOR = (0, 0, 0)
MAX_LABEL = 80  # characters: a longer label would run off any picture
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".gif": "GIF",
            ".tif": "TIFF", ".tiff": "TIFF"}


def image_format(out: Path) -> str:
    """The Pillow format ``out``'s suffix names (PNG without one); ``ClientError`` for one we cannot write."""
    fmt = _FORMATS.get(out.suffix.lower() or ".png")
    if fmt is None:
        raise ClientError(f"cannot write an image named {out} (use .png or .jpg)")
    return fmt


def _number(value: Any) -> float | None:
    """A finite coordinate, or None (a string, null, a boolean, an infinity, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def _corners(detection: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """x1, y1, x2, y2 of the book's ``box`` or of DeepStack's ``x_min``/``y_min``/``x_max``/``y_max``;
    None when they are not four finite numbers."""
    box = detection.get("box")
    if isinstance(box, (list, tuple)):
        values = list(box) if len(box) == 4 else []
    else:
        values = [detection.get(k) for k in ("x_min", "y_min", "x_max", "y_max")]
    numbers = [_number(v) for v in values]
    if len(numbers) != 4 or any(n is None for n in numbers):
        return None
    x1, y1, x2, y2 = (n for n in numbers if n is not None)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def clip(corners: tuple[float, float, float, float], size: tuple[int, int], margin: int
         ) -> tuple[float, float, float, float]:
    """A box held to the picture and ``margin`` pixels around it: an edge outside stays unseen, and
    Pillow's time follows the picture, not the coordinates."""
    w, h = size
    x1, y1, x2, y2 = corners
    return (min(max(x1, -margin), w + margin), min(max(y1, -margin), h + margin),
            min(max(x2, -margin), w + margin), min(max(y2, -margin), h + margin))


def _points(detection: Mapping[str, Any]) -> list[tuple[float, float]] | None:
    """The landmark points (``{"name": [x, y]}`` or a list of points); None when they are malformed."""
    landmarks = detection.get("landmarks")
    if landmarks is None:
        return []
    values = landmarks.values() if isinstance(landmarks, Mapping) else landmarks
    if not isinstance(values, (list, tuple, type({}.values()))):
        return None
    points = []
    for point in values:
        if not isinstance(point, (list, tuple)) or len(point) < 2:
            return None
        x, y = _number(point[0]), _number(point[1])
        if x is None or y is None:
            return None
        points.append((x, y))
    return points


def draw_file(image: bytes, detections: Sequence[Any], out: Path, label: str = "") -> int:
    """Write ``image`` with ``detections`` drawn to ``out`` (its suffix picks the format); how many
    detections were skipped as malformed (not a mapping, a box that is not four finite numbers,
    landmarks that are not points).

    The photo is turned as its EXIF orientation says first: the server answers boxes on the
    picture as it is seen, not as its pixels are stored.
    """
    from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

    fmt = image_format(out)
    try:
        with Image.open(io.BytesIO(image)) as opened:
            picture = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ClientError(f"the image could not be decoded here to draw on: {exc}") from None
    draw = ImageDraw.Draw(picture)
    short = min(picture.size)
    width = max(1, round(short / 320))  # lines and text follow the picture: alike on a thumbnail and 12 MP
    font = ImageFont.load_default(size=max(10, round(short / 40)))
    skipped = 0
    for det in detections:
        corners = _corners(det) if isinstance(det, Mapping) else None
        points = _points(det) if isinstance(det, Mapping) else None
        if corners is None or points is None:
            skipped += 1
            continue
        x1, y1, x2, y2 = clip(corners, picture.size, 2 * width)
        draw.rectangle((x1, y1, x2, y2), outline=BOX_COLOR, width=width)
        _dots(draw, points, picture.size, max(1, width))
        _label(draw, _text(det, label), (x1, y1), width, font)
    _save(picture, out, fmt)
    return skipped


def _text(detection: Mapping[str, Any], default: str) -> str:
    """The box's label, cut to a length that fits a picture; without a confidence that cannot be written."""
    try:
        text = label_text(detection, default)
    except (OverflowError, ValueError):  # an integer confidence too large for a float
        text = str(detection.get("label") or default)
    return text[:MAX_LABEL]


def _dots(draw: Any, points: list[tuple[float, float]], size: tuple[int, int], radius: int) -> None:
    w, h = size
    for x, y in points:
        if -radius <= x <= w + radius and -radius <= y <= h + radius:  # one off the picture would not show
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=BOX_COLOR, outline=TEXT_COLOR)


def _label(draw: Any, text: str, corner: tuple[float, float], width: int, font: Any) -> None:
    """``text`` on a tab above the box's top-left corner, inside the box when there is no room above."""
    if not text:
        return
    x1, y1 = corner
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tab_h = bottom - top + 2 * width
    ty = y1 - tab_h if y1 - tab_h >= 0 else y1
    draw.rectangle((x1, ty, x1 + right - left + 2 * width, ty + tab_h), fill=BOX_COLOR)
    draw.text((x1 + width - left, ty + width - top), text, fill=TEXT_COLOR, font=font)


def save_as(picture: bytes, out: Path) -> None:
    """Write a picture the server answered: as it came when ``out`` names its format, else converted."""
    from PIL import Image, UnidentifiedImageError

    fmt = image_format(out)
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
