"""HEIC (what iPhones upload) and AVIF: read, and held to the limits and budgets of every other format."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

import pytest
import requests
from PIL import Image

from mysite.errors import ApiError
from mysite.vision import budget
from mysite.vision.decode import decode_image, read_header
from testkit.boxes import iou
from testkit.hostile_inputs import mutate

DATA = Path(__file__).with_name("data")
GROUP = DATA / "group_17_faces.jpg"
FORMATS = ["HEIF", "AVIF"]


def encode(fmt: str, picture: Image.Image | None = None, **options: object) -> bytes:
    """The test photo (or ``picture``) as a HEIC or AVIF file, made here with the encoders the wheels ship."""
    picture = picture or Image.open(GROUP).convert("RGB")
    buf = io.BytesIO()
    picture.save(buf, fmt, quality=90, **options)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {fmt: encode(fmt) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("detector", ["haar", "yunet"])
def test_the_same_faces_as_in_the_jpeg(app, photos, fmt: str, detector: str) -> None:
    client = app.test_client()
    jpeg = client.post(f"/detect?detector={detector}", data=GROUP.read_bytes(), content_type="image/jpeg")
    r = client.post(f"/detect?detector={detector}", data=photos[fmt], content_type="application/octet-stream")
    assert r.status_code == 200, r.get_json()
    found, expected = r.get_json()["result"], jpeg.get_json()["result"]
    assert len(found) == len(expected) == 17
    for box in (d["box"] for d in expected):
        assert max(iou(box, d["box"]) for d in found) > 0.7


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_header_gives_the_size_as_seen_before_any_pixel(fmt: str) -> None:
    turned = Image.Exif()
    turned[0x0112] = 6  # stored landscape, seen portrait
    data = encode(fmt, exif=turned.tobytes())
    header = read_header(data)
    assert (header.width, header.height) == (482, 640)
    assert decode_image(data, max_pixels=10**7, header=header).image.shape == (640, 482, 3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_more_pixels_than_the_limit_is_413_before_decoding(make_app, photos, fmt: str) -> None:
    client = make_app({"MYSITE_MAX_PIXELS": "300000"}).test_client()  # the photo is 640x482 = 308,480
    r = client.post("/detect", data=photos[fmt], content_type="application/octet-stream")
    assert r.status_code == 413 and "megapixels" in r.get_json()["message"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_memory_budget_counts_the_decoders_copies(make_app, fmt: str) -> None:
    big = encode(fmt, Image.open(GROUP).convert("RGB").resize((2000, 1500)))
    header = read_header(big)
    need = budget.decode_memory(header, gray=False, reduce=1)
    assert need >= 12 * 2000 * 1500  # the decoder's planes and Pillow's copies, not OpenCV's three bytes a pixel
    # A budget that holds what a JPEG of this size needs, not what this format's decoder needs.
    client = make_app({"MYSITE_REQUEST_MEMORY_MB": "25"}).test_client()
    r = client.post("/canny", data=big, content_type="application/octet-stream")
    assert r.status_code == 413 and "MYSITE_REQUEST_MEMORY_MB" in r.get_json()["message"]
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(big)).save(jpeg, "JPEG")
    assert client.post("/canny", data=jpeg.getvalue(), content_type="image/jpeg").status_code == 200


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_cut_file_is_a_broken_image_not_an_unknown_format(app, photos, fmt: str) -> None:
    data = photos[fmt]
    r = app.test_client().post("/detect", data=data[: len(data) // 2], content_type="application/octet-stream")
    assert r.status_code == 422 and r.get_json()["reason"] == "bad_image"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_damaged_picture_data_is_a_broken_image(app, fmt: str, mode: str) -> None:
    data = encode(fmt, Image.open(GROUP).convert(mode).resize((160, 120)))
    at = data.index(b"mdat") + 4
    damaged = data[:at] + b"\xff" * (len(data) - at)  # the header intact, the coded picture not
    r = app.test_client().post("/detect", data=damaged, content_type="application/octet-stream")
    assert r.status_code == 422 and r.get_json()["reason"] == "bad_image", r.get_json()


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_mutation_is_read_or_refused_with_a_reason(fmt: str) -> None:
    """Each decoder reports damage its own way (libavif's as RuntimeError): all of it is an ApiError here."""
    rng = random.Random(20261206)
    small = Image.open(GROUP).convert("RGB").resize((64, 48))
    files = [encode(fmt, small), encode(fmt, small.convert("RGBA")), encode(fmt, small.convert("L"))]
    outcomes: Counter[str] = Counter()
    for _ in range(300):
        data = mutate(rng.choice(files), rng)
        try:
            decode_image(data, max_pixels=10**7, gray=rng.random() < 0.5, max_bytes=64 << 20)
            outcomes["decoded"] += 1
        except ApiError as exc:
            outcomes[exc.reason] += 1
    assert outcomes["decoded"] and outcomes["bad_image"], outcomes


def test_an_iphone_photo_through_gunicorn(live_server, photos) -> None:
    r = requests.post(f"{live_server.url}/detect", files={"image": ("IMG_0001.HEIC", photos["HEIF"], "image/heic")},
                      timeout=60)
    assert r.status_code == 200 and len(r.json()["result"]) == 17
    r = requests.post(f"{live_server.url}/v1/vision/face", files={"image": photos["AVIF"]}, timeout=60)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 17
