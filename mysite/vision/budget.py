"""What a request will cost, worked out from the image header and the parameters before any work.

Two quantities, both bounded per request (``MYSITE_REQUEST_MEMORY_MB``, ``MYSITE_REQUEST_WORK``):

- **memory**: bytes the request holds at its peak on top of the worker's own: the decoded
  image, a Haar cascade's pyramid buffers, the picture and its encoding for an image answer.
- **work**: what the request makes the worker compute, in cascade windows (a fraction of a
  microsecond each): the windows a cascade evaluates over its whole
  pyramid (the detection time follows it), plus an eighth of the decoded pixels.

The estimates mirror what OpenCV and Pillow allocate (see each function), rounded up; the
memory benchmark (``python -m bench.memory``) checks them against the worker's RSS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mysite.errors import TooLarge
from mysite.vision.decode import LEAN_PILLOW, PILLOW_ONLY, Header, lean_alpha, pillow_bytes_per_pixel, pillow_only_memory

MB = 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """What one request may cost."""

    memory: int  # bytes
    work: int  # cascade windows evaluated, plus decoded pixels / 8
    images: int = 1  # images that share it (a batch): a model that keeps at most so many candidates keeps its share


def mb(n: float) -> str:
    return f"{n / MB:.0f} MB"


# The decoders' own tables and buffers, whatever the picture's size.
DECODER_FIXED = 6 * MB
# Peak bytes per pixel of OpenCV's TIFF reader (its strips, then the converted picture) and of
# libwebp (a lossless picture is decoded to ARGB first), in colour or gray, full size or reduced.
_FLAT_BYTES_PER_PIXEL = {"TIFF": 11, "WEBP": 7}
# TIFFs OpenCV reads through more: 32-bit samples (integer or float) at their width, four bands (CMYK) as RGBA.
_WIDE_TIFF_BYTES_PER_PIXEL = 17
_FOUR_BAND_TIFF_BYTES_PER_PIXEL = 13
# An animated WebP: libwebp's animation decoder holds RGBA canvases (four bands), then OpenCV's BGR copy.
_ANIMATED_WEBP_BYTES_PER_PIXEL = 11


def decode_memory(header: Header, gray: bool, reduce: int) -> int:
    """Peak bytes of ``decode_image(data, gray=gray, reduce=reduce)`` for this header.

    ``python -m bench.decode_memory`` measures each case against this figure. libjpeg decodes at
    1/reduce directly (gray too, then one byte a pixel); a progressive JPEG, or one whose scans
    hold some of its components each, also holds all its
    coefficients, reduced or not. OpenCV's full-size decode holds two copies of the picture at
    its peak (three bytes a pixel each in colour, six at 16 bits; gray at full size is that BGR
    converted, like the book's ``cvtColor``), then the picture is reduced. Transparency goes
    through Pillow (RGBA, its white backdrop, the composite and two conversions), 22-32 bytes a
    pixel at the peak, except large PNGs, which are flattened band by band from OpenCV's BGRA
    (``decode.lean_alpha``); GIFs go through Pillow too (``decode.PILLOW_ONLY``). A lossless WebP's
    prefix-code tables (``Header.tables``, read by ``vp8l``) come on top, whatever its size.
    """
    return DECODER_FIXED + header.tables + _decode_peak(header, gray, reduce)


def _decode_peak(header: Header, gray: bool, reduce: int) -> int:
    full = header.pixels
    out = math.ceil(full / reduce**2) * (1 if gray else 3)
    if lean_alpha(header):  # OpenCV's BGRA (two copies while it decodes), then it, the flattened image and a band
        return (8 if gray else 9) * full + (out if reduce > 1 else 0)
    if header.format in LEAN_PILLOW and not header.alpha:  # HEIC, AVIF: Pillow's decoders, one copy at a time
        return pillow_only_memory(header, gray, reduce)
    if header.alpha or header.format in PILLOW_ONLY:
        return pillow_bytes_per_pixel(header) * full + out
    if header.format == "TIFF" and header.bits > 16:
        return _WIDE_TIFF_BYTES_PER_PIXEL * full + out
    if header.format == "TIFF" and header.samples > 3:
        return _FOUR_BAND_TIFF_BYTES_PER_PIXEL * full + out
    if header.format == "WEBP" and header.samples > 3:
        return _ANIMATED_WEBP_BYTES_PER_PIXEL * full + out
    if header.format in _FLAT_BYTES_PER_PIXEL:
        return _FLAT_BYTES_PER_PIXEL[header.format] * full + out
    depth = 2 if header.bits > 8 else 1
    in_colour = 3 * full * depth + out  # the picture as decoded, and what it is converted or reduced to
    if header.format == "JPEG":
        # Progressive, or scans of some components each: libjpeg keeps every DCT coefficient of the image
        # (2 bytes a sample), whatever the reduction.
        coefficients = math.ceil(2 * header.samples * full) if header.buffered else 0
        if reduce > 1:  # libjpeg decodes at the reduced size
            return coefficients + (out if gray else in_colour)
        return coefficients + max(6 * full, in_colour)
    if gray and reduce > 1:  # decoded gray at full size (two copies), then reduced
        return 2 * full * depth + out
    return max(6 * full * depth, in_colour)


def answer_memory(header: Header, fmt: str, base64: bool) -> int:
    """Peak bytes of drawing on the full-size picture and encoding it (``output=image|base64``).

    The picture decoded again in colour, the copy boxes are drawn on, the encoded answer
    (PNG of a photo: up to its raw size; JPEG at quality 90: well under one byte a pixel
    on photos, a bit over on noise) and its base64 text.
    """
    full = header.width * header.height
    encoded = (3 if fmt == "png" else 2) * full
    photo = decode_memory(header, gray=False, reduce=1)
    return max(photo, 3 * full + 3 * full + encoded + (encoded * 4 // 3 if base64 else 0))


def check_memory(need: int, budget: Budget, what: str, fix: str) -> None:
    """413 when ``need`` bytes are over the request's memory budget; ``what`` and ``fix`` say why and how."""
    if need > budget.memory:
        raise TooLarge(f"{what} needs about {mb(need)} of memory; {mb(budget.memory)} are left for it of the "
                       f"request's memory budget (MYSITE_REQUEST_MEMORY_MB): {fix}")


def check_work(need: int, budget: Budget, what: str, fix: str, status: type = TooLarge) -> None:
    """413 (or ``status``) when ``need`` units of work are over the request's work budget."""
    if need > budget.work:
        raise status(f"{what} means about {need / 1e6:.0f} million units of work (cascade windows); the limit "
                     f"for one request is {budget.work / 1e6:.0f} million (MYSITE_REQUEST_WORK): {fix}")


# --- Haar and LBP cascades -------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """One level of ``detectMultiScale``'s pyramid."""

    factor: float
    window: tuple[int, int]  # the object size this level finds, in pixels of the image scanned
    size: tuple[int, int]  # the level's image size
    step: int  # OpenCV moves the window 2 pixels a step below factor 2, then 1


def pyramid(width: int, height: int, window: tuple[int, int], scale_factor: float,
            min_size: tuple[int, int], max_size: tuple[int, int] | None = None) -> list[Scale]:
    """The levels ``CascadeClassifier.detectMultiScale`` scans, as its loop picks them (cascadedetect.cpp)."""
    max_w, max_h = max_size or (width, height)
    if max_w == 0 or max_h == 0:
        max_w, max_h = width, height
    out = []
    factor = 1.0
    while True:
        win = (round(window[0] * factor), round(window[1] * factor))
        if win[0] > max_w or win[1] > max_h or win[0] > width or win[1] > height:
            break
        if win[0] >= min_size[0] and win[1] >= min_size[1]:
            size = (round(width / factor), round(height / factor))
            out.append(Scale(factor, win, size, 1 if factor >= 2 else 2))
        factor *= scale_factor
    return out


def pyramid_buffer(levels: list[Scale]) -> int:
    """Pixels of the buffer OpenCV packs every level's integral images into, row by row."""
    width, rows = pyramid_shape(levels)
    return width * rows


def pyramid_shape(levels: list[Scale]) -> tuple[int, int]:
    """Width and rows of the buffer OpenCV packs every level's integral images into.

    As ``FeatureEvaluator::setImage``: rows as wide as the first level (+1, aligned to 32);
    a level goes on the current row while it fits, else starts a new one. A classifier keeps
    the widest and the tallest it has built, each on its own, for good.
    """
    if not levels:
        return 0, 0
    width = math.ceil((levels[0].size[0] + 1 + 31) / 32) * 32
    x = y = row = 0
    for lv in levels:
        w, h = lv.size[0] + 1, lv.size[1] + 1
        if x + w > width:
            x, y, row = 0, y + row, h
        row = max(row, h)
        x += w
    return width, y + row


def windows(levels: list[Scale], window: tuple[int, int]) -> int:
    """Windows evaluated over the pyramid: at each level, the cascade's own window at every step."""
    return sum(max(0, (lv.size[0] - window[0]) // lv.step + 1) * max(0, (lv.size[1] - window[1]) // lv.step + 1)
               for lv in levels)


def bands(levels: list[Scale], max_pixels: int) -> list[list[Scale]]:
    """The levels split into runs whose packed buffer stays under ``max_pixels`` each (one level may not).

    A band is scanned with its first and last level's window as ``minSize`` and ``maxSize``,
    so a split is made only where both sides of the window grow: otherwise a level could
    fall in two bands (a cascade window under 20 px, steps under one pixel).
    """
    out: list[list[Scale]] = []
    for lv in levels:
        prev = out[-1][-1] if out else None
        separable = prev is not None and lv.window[0] > prev.window[0] and lv.window[1] > prev.window[1]
        if out and (not separable or pyramid_buffer(out[-1] + [lv]) <= max_pixels):
            out[-1].append(lv)
        else:
            out.append([lv])
    return out

