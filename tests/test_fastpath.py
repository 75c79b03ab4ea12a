"""The detection fast path: book-exact on small photos, fast and faithful on 12 MP ones."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mysite import create_app
from mysite.errors import BadRequest
from mysite.params import parse
from mysite.vision import fastpath
from mysite.vision.decode import read_header
from mysite.web.state import current_registry
from testkit.boxes import iou
from testkit.compose import HEIGHT, WIDTH, build_jpeg, exact_layout

DATA = Path(__file__).parent / "data"
# What the book's code (full-resolution decode, BGR->gray, scaleFactor 1.1, minNeighbors 5,
# minSize 25) answers on its own group photo, as (x, y, w, h), measured with OpenCV 4.14.
BOOK_GROUP = [
    (54, 89, 43, 43), (77, 38, 38, 38), (81, 172, 46, 46), (151, 29, 42, 42), (159, 95, 39, 39),
    (182, 179, 37, 37), (225, 116, 40, 40), (251, 38, 42, 42), (288, 173, 43, 43), (310, 115, 34, 34),
    (357, 48, 42, 42), (390, 87, 40, 40), (400, 174, 44, 44), (448, 37, 42, 42), (499, 91, 43, 43),
    (509, 170, 44, 44), (536, 47, 38, 38),
]


@pytest.fixture(scope="module")
def client():
    return create_app({"MYSITE_URL_FETCH": "off"}).test_client()


@pytest.fixture(scope="module")
def composition() -> tuple[bytes, list[list[int]]]:
    """The 12 MP photo of testkit/compose.py and its known faces [x1, y1, x2, y2]."""
    return build_jpeg()


def detect(client, data: bytes, query: str = "") -> list[list[int]]:
    response = client.post("/detect" + query, data={"image": (io.BytesIO(data), "photo.jpg")})
    assert response.status_code == 200, response.json
    return [d["box"] for d in response.json["result"]]


def test_group_photo_gives_exactly_the_books_boxes(client):
    boxes = detect(client, (DATA / "group_17_faces.jpg").read_bytes())
    assert sorted(boxes) == sorted([x, y, x + w, y + h] for x, y, w, h in BOOK_GROUP)


@pytest.mark.slow
def test_composition_is_12_megapixels_with_faces_of_100_to_400_px(composition):
    data, known = composition
    header = read_header(data)
    assert (header.width, header.height) == (WIDTH, HEIGHT) == (4000, 3000)
    big = [b for b in known if b[2] - b[0] >= 100]
    assert len(big) == 21
    assert min(b[2] - b[0] for b in big) >= 110 and max(b[2] - b[0] for b in big) <= 400


@pytest.mark.slow
def test_12mp_fast_path_finds_the_known_faces_in_original_coordinates(client, composition):
    data, known = composition
    boxes = detect(client, data)
    big = [k for k in known if k[2] - k[0] >= 100]
    found = [k for k in big if any(iou(k, b) >= 0.5 for b in boxes)]
    assert len(found) / len(big) >= 0.95
    # Boxes are in the 4000x3000 photo's pixels: none smaller than the margin below 2.5 % of its
    # long side (the default min_face), none outside it, and every one on a known face.
    for b in boxes:
        assert 0 <= b[0] < b[2] <= WIDTH and 0 <= b[1] < b[3] <= HEIGHT
        assert b[2] - b[0] >= fastpath.MARGIN * 100 - 1
        assert any(iou(k, b) >= 0.5 for k in known), b


def test_min_face_per_request_sets_the_smallest_face(client, composition):
    data, known = composition
    boxes = detect(client, data, "?min_face=0.06")  # 240 px on a 4000 px long side
    assert boxes, "the 294 and 392 px faces should be found"
    assert all(b[2] - b[0] >= 0.97 * 240 for b in boxes)
    for k in (k for k in known if k[2] - k[0] >= 280):
        assert any(iou(k, b) >= 0.5 for b in boxes), k


def test_plan_keeps_small_photos_at_full_size_and_reduces_12mp():
    assert fastpath.plan(640, 482, min_size=25, min_face=0.025, window=20) == fastpath.Fit(25, 1.0, 1)
    p = fastpath.plan(4000, 3000, min_size=25, min_face=0.025, window=20)
    assert (p.min_px, p.reduce) == (100, 2) and p.scale == pytest.approx(0.34)
    assert fastpath.plan(4000, 3000, min_size=25, min_face=0.0, window=20) == fastpath.Fit(25, 1.0, 1)
    assert fastpath.plan(4000, 3000, min_size=400, min_face=0.025, window=20).reduce == 8


def test_explicit_min_size_alone_is_honoured(client):
    face = current_registry(client.application).get("face")
    header = read_header((DATA / "car.jpg").read_bytes())
    values = parse(face.params, {"min_size": "25"})
    plan = face.plan(header, values, {"min_size"})
    assert (plan.reduce, plan.values["min_face"], plan.values["min_size"]) == (1, 0.0, 25)
    plan = face.plan(header, values, {"min_size", "min_face"})
    assert plan.values["min_face"] == 0.025 and plan.reduce == 1  # 2372 px: 60 px faces, worked at 0.57


def test_min_face_setting_and_bad_values(client):
    registry = current_registry(create_app({"MYSITE_URL_FETCH": "off", "MYSITE_MIN_FACE": "0.1"}))
    defaults = {p.name: p.default for p in registry.get("face").params}
    assert defaults["min_face"] == 0.1
    response = client.post("/detect?min_face=2", data={"image": (io.BytesIO(b"x"), "a.jpg")})
    assert response.status_code == 400 and "min_face" in response.json["message"]
    with pytest.raises(BadRequest):
        parse(registry.get("face").params, {"min_face": "-0.1"})
    from mysite.settings import SettingsError

    with pytest.raises(SettingsError, match="MYSITE_MIN_FACE"):
        create_app({"MYSITE_MIN_FACE": "3"})


def test_several_images_in_one_request_answer_a_list_in_order(client):
    group = (DATA / "group_17_faces.jpg").read_bytes()
    astronaut = (DATA / "astronaut.png").read_bytes()
    response = client.post("/detect", data={"image": [
        (io.BytesIO(group), "group.jpg"), (io.BytesIO(b"not an image at all"), "x.txt"),
        (io.BytesIO(astronaut), "astronaut.png"),
    ]})
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok" and "result" not in body
    first, bad, third = body["results"]
    assert sorted(d["box"] for d in first["result"]) == sorted([x, y, x + w, y + h] for x, y, w, h in BOOK_GROUP)
    assert bad["status"] == "unsupported media type" and "message" in bad
    assert third["status"] == "ok" and len(third["result"]) == 1
    assert iou(third["result"][0]["box"], [176, 65, 274, 163]) >= 0.8


def test_several_images_are_refused_where_the_answer_is_an_image(client):
    group = (DATA / "group_17_faces.jpg").read_bytes()
    response = client.post("/canny", data={"image": [(io.BytesIO(group), "a.jpg"), (io.BytesIO(group), "b.jpg")]})
    assert response.status_code == 400 and "one image at a time" in response.json["message"]


def test_more_images_than_the_limit_is_413(client):
    from mysite.web.inputs import MAX_IMAGES

    files = [(io.BytesIO(b"x"), f"{i}.jpg") for i in range(MAX_IMAGES + 1)]
    response = client.post("/detect", data={"image": files})
    assert response.status_code == 413 and str(MAX_IMAGES) in response.json["message"]


@pytest.mark.slow
def test_12mp_fast_path_answers_in_the_exif_oriented_frame(client, composition):
    import cv2
    import numpy as np
    from PIL import Image

    data, known = composition
    # Stored turned a quarter, with EXIF orientation 6 so that viewers (and we) show it upright.
    stored = cv2.rotate(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.ROTATE_90_COUNTERCLOCKWISE)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    Image.fromarray(stored[:, :, ::-1]).save(out, "JPEG", quality=92, exif=exif.tobytes())
    boxes = detect(client, out.getvalue())
    big = [k for k in known if k[2] - k[0] >= 100]
    assert sum(any(iou(k, b) >= 0.5 for b in boxes) for k in big) / len(big) >= 0.95


@pytest.mark.slow
def test_several_images_share_one_pixel_budget(make_app):
    """16 files that each pass the pixel limit may not add up to 16 times the work of one."""
    group = (DATA / "group_17_faces.jpg").read_bytes()  # 640x482 = 0.31 MP
    c = make_app({"MYSITE_MAX_PIXELS": 700_000}).test_client()
    two = c.post("/detect", data={"image": [(io.BytesIO(group), f"{i}.jpg") for i in range(2)]})
    assert two.status_code == 200 and len(two.json["results"]) == 2
    three = c.post("/detect", data={"image": [(io.BytesIO(group), f"{i}.jpg") for i in range(3)]})
    assert three.status_code == 413 and "together" in three.json["message"]


@pytest.mark.parametrize("width,height", [(4000, 3000), (6000, 4000)])
@pytest.mark.slow
def test_haar_finds_faces_exactly_min_face_wide(client, width, height):
    """No blind spot at the boundary: faces placed at exactly 2.5 % of the long side (and 0.85-1.15x)."""
    min_px = round(0.025 * max(width, height))
    data, known = build_jpeg(exact_layout(min_px, width, height), width, height)
    boxes = detect(client, data)
    wanted = [k for k in known if k[2] - k[0] >= min_px]
    assert sum(k[2] - k[0] == min_px for k in wanted) >= 12
    missed = [k for k in wanted if not any(iou(k, b) >= 0.5 for b in boxes)]
    assert missed == []
    assert all(any(iou(k, b) >= 0.3 for k in known) for b in boxes)


@pytest.mark.slow
def test_a_cascade_declared_without_min_face_looks_down_to_min_size():
    """The models guide's eye cascade: min_face is a default of the face models, not of every cascade."""
    import re
    import tomllib

    from mysite.models.registry import _load
    from mysite.models.schema import ModelSpec
    from mysite.settings import load

    guide = (Path(__file__).parent.parent / "docs" / "models.md").read_text()
    table = tomllib.loads(re.search(r"```toml\n(\[eyes\].*?)```", guide, re.S).group(1))
    spec = ModelSpec.from_table("eyes", table["eyes"])
    eyes = _load(spec, load({"MYSITE_MIN_FACE": "0.05"}, environ={}))
    assert eyes.loaded and {p.name: p.default for p in eyes.model.params}["min_face"] == 0.0
    from testkit.compose import Paste

    crop = (128, 16, 200, 200)  # the astronaut's face and hair; her face is 100 px at this scale, her eyes ~20
    strip = tuple(Paste("astronaut.png", 100 / 98, (20 + 300 * i, 20), crop) for i in range(12))
    data, known = build_jpeg(strip, 3840, 480)
    header = read_header(data)
    values = {p.name: p.default for p in eyes.model.params}
    plan = eyes.model.plan(header, values, set())
    from mysite.vision.decode import decode_image

    decoded = decode_image(data, max_pixels=40_000_000, gray=True, reduce=plan.reduce, header=header)
    found = eyes.model.run(decoded.image, plan)
    faces_with_eyes = [k for k in known if sum(k[0] <= (b["box"][0] + b["box"][2]) / 2 <= k[2]
                                               and k[1] <= (b["box"][1] + b["box"][3]) / 2 <= k[3] for b in found) >= 2]
    assert len(faces_with_eyes) >= len(known) // 2
