"""A HEIC or AVIF is costed at the picture its coded data or canvas may decode to, not only the size it states.

Pillow reports the ``ispe`` property's size, while the AV1 decoder allocates the picture the
coded data declares, and libavif and libheif draw a grid's tiles (libheif an overlay's images)
on the canvas the grid declares: nothing holds either to the other before it is allocated.
``mysite/vision/heif_size.py`` reads the sequence headers and canvases; these tests use real
files from Pillow's and pillow-heif's encoders and files built by hand.
"""

from __future__ import annotations

import io
import struct
import tracemalloc

import pytest
from PIL import Image

from mysite.errors import Unprocessable
from mysite.vision import budget, heif_size
from mysite.vision.decode import read_header
from testkit.hostile_inputs import av1_sequence_header, avif_saying, avif_track_flood, heif_canvas, heif_cropped, iso_box, iso_full_box


def avif(picture: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, "AVIF", quality=50, speed=10, **options)
    return buf.getvalue()


def lying(width: int, height: int) -> bytes:
    """A flat ``width`` x ``height`` AVIF whose ``ispe`` says 64x48."""
    return avif_saying(width, height, 64, 48)


def built(pictures: list[bytes], locations: list[tuple[int, int, int]] | None = None, boxes: bytes = b"") -> bytes:
    """An ISO BMFF file with one ``av01`` item per picture, stored in ``mdat`` (or at ``locations``:
    (item, offset, length))."""
    ftyp = iso_box(b"ftyp", b"avif" + b"\0\0\0\0" + b"mif1avif")
    infe = b"".join(iso_full_box(b"infe", struct.pack(">HH", i + 1, 0) + b"av01\0", version=2) for i in range(len(pictures)))
    iinf = iso_full_box(b"iinf", struct.pack(">H", len(pictures)) + infe)

    def meta(mdat_at: int) -> bytes:
        places = locations or []
        if not places:
            at = mdat_at + 8
            for i, p in enumerate(pictures):
                places.append((i + 1, at, len(p)))
                at += len(p)
        entries = b"".join(struct.pack(">HHHII", item, 0, 1, offset, length) for item, offset, length in places)
        iloc = iso_full_box(b"iloc", bytes([0x44, 0x00]) + struct.pack(">H", len(places)) + entries)
        return iso_full_box(b"meta", iinf + iloc + boxes)

    head = ftyp + meta(0)
    head = ftyp + meta(len(head))
    return head + iso_box(b"mdat", b"".join(pictures))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_a_still_picture_codes_exactly_its_size(mode: str) -> None:
    data = avif(Image.new(mode, (333, 77)))
    assert heif_size.coded_pixels(data) == 333 * 77
    assert read_header(data).pixels == 333 * 77


def test_an_animation_is_held_to_what_its_size_fields_count() -> None:
    frames = [Image.new("RGB", (200, 100), (i * 40, 0, 0)) for i in range(3)]
    data = avif(frames[0], save_all=True, append_images=frames[1:])
    assert 200 * 100 <= heif_size.coded_pixels(data) <= 4 * 256 * 128


def test_a_picture_larger_than_the_header_says_is_costed_at_its_coded_size() -> None:
    data = lying(1024, 768)
    header = read_header(data)
    assert (header.width, header.height) == (64, 48)  # what Pillow says
    assert header.pixels == 1024 * 768
    assert budget.decode_memory(header, gray=False, reduce=1) >= 13 * 1024 * 768


def test_the_site_refuses_it_before_decoding(make_app) -> None:
    data = lying(1024, 768)
    client = make_app({"MYSITE_MAX_PIXELS": "500000"}).test_client()
    r = client.post("/detect", data=data, content_type="application/octet-stream")
    assert r.status_code == 413 and "image decodes through 0.8 megapixels" in r.get_json()["message"]
    client = make_app({"MYSITE_REQUEST_MEMORY_MB": "4"}).test_client()
    r = client.post("/detect", data=data, content_type="application/octet-stream")
    assert r.status_code == 413 and "MYSITE_REQUEST_MEMORY_MB" in r.get_json()["message"], r.get_json()
    # A picture whose header is true is read as before.
    r = make_app().test_client().post("/canny", data=avif(Image.new("RGB", (256, 192))))
    assert r.status_code == 200


CANVASES = {"avif-grid": {"fmt": "AVIF"}, "heic-grid": {"fmt": "HEIF"}, "heic-overlay": {"fmt": "HEIF", "overlay": True}}


@pytest.mark.parametrize("kind", CANVASES)
def test_a_derived_image_is_costed_at_its_canvas(kind: str) -> None:
    data = heif_canvas(3, 2, 64, **CANVASES[kind])
    with Image.open(io.BytesIO(data)) as im:  # drawn by Pillow (libavif, libheif) as declared
        assert im.size == (192, 128) and im.getpixel((50, 30))[:2] == (120, 130)
    assert heif_size.coded_pixels(data) == read_header(data).pixels == 192 * 128
    # One whose header says 64x64 is drawn on the whole canvas all the same.
    header = read_header(heif_canvas(8, 8, 1024, says=(64, 64), **CANVASES[kind]))
    assert (header.width, header.height, header.pixels) == (64, 64, 8192 * 8192)


@pytest.mark.parametrize("kind", CANVASES)
def test_the_site_refuses_a_canvas_larger_than_it_says(make_app, kind: str) -> None:
    data = heif_canvas(8, 8, 1024, says=(64, 64), **CANVASES[kind])
    r = make_app().test_client().post("/detect", data=data, content_type="application/octet-stream")
    assert r.status_code == 413 and "image decodes through 67.1 megapixels" in r.get_json()["message"], r.get_json()
    small = heif_canvas(4, 4, 512, says=(64, 64), **CANVASES[kind])  # 4.2 MP: within the pixel limit, not 20 MB
    r = make_app({"MYSITE_REQUEST_MEMORY_MB": "20"}).test_client().post("/detect", data=small,
                                                                         content_type="application/octet-stream")
    message = r.get_json()["message"]
    assert r.status_code == 413 and "MYSITE_REQUEST_MEMORY_MB" in message, message
    assert "64x64 " in message and " (through 4.2 megapixels at once) needs" in message
    r = make_app().test_client().post("/canny", data=heif_canvas(2, 2, 64, **CANVASES[kind]))
    assert r.status_code == 200


@pytest.mark.parametrize("descriptor", [b"\1\0\0\0\0\x40\0\x40", b"\0\1\0\0\0\x40\0\x40", b"\0\0\0\0\0\x40"])
def test_a_grid_libavif_would_not_read_is_a_422(descriptor: bytes) -> None:
    data = heif_canvas(1, 1, 64)
    at = data.index(b"mdat") + 4
    data = data[:at] + descriptor + data[at + 12:]  # a version 1, a short 32-bit one, a short 16-bit one
    with pytest.raises(Unprocessable):
        heif_size.coded_pixels(data)


def test_every_sequence_header_of_every_item_counts() -> None:
    small, large = av1_sequence_header(64, 48), av1_sequence_header(9000, 7000)
    assert heif_size.coded_pixels(built([small])) == 64 * 48
    assert heif_size.coded_pixels(built([small, large])) == 9000 * 7000
    assert heif_size.coded_pixels(built([small + large])) == 9000 * 7000  # a second header in one item


@pytest.mark.parametrize("name", ["boxes", "items", "obus", "overlap", "overrun", "past the end"])
def test_a_structure_it_cannot_follow_cheaply_is_a_422(name: str) -> None:
    seq = av1_sequence_header(64, 48)
    data = {
        "boxes": lambda: built([seq], boxes=iso_box(b"free", b"") * (heif_size.MAX_BOXES + 1)),
        "items": lambda: built([seq], locations=[(1, 0, 0)] * (heif_size.MAX_ITEMS + 1)),
        "obus": lambda: built([b"\x12\x00" * (heif_size.MAX_OBUS + 1) + seq]),  # empty temporal delimiters
        "overlap": lambda: built([seq, seq], locations=[(1, 0, 0), (2, 0, 0)]),  # both items: the whole file
        "overrun": lambda: (lambda d: d[:24] + struct.pack(">I", len(d)) + d[28:])(built([seq])),  # 'meta' too long
        "past the end": lambda: built([seq], locations=[(1, 10**6, 10)]),
    }[name]()
    with pytest.raises(Unprocessable):
        heif_size.coded_pixels(data)


def test_a_heic_is_costed_at_its_whole_picture() -> None:
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (64, 48))).save(buf, quality=50)
    # The encoder codes whole 64-pixel blocks and crops what is shown ('clap'): 64x64 are decoded.
    header = read_header(buf.getvalue())
    assert (header.width, header.height, heif_size.coded_pixels(buf.getvalue())) == (64, 48, 64 * 64)


def test_a_crop_is_costed_at_the_picture_it_is_cut_from(make_app) -> None:
    data = heif_cropped(1024, 64)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (64, 64)  # what Pillow says, and shows, once libheif has decoded all 1024x1024
    assert read_header(data).pixels == 1024 * 1024
    r = make_app({"MYSITE_MAX_PIXELS": "500000"}).test_client().post(
        "/detect", data=data, content_type="application/octet-stream")
    assert r.status_code == 413 and "image decodes through 1.0 megapixels" in r.get_json()["message"], r.get_json()
    assert make_app().test_client().post("/canny", data=data).status_code == 200


def test_a_batch_counts_each_avif_at_its_coded_size(make_app) -> None:
    data = lying(1024, 768)
    client = make_app({"MYSITE_MAX_PIXELS": "1000000"}).test_client()
    one = client.post("/detect", data={"image": (io.BytesIO(data), "a.avif")})
    assert one.status_code == 200, one.get_json()  # 0.8 MP: within the limit alone
    both = client.post("/detect", data={"image": [(io.BytesIO(data), "a.avif"), (io.BytesIO(data), "b.avif")]})
    assert both.status_code == 413 and "1.6 megapixels together" in both.get_json()["message"], both.get_json()


def test_tracks_pointing_at_one_sample_are_walked_without_copying_it() -> None:
    data = avif_track_flood(450, 10_000_000)  # every track's first sample: the same 10 MB
    tracemalloc.start()
    try:
        assert heif_size.coded_pixels(data) == 64 * 48
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # views of the file, not 450 copies of its sample


def test_a_heic_picture_larger_than_it_says_is_refused_by_libheif_unallocated(make_app) -> None:
    """libheif calls this a "Memory allocation error" though it allocates nothing: a damaged file (422), not a 413."""
    import pillow_heif

    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (512, 512), (120, 130, 140))).save(buf, quality=50)
    data = bytearray(buf.getvalue())
    at = data.index(b"ispe") + 8
    data[at: at + 8] = struct.pack(">II", 64, 64)
    r = make_app().test_client().post("/detect", data=bytes(data), content_type="application/octet-stream")
    body = r.get_json()
    assert r.status_code == 422 and "Security limit exceeded" in body["message"], body
