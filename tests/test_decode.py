"""Bytes to image: formats, orientation, bit depths, and refusals before pixels are allocated."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps, TiffImagePlugin

from mysite.errors import TooLarge, Unprocessable, UnsupportedMedia
from mysite.vision import decode as decode_mod
from mysite.vision import vp8l
from mysite.vision.decode import decode_image, read_header, what_bytes_are
from testkit import hostile_inputs as hi

LIMIT = 40_000_000


def pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(astronaut_png) -> Image.Image:
    """The astronaut photo as a Pillow RGB image, 512x512."""
    return Image.open(io.BytesIO(astronaut_png)).convert("RGB")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_accepted_format_decodes_to_bgr(photo, fmt):
    data = pil_bytes(photo, fmt)
    out = decode_image(data, max_pixels=LIMIT)
    assert out.image.shape == (512, 512, 3) and out.image.dtype == np.uint8
    assert out.header.format == fmt and out.scale == 1.0
    # The colours survive: the mean of the decoded image is close to the source's (GIF is palettised).
    expected = np.asarray(photo)[:, :, ::-1].mean(axis=(0, 1))
    assert np.allclose(out.image.mean(axis=(0, 1)), expected, atol=12)


def test_gray_request_gives_one_channel(photo):
    out = decode_image(pil_bytes(photo, "JPEG"), max_pixels=LIMIT, gray=True)
    assert out.image.shape == (512, 512)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "1"])
def test_gray_alpha_palette_16bit_and_bilevel_inputs(photo, mode):
    im = photo.convert("L").convert(mode) if mode != "RGBA" else photo.convert("RGBA")
    if mode == "I;16":
        arr = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257)
        ok, buf = cv2.imencode(".png", arr)
        data = buf.tobytes()
    else:
        data = pil_bytes(im, "PNG")
    out = decode_image(data, max_pixels=LIMIT)
    assert out.image.shape == (512, 512, 3) and out.image.dtype == np.uint8
    assert out.image.max() > 0


def test_sixteen_bit_is_scaled_not_clipped(photo):
    gray8 = np.asarray(photo.convert("L"))
    ok, buf = cv2.imencode(".png", gray8.astype(np.uint16) * 257)
    out = decode_image(buf.tobytes(), max_pixels=LIMIT, gray=True)
    assert np.abs(out.image.astype(int) - gray8.astype(int)).max() <= 1


@pytest.mark.parametrize("orientation,shape", [(1, (20, 40)), (3, (20, 40)), (6, (40, 20)), (8, (40, 20))])
def test_exif_orientation_is_applied(orientation, shape):
    # A 40x20 image, left half white: after a 90 degree turn the white half is on top or bottom.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = pil_bytes(Image.fromarray(arr), "JPEG", exif=exif, quality=95)
    header = read_header(data)
    out = decode_image(data, max_pixels=LIMIT, gray=True)
    assert out.image.shape == shape
    assert (header.height, header.width) == shape
    if orientation == 6:  # rotated 90 clockwise: the left (white) half is now the top
        assert out.image[:10].mean() > 200 and out.image[-10:].mean() < 50
    if orientation == 3:  # rotated 180: white half on the right
        assert out.image[:, -10:].mean() > 200


@pytest.mark.parametrize("fmt", ["PNG", "AVIF", "HEIF"])  # decoded by Pillow: a transparent PNG, AVIF, HEIC
def test_every_exif_orientation_is_applied_as_pillow_applies_it(fmt):
    arr = np.zeros((20, 40, 4 if fmt == "PNG" else 3), np.uint8)
    arr[:8, :12] = 255  # one corner: every turn and flip moves it somewhere else
    arr[..., 3:] = 255
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = pil_bytes(Image.fromarray(arr), fmt, exif=exif.tobytes())
        expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        out = decode_image(data, max_pixels=LIMIT)
        assert np.array_equal(out.image, cv2.cvtColor(np.asarray(expected), cv2.COLOR_RGB2BGR)), (fmt, orientation)


_fraction = TiffImagePlugin.IFDRational.__init__


def test_an_exif_is_read_no_further_than_its_orientation(monkeypatch):
    made = []
    monkeypatch.setattr(TiffImagePlugin.IFDRational, "__init__",
                        lambda self, *args: made.append(1) or _fraction(self, *args))
    out = decode_image(hi.png_exif_flood(1_100_000, orientation=5), max_pixels=LIMIT)  # transposed
    assert out.image.shape == (16, 16, 3) and len(made) < 10


def test_an_exif_of_more_tags_than_a_jpeg_can_hold_is_refused_before_pillow_reads_it(photo):
    tags = hi.tiff_tag_flood(65_535)
    with pytest.raises(Unprocessable, match="EXIF block has 65535 tags in its first directory"):
        read_header(pil_bytes(photo, "WEBP", exif=b"Exif\x00\x00" + tags))


def test_a_photo_whose_exif_count_is_damaged_is_still_read(photo):
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0131] = 6, "Phone", "x" * 40_000
    raw = exif.tobytes()  # big-endian, the first directory at 8: its count is the two bytes after
    damaged = raw[:14] + b"\xff\xff" + raw[16:]  # as many entries as 40 KB holds: Pillow reads them and warns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        header = read_header(pil_bytes(photo.resize((40, 20)), "JPEG", exif=damaged))
    assert (header.width, header.height) == (20, 40)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (30, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue(), max_pixels=LIMIT)
    b, g, r = out.image[15, 15]
    assert r > 200 and b < 50


@pytest.mark.slow
def test_pixel_bomb_is_refused_before_decoding(monkeypatch):
    # 20000 x 20000 = 400 MP declared by a 48 KB PNG.
    data = pil_bytes(Image.new("1", (20000, 20000)), "PNG")
    assert len(data) < 100_000

    def must_not_decode(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(decode_mod.cv2, "imdecode", must_not_decode)
    with pytest.raises(TooLarge, match="megapixels|too many pixels"):
        decode_image(data, max_pixels=LIMIT)


def test_limit_counts_pixels_not_bytes(photo):
    data = pil_bytes(photo, "PNG")
    with pytest.raises(TooLarge, match=r"512x512 = 0.3 megapixels; the limit is 0.1"):
        decode_image(data, max_pixels=100_000)


@pytest.mark.parametrize("data,words", [
    (b"", "an empty body"),
    (b"hello, this is text", "19 bytes of text"),
    (b"%PDF-1.7\n...", "a PDF document"),
    (b"<!DOCTYPE html><html></html>", "an HTML page"),
    (b"PK\x03\x04" + b"\x00" * 40, "a ZIP archive"),
    (bytes(range(256)) * 2, "binary data"),
])
def test_non_images_are_415_naming_what_was_received(data, words):
    with pytest.raises(UnsupportedMedia) as info:
        decode_image(data, max_pixels=LIMIT)
    assert words in info.value.message


def test_broken_images_are_422(photo):
    jpeg = pil_bytes(photo, "JPEG")
    for broken in (jpeg[:600], b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a" + b"\xff" * 3):
        with pytest.raises(Unprocessable):
            decode_image(broken, max_pixels=LIMIT)


def test_reduced_decode_reports_its_scale(photo):
    out = decode_image(pil_bytes(photo, "JPEG"), max_pixels=LIMIT, gray=True, reduce=4)
    assert out.image.shape == (128, 128) and out.scale == 0.25


def test_what_bytes_are_mentions_declared_type():
    assert what_bytes_are(b"abc", "text/plain") == "3 bytes of text, sent as text/plain"


def test_png_over_the_limit_is_refused_before_pillow_decodes_it(monkeypatch):
    # Under Pillow's own bomb limit, over ours: nothing may load its pixels.
    data = pil_bytes(Image.new("L", (5000, 3000)), "PNG")
    from PIL import PngImagePlugin

    def must_not_load(self, *a, **k):
        raise AssertionError("Pillow decoded the pixels")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", must_not_load)
    with pytest.raises(TooLarge, match="5000x3000"):
        decode_image(data, max_pixels=10_000_000)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF"])
def test_transparency_becomes_white(fmt):
    # A canvas drawing: black ink on a transparent background whose colour under the alpha is black.
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 18:22] = (0, 0, 0, 255)
    im = Image.fromarray(rgba, "RGBA")
    data = pil_bytes(im, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    for gray in (False, True):
        out = decode_image(data, max_pixels=LIMIT, gray=gray)
        pixels = out.image if gray else out.image.min(axis=2)
        assert pixels[2, 2] > 250 and pixels[20, 20] < 5, (fmt, gray)


@pytest.mark.parametrize("mode, options", [("RGB", {"lossless": True}), ("RGB", {"quality": 50}), ("RGBA", {})])
def test_a_webp_canvas_is_read_from_its_first_chunk(mode: str, options: dict) -> None:
    buf = io.BytesIO()
    Image.new(mode, (1234, 567)).save(buf, "WEBP", **options)
    assert vp8l.canvas(buf.getvalue()) == (1234, 567)
    assert vp8l.canvas(b"RIFF\0\0\0\0WEBPVP8X" + bytes(14)) == (1, 1) and vp8l.canvas(b"\xff\xd8") is None


def test_a_large_webp_that_pillow_cannot_open_is_too_large_not_damaged(monkeypatch) -> None:
    """Pillow allocates two whole canvases to open a WebP; past a CV process's memory limit that fails
    with an OSError of no particular meaning ("could not create decoder object")."""
    big, small = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (8000, 5000)).save(big, "WEBP", lossless=True)
    Image.new("RGB", (800, 500)).save(small, "WEBP", lossless=True)

    def refuse(*args, **kwargs):
        raise OSError("could not create decoder object")

    monkeypatch.setattr(decode_mod.Image, "open", refuse)
    with pytest.raises(TooLarge, match="8000x5000 WebP needs more memory"):
        decode_mod.read_header(big.getvalue())
    with pytest.raises(Unprocessable):
        decode_mod.read_header(small.getvalue())
