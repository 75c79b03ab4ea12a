"""The per-request budget: refused from the header before any pixel is decoded, or planned cheaper."""

from __future__ import annotations

import dataclasses
import io

import cv2
import numpy as np
import pytest
from tests_helpers import BOOK_GROUP_BOXES, boxes_of

from mysite import pipeline
from mysite.settings import SettingsError
from mysite.vision import budget, cascade
from mysite.web import api
from testkit.hostile_inputs import component_scans_jpeg, jpeg_header, png

HEADER_40MP = jpeg_header(8000, 5000)  # 632 bytes declaring 8000x5000


@pytest.fixture()
def decodes(monkeypatch):
    """Every decode the endpoints make: (reduce, gray) per call."""
    seen: list[tuple[int, bool]] = []
    real = pipeline.decode_image

    def spy(data, **kw):
        seen.append((kw.get("reduce", 1), kw.get("gray", False)))
        return real(data, **kw)

    monkeypatch.setattr(pipeline, "decode_image", spy)
    return seen


@pytest.fixture(scope="module")
def rgba_bomb() -> bytes:
    return png(8000, 5000, 6)  # a real RGBA PNG of 40 MP, about 156 KB


@pytest.mark.parametrize("path", ["/detect", "/catfacedetection"])
def test_costliest_cascade_scan_of_40mp_is_422_naming_parameters_before_decoding(client, decodes, path):
    r = client.post(f"{path}?min_face=0&scale_factor=1.05&min_neighbors=0", data=HEADER_40MP, content_type="image/jpeg")
    assert r.status_code == 422
    message = r.get_json()["message"]
    assert "min_face=0" in message and "scale_factor=1.05" in message and "MYSITE_REQUEST" in message
    assert "min_face=0.0" in message  # the smallest min_face that would fit is suggested
    assert decodes == []


def test_the_books_min_size_on_40mp_is_refused_with_the_fix(client, decodes):
    r = client.post("/detect?min_size=25", data=HEADER_40MP, content_type="image/jpeg")
    assert r.status_code == 422 and "min_size=25" in r.get_json()["message"]
    assert decodes == []


def test_suggested_min_face_is_accepted(client):
    r = client.post("/detect?min_face=0&scale_factor=1.05&min_neighbors=0", data=HEADER_40MP, content_type="image/jpeg")
    suggested = r.get_json()["message"].split("(min_face=")[1].split(" ")[0]
    ok = client.post(f"/detect?min_face={suggested}&scale_factor=1.05&min_neighbors=0", data=HEADER_40MP,
                     content_type="image/jpeg")
    assert ok.status_code == 200, ok.get_json()


def test_digits_decodes_a_40mp_header_at_an_eighth(client, decodes):
    """A header declaring 8000x5000 (333 bytes in the issue) cost /digits seconds and 710 MB: now 1000x625 are decoded."""
    r = client.post("/digits", data=HEADER_40MP, content_type="image/jpeg")
    assert r.status_code in (200, 422)
    assert decodes == [(8, True)]


def test_dnn_detector_decodes_reduced_and_answers_in_original_pixels(client, decodes):
    big = cv2.imencode(".jpg", cv2.resize(cv2.imread("tests/data/astronaut.png"), (4096, 4096)))[1].tobytes()
    r = client.post("/detect?detector=dnn", data=big, content_type="image/jpeg")
    small = client.post("/detect?detector=dnn", data=open("tests/data/astronaut.png", "rb").read(),
                        content_type="image/png")
    assert decodes[0] == (8, False)  # 512 px for a 128/192 px net
    (face,) = r.get_json()["result"]
    (ref,) = small.get_json()["result"]
    assert all(abs(a / 8 - b) <= 3 for a, b in zip(face["box"], ref["box"]))


@pytest.mark.parametrize("path", ["/detect", "/digits", "/canny", "/detect?detector=dnn"])
def test_rgba_png_bomb_is_413_before_decoding(client, decodes, rgba_bomb, path):
    r = client.post(path, data=rgba_bomb, content_type="image/png")
    assert r.status_code == 413 and "transparency" in r.get_json()["message"]
    assert decodes == []


@pytest.mark.parametrize("query", ["output=base64&format=png", "output=image"])
def test_image_answer_of_40mp_is_413_naming_output(client, decodes, query):
    r = client.post(f"/detect?{query}", data=HEADER_40MP, content_type="image/jpeg")
    assert r.status_code == 413 and "output=json" in r.get_json()["message"]
    assert decodes == []


@pytest.mark.slow
def test_a_pyramid_scanned_in_bands_gives_the_books_17_boxes(make_app, group_jpg, monkeypatch):
    parts: list[int] = []
    real = budget.bands
    monkeypatch.setattr(budget, "bands", lambda levels, n: parts.append(len(r := real(levels, n))) or r)
    client = make_app({"MYSITE_REQUEST_MEMORY_MB": 10}).test_client()
    for neighbours in ("5", "1", "0"):
        banded = client.post(f"/detect?min_neighbors={neighbours}", data=group_jpg, content_type="image/jpeg")
        assert banded.status_code == 200
        if neighbours == "5":
            assert sorted(boxes_of(banded.get_json())) == BOOK_GROUP_BOXES
    assert parts and min(parts) > 1


@pytest.mark.slow
def test_bands_match_one_scan_on_other_photos(cat_jpg, car_jpg):
    face = cascade.Cascade(cv2.data.haarcascades + "haarcascade_frontalcatface_extended.xml")
    for data in (cat_jpg, car_jpg):
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_2)
        for n in (0, 3):
            kw = dict(scale_factor=1.1, min_neighbors=n, min_size=25)
            plan = face.plan_for(gray, **kw)
            assert face.run(gray, plan) == face.run(gray, dataclasses.replace(plan, band_pixels=300_000))


def test_a_classifier_that_built_a_large_pyramid_is_dropped(monkeypatch):
    face = cascade.Cascade(cv2.data.haarcascades + "haarcascade_frontalface_alt.xml")
    gray = np.full((300, 400), 128, np.uint8)
    first = face._classifier()
    plan = face.plan_for(gray, scale_factor=1.1, min_neighbors=5, min_size=25)
    face.run(gray, plan)
    assert face._classifier() is first  # 400x300: a small buffer, kept
    monkeypatch.setattr(cascade, "KEEP_BYTES", 1024)
    face.run(gray, plan)
    assert face._classifier() is not first  # dropped: the next scan gets a fresh one


def test_a_photo_the_coarse_look_scans_keeps_its_classifier():
    """The coarse look never builds the full pyramid: what its scans built decides, not the full one's size."""
    face = cascade.Cascade(cv2.data.haarcascades + "haarcascade_frontalface_alt.xml")
    gray = np.full((866, 1155), 128, np.uint8)  # 1 MP, scanned at its own size
    full = budget.pyramid(1155, 866, face.window_size, 1.1, (25, 25))
    assert budget.pyramid_buffer(full) * face.buffer_bytes > cascade.KEEP_BYTES
    first = face._classifier()
    face.run(gray, face.plan_for(gray, scale_factor=1.1, min_neighbors=5, min_size=25, min_face=0.025))
    assert face._classifier() is first


def test_batch_work_is_summed(make_app, group_jpg):
    client = make_app({"MYSITE_REQUEST_WORK": 1_000_000}).test_client()  # one photo: 611,137 windows
    one = client.post("/detect", data={"image": (io.BytesIO(group_jpg), "a.jpg")}, content_type="multipart/form-data")
    assert one.status_code == 200
    several = client.post("/detect", data={"image": [(io.BytesIO(group_jpg), f"{i}.jpg") for i in range(3)]},
                          content_type="multipart/form-data")
    assert several.status_code == 413 and "3 images" in several.get_json()["message"]


def test_memory_is_trimmed_after_a_request_that_grew_the_worker(client, group_jpg, monkeypatch):
    sizes = iter([100 << 20, 200 << 20, 100 << 20])  # at the start, at the end, after the trim (when idle)
    trims: list[bool] = []
    monkeypatch.setattr(api.memory, "rss", lambda: next(sizes))
    monkeypatch.setattr(api.memory, "trim", lambda: trims.append(True) or True)
    r = client.post("/detect", data=group_jpg, content_type="image/jpeg")
    r.close()
    assert r.status_code == 200 and trims == [True]


def test_budget_settings_are_checked(make_app):
    with pytest.raises(SettingsError, match="MYSITE_REQUEST_MEMORY_MB"):
        make_app({"MYSITE_REQUEST_MEMORY_MB": "lots"})
    with pytest.raises(SettingsError, match="MYSITE_REQUEST_WORK"):
        make_app({"MYSITE_REQUEST_WORK": "0"})


def test_page_form_does_not_draw_on_a_picture_over_the_budget(client):
    """The page without JavaScript draws the boxes on the upload itself: the same budget as ?output=image."""
    r = client.post("/", data={"endpoint": "/detect", "image": (io.BytesIO(HEADER_40MP), "big.jpg")},
                    headers={"Accept": "text/html"}, content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "too large to draw" in html and 'id="server-image" src="data:' not in html


@pytest.mark.slow
def test_large_transparent_png_is_flattened_lean_and_like_pillow(client):
    """From 4 MP a transparent PNG is flattened band by band (8-9 bytes a pixel, not Pillow's 22), agreeing with Pillow."""
    from PIL import Image

    from mysite.vision import decode

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (1500, 2800, 4), dtype=np.uint8)
    data = cv2.imencode(".png", rgba)[1].tobytes()
    header = decode.read_header(data)
    assert decode.lean_alpha(header)
    assert budget.decode_memory(header, gray=False, reduce=1) < 12 * 1500 * 2800 < decode.PILLOW_BYTES_PER_PIXEL * 1500 * 2800
    for gray in (False, True):
        lean = decode.decode_image(data, max_pixels=10**8, gray=gray).image
        white = Image.new("RGBA", (2800, 1500), (255, 255, 255, 255))
        ref = np.asarray(Image.alpha_composite(white, Image.open(io.BytesIO(data)).convert("RGBA")).convert("RGB"))
        ref = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR)
        assert lean.shape == ref.shape and np.abs(lean.astype(int) - ref).max() <= 1
    drawing = np.zeros((3000, 4000, 4), np.uint8)  # 12 MP: a transparent canvas with one opaque square
    drawing[1000:2000, 1000:2000] = 255
    r = client.post("/detect", data=cv2.imencode(".png", drawing)[1].tobytes(), content_type="image/png")
    assert r.status_code == 200, r.get_json()


def test_pillow_fallback_is_refused_when_its_copies_do_not_fit(make_app, monkeypatch):
    """A file OpenCV refuses goes to Pillow (about 20 bytes a pixel) only when that fits the request's budget."""
    from mysite.vision import decode

    monkeypatch.setattr(decode, "_imdecode", lambda *a: None)
    image = cv2.imencode(".png", np.full((1500, 2000, 3), 90, np.uint8))[1].tobytes()  # 3 MP: 60 MB by Pillow
    small = make_app({"MYSITE_REQUEST_MEMORY_MB": 40}).test_client()
    r = small.post("/canny", data=image, content_type="image/png")
    assert r.status_code == 413 and "Pillow" in r.get_json()["message"]
    large = make_app({"MYSITE_REQUEST_MEMORY_MB": 100}).test_client()
    assert large.post("/canny", data=image, content_type="image/png").status_code == 200


def test_a_jpeg_whose_coefficients_libjpeg_holds_is_refused_past_the_budget(make_app):
    # 6000x4000 in colour: its coefficients alone are 144 MB, whatever the reduction; in one scan, a few MB.
    client = make_app({"MYSITE_REQUEST_MEMORY_MB": 100}).test_client()
    apart = client.post("/detect", data=component_scans_jpeg(6000, 4000), content_type="image/jpeg")
    assert apart.status_code == 413 and "MYSITE_REQUEST_MEMORY_MB" in apart.get_json()["message"], apart.get_json()
    together = component_scans_jpeg(6000, 4000, interleaved=True)
    assert client.post("/detect", data=together, content_type="image/jpeg").status_code == 200


def test_bands_split_only_where_both_window_sides_grow():
    levels = budget.pyramid(400, 300, (20, 10), 1.05, (1, 1))
    parts = budget.bands(levels, 1)
    assert sum(len(p) for p in parts) == len(levels) and len(parts) > 1
    for a, b in zip(parts, parts[1:]):
        assert b[0].window[0] > a[-1].window[0] and b[0].window[1] > a[-1].window[1]


@pytest.mark.parametrize(("mode", "bits", "per_pixel"), [("L", 8, 12), ("I;16", 16, 12), ("I", 32, 18), ("F", 32, 18),
                                                    ("CMYK", 8, 14)])
def test_a_tiff_is_costed_by_the_width_of_its_samples(mode, bits, per_pixel):
    """OpenCV reads a TIFF's 32-bit samples (integer or float) at their width, and four bands (CMYK) as RGBA,
    before converting them: bytes a pixel at the peak, a gray decode at full size."""
    from PIL import Image

    from mysite.vision.decode import decode_image, read_header

    gray = np.tile(np.arange(0, 250, 50, dtype=np.uint8), (30, 8))  # 40x30, five grey levels
    values = {"L": gray, "I;16": gray.astype(np.uint16) * 257, "I": gray.astype(np.int32) * 257,
              "F": gray.astype(np.float32) / 255, "CMYK": gray}[mode]
    buf = io.BytesIO()
    picture = Image.fromarray(values)
    (picture.convert("CMYK") if mode == "CMYK" else picture).save(buf, "TIFF")
    header = read_header(buf.getvalue())
    assert (header.width, header.height, header.bits) == (40, 30, bits)
    assert (budget.decode_memory(header, True, 1) - budget.DECODER_FIXED) / 1200 == per_pixel
    assert decode_image(buf.getvalue(), max_pixels=1200, gray=True).image.shape == (30, 40)


def test_an_animated_webp_is_costed_as_the_rgba_canvases_libwebp_composes_it_on():
    """Its header need not say it is transparent: Pillow opens it as RGB, and it was costed as a still WebP
    (7 bytes a pixel) where libwebp's animation decoder, which OpenCV uses, holds about 11."""
    from PIL import Image

    from mysite.vision.decode import decode_image, read_header
    from testkit.hostile_inputs import opaque_animated_webp

    data = opaque_animated_webp(Image.fromarray(np.full((30, 40, 3), 90, np.uint8)))
    header = read_header(data)
    assert (header.format, header.alpha, header.samples) == ("WEBP", False, 4)
    assert (budget.decode_memory(header, True, 1) - budget.DECODER_FIXED) / 1200 == 12
    assert decode_image(data, max_pixels=1200, gray=True).image.shape == (30, 40)


def test_a_float_tiff_is_held_to_the_budget_at_its_width(make_app):
    """A 3 MP float TIFF takes about 17 bytes a pixel to decode: more than a 50 MB budget leaves it."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((1500, 2000), 0.5, np.float32)).save(buf, "TIFF", compression="tiff_adobe_deflate")
    data = buf.getvalue()
    small = make_app({"MYSITE_REQUEST_MEMORY_MB": 50}).test_client()
    r = small.post("/canny", data=data, content_type="image/tiff")
    assert r.status_code == 413 and "decoding this 2000x1500 TIFF" in r.get_json()["message"], r.get_json()
    large = make_app({"MYSITE_REQUEST_MEMORY_MB": 100}).test_client()
    assert large.post("/canny", data=data, content_type="image/tiff").status_code == 200
