"""A PNG whose image data inflates past its rows is refused before libpng inflates all of it.

libpng warns "Too much image data" and goes on inflating: a 66 KB PNG of 64x64 pixels followed by
64 MB of deflated zeros cost OpenCV's decoder 0.18 s, a 9 MB one 20 s. ``mysite/vision/png_data.py``
inflates the data once, in pieces, up to what the rows take; these tests hold its count of the
rows to the real thing for every colour type, depth and interlacing, and its refusal to the site.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from mysite.errors import Unprocessable
from mysite.vision import decode, png_data
from testkit.hostile_inputs import png_chunk as chunk
from testkit.hostile_inputs import png_inflate_surplus


def interlaced(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``rgb`` in Adam7's seven passes, each row unfiltered (written by hand: Pillow cannot).
    The passes are the check's own table: both decoders reading the file back pixel for pixel vouch for it."""
    height, width = rgb.shape[:2]
    rows = b"".join(b"\0" + row.tobytes() for top, left, down, across in png_data._PASSES
                    for row in rgb[top::down, left::across] if row.size)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def image_data(data: bytes) -> bytes:
    return b"".join(bytes(piece) for piece in png_data._chunks(data))


def pillow_png(mode: str, size: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(7)
    picture = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).convert(mode)
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P", "I;16"])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (333, 77)])
def test_the_rows_are_counted_exactly(mode: str, size: tuple[int, int]) -> None:
    data = pillow_png(mode, size)
    assert len(zlib.decompress(image_data(data))) == png_data._row_bytes(data)
    png_data.check(data)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (9, 9), (333, 77)])
def test_interlaced_rows_are_counted_exactly(size: tuple[int, int]) -> None:
    rgb = np.random.default_rng(3).integers(0, 255, (size[1], size[0], 3), np.uint8)
    data = interlaced(rgb)
    assert len(zlib.decompress(image_data(data))) == png_data._row_bytes(data)
    assert (cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1] == rgb).all()
    assert (np.asarray(Image.open(io.BytesIO(data))) == rgb).all()
    png_data.check(data)


def test_sixteen_bit_colour_from_opencv_is_counted_exactly() -> None:
    ok, buf = cv2.imencode(".png", np.full((40, 30, 3), 40000, np.uint16))
    data = buf.tobytes()
    assert ok and len(zlib.decompress(image_data(data))) == png_data._row_bytes(data) == 40 * (1 + 30 * 6)


def test_a_gigabyte_after_the_rows_is_refused_holding_little() -> None:
    data = png_inflate_surplus(1024)
    tracemalloc.start()
    try:
        with pytest.raises(Unprocessable, match="inflates to more than the 4160 bytes of its rows"):
            png_data.check(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak  # pieces of 256 KB, not the gigabyte


def test_a_little_more_than_the_rows_is_let_pass() -> None:
    rows = 64 * (1 + 64)
    header = png_inflate_surplus(0)[:33]  # the signature and IHDR of a 64x64 gray picture
    more = header + chunk(b"IDAT", zlib.compress(bytes(rows + rows // 8))) + chunk(b"IEND", b"")
    png_data.check(more)  # an eighth more: libpng warns and decodes it
    twice = header + chunk(b"IDAT", zlib.compress(bytes(2 * rows + 8192))) + chunk(b"IEND", b"")
    with pytest.raises(Unprocessable):
        png_data.check(twice)


@pytest.mark.parametrize("colour, size", [(0, (64, 64)), (6, (2000, 2000))], ids=["gray", "large-rgba"])
def test_the_site_refuses_it_before_libpng_runs(make_app, monkeypatch, colour, size) -> None:
    """The large transparent PNG is decoded the lean way, by OpenCV too (``decode.lean_alpha``)."""
    def libpng(*args, **kwargs):
        raise AssertionError("OpenCV decoded the PNG")

    data = png_inflate_surplus(64, *size, colour=colour)
    monkeypatch.setattr(decode.cv2, "imdecode", libpng)
    r = make_app().test_client().post("/detect", data=data, content_type="image/png")
    assert r.status_code == 422 and "inflates to more than" in r.get_json()["message"], r.get_json()
    monkeypatch.undo()
    assert make_app().test_client().post("/detect", data=png_inflate_surplus(0, *size, colour=colour),
                                         content_type="image/png").status_code == 200
