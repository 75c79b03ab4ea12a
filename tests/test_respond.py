"""Annotated images over the wire: ?output=image|base64, Accept: image/*, format=png."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from mysite.pipeline import AnswerFormat, answer_memory
from mysite.vision.decode import Header
from mysite.vision.draw import BOX_COLOR, draw_detections

DATA = Path(__file__).with_name("data")
GROUP = (DATA / "group_17_faces.jpg").read_bytes()


def _post(client, query: str = "", headers=None, image: bytes = GROUP, path: str = "/detect"):  # type: ignore
    return client.post(f"{path}{query}", data={"image": (io.BytesIO(image), "group.jpg")}, headers=headers or {})


def _decode(body: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the answer is not a decodable image"
    return image


def _faces(client) -> list[list[int]]:  # type: ignore[no-untyped-def]
    r = _post(client)
    assert r.status_code == 200
    return [d["box"] for d in r.get_json()["result"]]


def _yellow(pixel: np.ndarray) -> bool:
    b, g, r = (int(v) for v in pixel)
    return b < 110 and g > 170 and r > 170


def _assert_boxes_drawn(image: np.ndarray, boxes: list[list[int]]) -> None:
    """Every box's left and bottom edges are yellow in the picture; the middle of each face is not."""
    for x1, y1, x2, y2 in boxes:
        mid_y, mid_x = (y1 + y2) // 2, (x1 + x2) // 2
        assert _yellow(image[mid_y, x1]), f"no box edge at x={x1} of {[x1, y1, x2, y2]}"
        assert _yellow(image[y2, mid_x]), f"no box edge at y={y2} of {[x1, y1, x2, y2]}"
        assert not _yellow(image[mid_y, mid_x]), "the face itself was painted over"


def test_json_stays_the_default_for_book_clients(client) -> None:
    r = _post(client, headers={"Accept": "*/*"})
    assert r.mimetype == "application/json"
    assert r.get_json()["status"] == "ok"
    assert len(r.get_json()["result"]) == 17
    assert "Accept" in r.headers["Vary"]


@pytest.mark.slow
def test_output_image_draws_every_face(client) -> None:
    boxes = _faces(client)
    r = _post(client, "?output=image")
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    image = _decode(r.data)
    assert image.shape[:2] == (482, 640)
    _assert_boxes_drawn(image, boxes)
    assert "Server-Timing" in r.headers


@pytest.mark.slow
def test_accept_png_answers_png_with_exact_pixels(client) -> None:
    boxes = _faces(client)
    r = _post(client, headers={"Accept": "image/png"})
    assert r.mimetype == "image/png" and r.data.startswith(b"\x89PNG")
    photo = cv2.imdecode(np.frombuffer(GROUP, np.uint8), cv2.IMREAD_COLOR)
    expected = draw_detections(photo, [{"box": b} for b in boxes], default_label="face")
    assert np.array_equal(_decode(r.data), expected)


def test_browser_img_accept_header_gets_an_image(client) -> None:
    # What Chromium sends for <img src=...>: image/* beats */*;q=0.8, so an <img> shows the drawn photo.
    accept = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
    r = _post(client, headers={"Accept": accept})
    assert r.mimetype == "image/jpeg"


def test_format_png_in_query(client) -> None:
    r = _post(client, "?output=image&format=png")
    assert r.mimetype == "image/png"
    _decode(r.data)


@pytest.mark.slow
def test_aidemo_base64_round_trip(client) -> None:
    """The AIDemo client: POST the base64 of a JPEG as the body, b64decode the answer, get a picture."""
    boxes = _faces(client)
    r = client.post("/detect?output=base64", data=base64.b64encode(GROUP))
    assert r.status_code == 200
    picture = base64.b64decode(r.data)
    assert picture.startswith(b"\xff\xd8")
    _assert_boxes_drawn(_decode(picture), boxes)


def test_canny_honours_format_and_base64(client) -> None:
    r = _post(client, path="/canny")
    assert r.mimetype == "image/jpeg"
    png = _post(client, "?format=png", path="/canny")
    edges = cv2.imdecode(np.frombuffer(png.data, np.uint8), cv2.IMREAD_UNCHANGED)
    gray = cv2.cvtColor(cv2.imdecode(np.frombuffer(GROUP, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert np.array_equal(edges, cv2.Canny(gray, 100, 200))
    b64 = _post(client, "?output=base64&format=png", path="/canny")
    assert base64.b64decode(b64.data) == png.data


@pytest.mark.slow
def test_color_photo_is_drawn_in_color(client) -> None:
    # The cascade sees gray; the drawn answer must still be the colour photo.
    r = client.post("/catfacedetection?output=image", data={"image": ((DATA / "cat.jpg").open("rb"), "cat.jpg")})
    image = _decode(r.data)
    b, g, rr = cv2.split(image.astype(np.int16))
    assert np.abs(b - rr).mean() > 5, "the answer lost its colours"


@pytest.mark.parametrize(
    "query, message",
    [("?output=xml", "output must be one of"), ("?output=image&format=gif", "format must be jpeg or png")],
)
def test_bad_output_parameters_are_400(client, query: str, message: str) -> None:
    r = _post(client, query)
    assert r.status_code == 400
    assert message in r.get_json()["message"]


def test_what_to_answer_is_read_before_the_image_is_fetched(client) -> None:
    """A bad output= is the answer, not the fetch of ?url= (which would be refused here for another reason)."""
    r = client.get("/detect?output=xml&url=http://127.0.0.1:9/photo.jpg")
    assert r.status_code == 400
    assert "output must be one of" in r.get_json()["message"] and r.get_json()["reason"] == "bad_parameter"


def test_a_drawn_deepstack_answer_is_costed_as_a_drawn_book_answer() -> None:
    header = Header("JPEG", 4000, 3000)
    for fmt in (AnswerFormat("image", "png"), AnswerFormat("base64", "jpeg")):
        drawn = answer_memory("boxes", fmt, header, 1000 * 750)
        assert drawn > 4000 * 3000 and answer_memory("deepstack", fmt, header, 1000 * 750) == drawn
    assert answer_memory("deepstack", AnswerFormat("json", "jpeg"), header, 1000 * 750) == 0


def test_canny_refuses_json(client) -> None:
    r = _post(client, "?output=json", path="/canny")
    assert r.status_code == 400
    assert "answers an image" in r.get_json()["message"]


def test_errors_stay_json_when_an_image_is_asked(client) -> None:
    r = _post(client, "?output=image", image=b"%PDF-1.4 not an image")
    assert r.status_code == 415
    assert r.get_json()["status"] == "unsupported media type"


def test_draw_clips_boxes_and_leaves_input_alone() -> None:
    image = np.zeros((50, 80), np.uint8)
    out = draw_detections(image, [{"box": [-10, 5, 200, 40], "label": "cat", "confidence": 0.914}])
    assert out.shape == (50, 80, 3) and not image.any()
    assert tuple(out[20, 0]) == BOX_COLOR and tuple(out[20, 79]) == BOX_COLOR


@pytest.mark.slow
def test_large_photo_is_drawn_at_full_size_where_the_fast_path_found_faces(client) -> None:
    """The fast path detects on a reduced decode; the picture and its boxes are in original pixels."""
    group = cv2.imdecode(np.frombuffer(GROUP, np.uint8), cv2.IMREAD_COLOR)
    big = cv2.resize(group, None, fx=5, fy=5, interpolation=cv2.INTER_CUBIC)  # 3200x2410, faces ~200 px
    ok, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])
    r = _post(client, image=buf.tobytes())
    boxes = [d["box"] for d in r.get_json()["result"]]
    assert len(boxes) == 17
    drawn = _decode(_post(client, "?output=image", image=buf.tobytes()).data)
    assert drawn.shape[:2] == big.shape[:2]
    _assert_boxes_drawn(drawn, boxes)
