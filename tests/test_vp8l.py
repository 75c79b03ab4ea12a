"""A lossless WebP's prefix-code tables are counted from its entropy image before libwebp builds them."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image
from tests_helpers import read

from mysite.vision import vp8l
from mysite.vision.decode import decode_image, read_header
from testkit.webp_lossless import (
    alpha_groups_webp,
    far_copies_webp,
    frame_alpha_webp,
    groups_webp,
    hidden_frame_webp,
    literal_transform_webp,
)

ROOT_TABLES = 5 * 256 * 4  # bytes: libwebp fills five 256-entry root tables for every group it builds


def _webp(picture: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, "WEBP", **options)
    return buf.getvalue()


def _photo(side: int) -> Image.Image:
    return Image.open(io.BytesIO(read("group_17_faces.jpg"))).convert("RGB").resize((side, side * 3 // 4))


def _real_files(side: int) -> dict[str, bytes]:
    photo = _photo(side)
    faded = photo.convert("RGBA")
    faded.putalpha(photo.convert("L"))
    files = {f"method {m}": _webp(photo, lossless=True, method=m) for m in (0, 4, 6)}
    files["palette"] = _webp(photo.quantize(12).convert("RGB"), lossless=True)
    files["alpha"] = _webp(faded, lossless=True)
    files["lossy, lossless alpha"] = _webp(faded, quality=80)
    return files


@pytest.mark.parametrize("side", [64, 600])
def test_the_encoders_files_are_followed_to_their_groups(side):
    """What libwebp writes is read to its entropy image: far below the worst its size allows, and decoded."""
    worst = vp8l.worst_bytes(side, side * 3 // 4)
    for name, data in _real_files(side).items():
        tables = vp8l.webp_tables(data)
        assert 0 < tables < worst / 20, (name, tables, worst)
        assert read_header(data).tables == tables
        assert decode_image(data, max_pixels=side * side).image.shape[:2] == (side * 3 // 4, side)


@pytest.mark.slow
@pytest.mark.parametrize("groups", [1, 4096, 1 << 16])
def test_every_group_libwebp_builds_is_counted(groups):
    """One 4x4 tile per group, five one-symbol codes each: a few bytes of file a group, 5 KB of tables."""
    data = groups_webp(1024, 1024, groups)
    assert vp8l.webp_tables(data) >= groups * ROOT_TABLES
    assert read_header(data).tables == vp8l.webp_tables(data)


def test_a_lossless_alpha_is_counted_too():
    lossy = _webp(Image.new("RGB", (512, 512), (90, 120, 200)), quality=80)
    data = alpha_groups_webp(lossy[lossy.index(b"VP8 ") + 8:], 512, 512, 1 << 14)
    header = read_header(data)
    assert header.alpha and header.tables >= (1 << 14) * ROOT_TABLES
    assert decode_image(data, max_pixels=1 << 20, header=header).image.shape == (512, 512, 3)


def _lossy(side: int) -> bytes:
    data = _webp(Image.new("RGB", (side, side), (90, 120, 200)), quality=80)
    return data[data.index(b"VP8 ") + 8:]


@pytest.mark.slow
def test_the_frame_libwebp_decodes_is_the_one_counted():
    """libwebp's demuxer drops an empty first frame and decodes a frame's alpha at its picture's size, not the
    frame's: both hid 65,536 groups (368 MB taken against 20 counted)."""
    hidden, small_frame = hidden_frame_webp(1024, 1024, 1 << 16), frame_alpha_webp(_lossy(1024), 1024, 1024, 1 << 16)
    for data in (hidden, small_frame):
        assert read_header(data).tables >= (1 << 16) * ROOT_TABLES


def test_far_copies_in_the_entropy_image_cost_what_they_copy():
    """A copy of one value from far back copied all it looked back over: 50 such copies from 262,143 values
    back held three times the image at once (and 87,337 of them took 43 s)."""
    import tracemalloc

    data = far_copies_webp(2048, 2048, 50)
    tracemalloc.start()
    try:
        tables = vp8l.webp_tables(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tables < vp8l.worst_bytes(2048, 2048) / 20  # followed to its one group
    assert peak < 2 * 8 * (2048 // 4) ** 2, peak  # the image's values once, and little more


@pytest.mark.slow
def test_a_stream_past_the_steps_is_counted_at_its_worst():
    """A transform image of literal pixels takes four steps a tile to walk past: past ``MAX_STEPS`` the
    walk stops, and the picture is counted at the most its size allows."""
    small, large = literal_transform_webp(256, 256), literal_transform_webp(2048, 2048)
    assert vp8l.webp_tables(small) < vp8l.worst_bytes(256, 256) / 20
    assert 4 * (2048 // 4) ** 2 > vp8l.MAX_STEPS
    assert vp8l.webp_tables(large) == vp8l.worst_bytes(2048, 2048)


@pytest.mark.slow
def test_damaged_streams_are_counted_at_most_at_their_worst():
    """Cut short or with bytes changed, a stream is never counted above the worst, and never raises."""
    data = _real_files(300)["method 4"]
    rng = random.Random(7)
    for _ in range(200):
        broken = bytearray(data[:rng.randrange(30, len(data))])
        for _ in range(rng.randrange(0, 8)):
            broken[rng.randrange(25, len(broken))] = rng.randrange(256)  # past the size
        assert 0 <= vp8l.webp_tables(bytes(broken)) <= vp8l.worst_bytes(300, 225)


def test_chunks_before_the_picture_are_bounded():
    """More chunks than a file has before its picture: the picture is counted at its worst."""
    real = _real_files(64)["method 4"]
    padded = real[:12] + b"XTRA\x00\x00\x00\x00" * vp8l.MAX_CHUNKS + real[12:]
    assert vp8l.webp_tables(padded) == vp8l.worst_bytes(1 << 14, 1 << 14)
    assert vp8l.webp_tables(real[:12] + b"XTRA\x00\x00\x00\x00" * 8 + real[12:]) == vp8l.webp_tables(real)


@pytest.mark.slow
def test_a_request_for_more_tables_than_the_budget_is_refused(make_app):
    """Before, this 1024x1024 file of 295 KB took 364 MB in-process against 16 counted."""
    client = make_app({"MYSITE_CV_PROCESSES": "0"}).test_client()
    for groups, status in ((16, 200), (1 << 16, 413)):
        r = client.post("/detect", data={"image": (io.BytesIO(groups_webp(1024, 1024, groups)), "a.webp")})
        assert r.status_code == status, r.get_json()
    assert "decoding this 1024x1024 WEBP needs about" in r.get_json()["message"]


def test_a_gray_lossless_picture_decodes():
    data = _webp(Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))), lossless=True)
    assert vp8l.webp_tables(data) < vp8l.worst_bytes(64, 48) / 20


@pytest.mark.slow
def test_more_chunks_than_a_webp_has_are_refused_before_libwebp_keeps_a_record_of_each():
    """1.8 million empty chunks after a picture (14 MB) took 86 MB to open, against 6 counted."""
    from mysite.errors import Unprocessable
    from mysite.vision import header_scan

    real = _real_files(64)["method 4"]
    chunk = b"XTRA\x00\x00\x00\x00"
    n = header_scan.MAX_WEBP_CHUNKS
    assert read_header(real + chunk * (n - 1)).format == "WEBP"  # the picture's chunk and n - 1 more
    with pytest.raises(Unprocessable, match="chunks"):
        read_header(real + chunk * n)
    frames = [_photo(64).rotate(angle) for angle in range(200)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert read_header(buf.getvalue()).format == "WEBP"  # an animation of 200 frames


def test_the_tables_are_counted_when_pillow_decodes_what_opencv_would_not(monkeypatch):
    from mysite.errors import TooLarge
    from mysite.vision import decode

    data = groups_webp(256, 256, 4096)
    header = read_header(data)
    monkeypatch.setattr(decode, "_imdecode", lambda *args: None)
    with pytest.raises(TooLarge, match="Pillow"):
        decode_image(data, max_pixels=1 << 20, header=header, max_bytes=header.tables // 2)
