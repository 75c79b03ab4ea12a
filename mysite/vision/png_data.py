"""Whether a PNG's image data inflates to its rows and no further, checked before libpng decodes it.

libpng inflates every byte of image data (``IDAT``) it is given, also past the last row: it
warns "Too much image data" and goes on. Deflate turns a byte into up to 1,032, so a PNG of
64x64 pixels can carry gigabytes of zeros after its rows, and OpenCV's decoder inflates all of
them: seconds of CPU for each megabyte sent. Here the data is inflated once, in small pieces
that are thrown away, up to what its rows take and a little more: past that, a 422. Pillow's
decoder stops at the last row, so only the files OpenCV decodes are checked.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from mysite.errors import Reason, Unprocessable
from mysite.vision import header_scan

_PIECE = 1 << 18  # bytes inflated at a time: the check holds no more than this
_FEED = 1 << 16  # bytes of data given to zlib at a time
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, gray+alpha, RGBA
# Adam7: each pass's first row and column, and its steps between them.
_PASSES = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))


def check(data: bytes) -> None:
    """422 when the image data inflates to more than its rows hold (an eighth more is let pass)."""
    rows = _row_bytes(data)
    if rows is None:
        return
    limit = rows + rows // 8 + 4096
    inflater = zlib.decompressobj()
    made = 0
    try:
        for fed in _image_data(data):
            piece: bytes | memoryview = fed
            while piece and not inflater.eof:
                made += len(inflater.decompress(piece, _PIECE))
                if made > limit:
                    raise Unprocessable(f"the PNG's image data inflates to more than the {rows} bytes of its rows; "
                                        "it is not read", reason=Reason.BAD_IMAGE)
                piece = inflater.unconsumed_tail
            if inflater.eof:
                return
    except zlib.error:
        return  # damaged data: the decoders say so


def _image_data(data: bytes) -> Iterator[memoryview]:
    """The payloads of the ``IDAT`` chunks in order, cut in pieces (what zlib leaves unread is copied)."""
    for payload in _chunks(data):
        for at in range(0, len(payload), _FEED):
            yield payload[at: at + _FEED]


def _row_bytes(data: bytes) -> int | None:
    """The bytes the rows of the PNG's image take inflated (a filter byte each), or None without a usable header."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    fields: tuple[int, ...] = struct.unpack_from(">IIBBBBB", data, 16)
    width, height, depth, colour, _, _, interlaced = fields
    bits = depth * _CHANNELS.get(colour, 4)
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for top, left, down, across in _PASSES:
        w, h = -(-(width - left) // across), -(-(height - top) // down)
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def _chunks(data: bytes) -> Iterator[memoryview]:
    """The payloads of the ``IDAT`` chunks, in order (views of ``data``)."""
    view = memoryview(data)
    for kind, pos, length in header_scan.png_chunks(data):
        if kind == b"IDAT":
            yield view[pos + 8: min(pos + 8 + length, len(data))]
