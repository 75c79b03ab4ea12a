"""The face routes with the real model on real photos: DeepStack's and the site's own.

dlib's model files come from the shared folder beside the checkout (FACE_MODELS); without
them these tests skip, except under CI=true.
"""

from __future__ import annotations

import io
import socket
import sys

import cv2
import numpy as np
import pytest
from tests_helpers import FACE_MODELS, face_model_or_skip, read


@pytest.fixture()
def face_app(make_app, tmp_path):
    """An app with the face model, its store a fresh SQLite file."""
    model = face_model_or_skip()
    return make_app({"MYSITE_FACEID_MODEL": str(model), "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'f.sqlite3'}"})


@pytest.fixture()
def client(face_app):
    return face_app.test_client()


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def _photo(name: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)


def _other_view_of_the_astronaut() -> bytes:
    """The astronaut mirrored, smaller and darker, in a wider frame: not the registered photo."""
    face = cv2.resize(cv2.flip(_photo("astronaut.png"), 1), (400, 400))
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[40:440, 200:600] = cv2.convertScaleAbs(face, alpha=0.8, beta=-10)
    return _jpeg(frame)


def _group_face(i: int) -> tuple[bytes, list[int]]:
    """One face of the group photo cut out with a margin (a photo of one person), and its box in the group."""
    group = _photo("group_17_faces.jpg")
    boxes = sorted(_boxes(group), key=lambda b: (b[1] // 40, b[0]))
    x1, y1, x2, y2 = boxes[i]
    m = (x2 - x1) // 2
    crop = group[max(0, y1 - m):y2 + m, max(0, x1 - m):x2 + m]
    return _jpeg(crop), boxes[i]


def _boxes(image: np.ndarray) -> list[list[int]]:
    det = cv2.FaceDetectorYN.create(str(_yunet()), "", (image.shape[1], image.shape[0]), 0.7)
    _, rows = det.detect(image)
    return [[int(r[0]), int(r[1]), int(r[0] + r[2]), int(r[1] + r[3])] for r in rows]


def _yunet():
    from mysite.models.kinds import DATA_DIR
    return DATA_DIR / "yunet_s_640_640.onnx"


def _form(**files: bytes) -> dict:
    return {k: (io.BytesIO(v), f"{k}.jpg") for k, v in files.items()}


@pytest.mark.slow
def test_deepstack_register_recognize_list_delete_on_real_photos(client) -> None:
    r = client.post("/v1/vision/face/register", data={"userid": "Eileen Collins", **_form(image=read("astronaut.png"))})
    assert r.status_code == 200 and r.get_json()["success"] is True and r.get_json()["message"] == "face added"
    assert client.post("/v1/vision/face/list").get_json()["faces"] == ["Eileen Collins"]
    body = client.post("/v1/vision/face/recognize", data=_form(image=_other_view_of_the_astronaut())).get_json()
    assert body["success"] is True and len(body["predictions"]) == 1
    p = body["predictions"][0]
    assert p["userid"] == "Eileen Collins" and p["confidence"] > 0.9
    assert 200 <= p["x_min"] < p["x_max"] <= 600 and 40 <= p["y_min"] < p["y_max"] <= 440
    # Seventeen strangers: every face found, none named.
    group = client.post("/v1/vision/face/recognize", data=_form(image=read("group_17_faces.jpg"))).get_json()
    assert len(group["predictions"]) == 17 and {q["userid"] for q in group["predictions"]} == {"unknown"}
    assert all(q["confidence"] == 0 for q in group["predictions"])
    # min_confidence is honoured: above the match's confidence the face is unknown.
    strict = client.post("/v1/vision/face/recognize",
                         data={"min_confidence": "1", **_form(image=_other_view_of_the_astronaut())}).get_json()
    assert strict["predictions"][0]["userid"] == "unknown"
    assert client.post("/v1/vision/face/delete", data={"userid": "Eileen Collins"}).get_json() == {
        "success": True, "duration": pytest.approx(0, abs=5)}
    assert client.post("/v1/vision/face/list").get_json()["faces"] == []
    after = client.post("/v1/vision/face/recognize", data=_form(image=_other_view_of_the_astronaut())).get_json()
    assert after["predictions"][0]["userid"] == "unknown"


@pytest.mark.slow
def test_a_registered_face_among_seventeen_strangers_is_named_and_nobody_else(client) -> None:
    r = client.post("/faces/Eileen%20Collins", data=_form(image=read("astronaut.png")))
    assert r.status_code == 200 and r.get_json()["added"] == 1
    # The astronaut, mirrored and 80 px wide, pasted below the group's 17 faces.
    group = _photo("group_17_faces.jpg")
    canvas = np.vstack([group, np.full((160, group.shape[1], 3), 200, np.uint8)])
    canvas[492:632, 250:390] = cv2.resize(cv2.flip(_photo("astronaut.png")[40:200, 140:300], 1), (140, 140))
    result = client.post("/recognize", data=_form(image=_jpeg(canvas))).get_json()["result"]
    named = [f for f in result if f["name"]]
    assert len(result) == 18 and [f["name"] for f in named] == ["Eileen Collins"]
    assert named[0]["box"][1] > 482 and named[0]["confidence"] > 0.9
    # The group's faces are 27-35 px wide: too small to be named, whatever their distance.
    assert all(f["too_small"] for f in result if not f["name"]) and not named[0]["too_small"]
    assert client.get("/faces").get_json()["faces"] == [{"name": "Eileen Collins", "count": 1}]
    assert client.delete("/faces/Eileen%20Collins").get_json() == {"status": "ok", "name": "Eileen Collins",
                                                                    "deleted": 1}
    r = client.delete("/faces/Eileen%20Collins")
    assert r.status_code == 404 and r.get_json()["reason"] == "not_found"


@pytest.mark.slow
@pytest.mark.parametrize("threshold", ["0.45", "0.67", "0.7", None])
def test_every_client_default_threshold_names_the_astronaut_and_none_of_the_group(client, threshold) -> None:
    # deepstack-python and codeproject-ai-api send 0.45, deepstack-sdk 0.7; DeepStack's server
    # uses 0.67 when none is sent.
    client.post("/v1/vision/face/register", data={"userid": "Eileen Collins", **_form(image=read("astronaut.png"))})
    sent = {"min_confidence": threshold} if threshold else {}
    group = client.post("/v1/vision/face/recognize", data={**sent, **_form(image=read("group_17_faces.jpg"))})
    assert [p["userid"] for p in group.get_json()["predictions"]] == ["unknown"] * 17
    other = client.post("/v1/vision/face/recognize", data={**sent, **_form(image=_other_view_of_the_astronaut())})
    assert [p["userid"] for p in other.get_json()["predictions"]] == ["Eileen Collins"]


def test_a_face_too_small_to_tell_people_apart_is_not_registered(client) -> None:
    photo, _ = _group_face(5)  # a face 28 px wide, cut out of the group photo
    r = client.post("/faces/small", data=_form(image=photo))
    assert r.status_code == 422 and "at least 60 pixels wide" in r.get_json()["message"]


def test_several_photos_register_together_or_not_at_all(client) -> None:
    # deepstack-sdk names its fields image<uuid>; DeepStack's documentation image1, image2.
    ok = client.post("/v1/vision/face/register", data={"userid": "E", **_form(
        image1=read("astronaut.png"), imageb0c1=_other_view_of_the_astronaut())})
    assert ok.status_code == 200
    assert client.get("/faces").get_json()["faces"] == [{"name": "E", "count": 2}]
    # One photo without a face: nothing of the request is stored, and the answer says which photo.
    r = client.post("/v1/vision/face/register", data={"userid": "F", **_form(image1=read("astronaut.png"),
                                                                                image2=read("car.jpg"))})
    body = r.get_json()
    assert r.status_code == 422 and body["success"] is False and body["error"] == "no face found in image 2"
    assert [f["name"] for f in client.get("/faces").get_json()["faces"]] == ["E"]


def test_a_full_store_answers_507_in_both_styles_and_frees_up_after_a_deletion(make_app, tmp_path) -> None:
    app = make_app({"MYSITE_FACEID_MODEL": str(face_model_or_skip()), "MYSITE_FACES_MAX": "1",
                    "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'f.sqlite3'}"})
    client = app.test_client()
    assert client.post("/faces/A", data=_form(image=read("astronaut.png"))).status_code == 200
    r = client.post("/v1/vision/face/register", data={"userid": "B", **_form(image1=read("astronaut.png"))})
    assert r.status_code == 507 and r.get_json()["success"] is False and "MYSITE_FACES_MAX" in r.get_json()["error"]
    r = client.post("/faces/B", data=_form(image=read("astronaut.png")))
    assert r.status_code == 507 and r.get_json()["reason"] == "store_full"
    assert client.get("/faces").get_json()["faces"] == [{"name": "A", "count": 1}]
    assert client.delete("/faces/A").status_code == 200
    assert client.post("/faces/B", data=_form(image=read("astronaut.png"))).status_code == 200


def test_bad_registrations_are_clear_errors(client) -> None:
    astronaut = read("astronaut.png")
    cases = [
        ({"userid": "", **_form(image=astronaut)}, 400, "user id not specified"),
        ({"userid": "   ", **_form(image=astronaut)}, 400, "user id not specified"),
        ({"userid": "x\x00y", **_form(image=astronaut)}, 400, "control characters"),
        ({"userid": "Zo\ufffd", **_form(image=astronaut)}, 400, "not UTF-8"),  # two Latin-1 names would be one
        ({"userid": "x" * 201, **_form(image=astronaut)}, 400, "the limit is 200"),
        ({"userid": "G", **_form(image=read("group_17_faces.jpg"))}, 422, "more than one face of about the same size"),
        ({"userid": "C", **_form(image=read("car.jpg"))}, 422, "no face found in the image"),
        ({"userid": "J", **_form(image=b"not an image")}, 415, ""),
        ({"userid": "N"}, 400, "Parameter image is not present"),
    ]
    for data, code, words in cases:
        r = client.post("/v1/vision/face/register", data=data)
        body = r.get_json()
        assert r.status_code == code and body["success"] is False and words in body["error"], (data.get("userid"), body)
    assert client.post("/v1/vision/face/list").get_json()["faces"] == []
    r = client.post("/v1/vision/face/delete", data={})
    assert r.status_code == 400 and r.get_json()["error"] == "user id not specified"
    # A form whose escapes are not UTF-8 was read as empty: "user id not specified", though one was sent.
    r = client.post("/v1/vision/face/delete", data=b"userid=Zo&x=%ff", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and "not UTF-8" in r.get_json()["error"], r.get_json()
    # So is a query string's: werkzeug kept the escape as its three characters, a name unlike the one meant.
    r = client.post("/v1/vision/face/delete?userid=Zo%EB")
    assert r.status_code == 400 and "query string is not UTF-8" in r.get_json()["error"], r.get_json()
    assert client.post("/v1/vision/face/delete?userid=Zo%C3%AB").status_code == 200
    # A form of no fields is one, and a photo sent with curl --data-binary's default type is the photo.
    urlencoded = "application/x-www-form-urlencoded"
    assert client.post("/v1/vision/face/list", data=b"&", content_type=urlencoded).status_code == 200
    r = client.post("/faces/raw", data=read("astronaut.png"), content_type=urlencoded)
    assert r.status_code == 200 and r.get_json()["added"] == 1, r.get_json()
    # Parsed as a form first, a photo of more than 1,000 bytes of '&' was "the form has 1465 fields".
    import cv2
    import numpy as np

    picture = cv2.imdecode(np.frombuffer(read("astronaut.png"), np.uint8), cv2.IMREAD_COLOR)
    big = cv2.imencode(".jpg", cv2.resize(picture, (1600, 1600)), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert big.count(b"&") > 1000
    r = client.post("/faces/big", data=big, content_type=urlencoded)
    assert r.status_code == 200 and r.get_json()["added"] == 1, r.get_json()
    # A form of parameters and the photo by its URL: the URL is the photo (here refused as loopback).
    r = client.post("/v1/vision/face/register?url=http://127.0.0.1:9/x.jpg", data=b"userid=u", content_type=urlencoded)
    assert r.status_code == 400 and "refusing to fetch" in r.get_json()["error"], r.get_json()
    # base64 sent with curl -d's type is the photo, whatever ?url= says; so is a form's image1 sent twice
    import base64

    b64 = base64.b64encode(read("astronaut.png"))
    r = client.post("/v1/vision/face/register?userid=b&url=http://127.0.0.1:9/x.jpg", data=b64, content_type=urlencoded)
    assert r.status_code == 200, r.get_json()
    r = client.post("/v1/vision/face/register", data={"userid": "c", "image1": [b64.decode(), b64.decode()]},
                    content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()


def test_match_compares_two_photos(client) -> None:
    same = client.post("/v1/vision/face/match", data=_form(image1=read("astronaut.png"),
                                                           image2=_other_view_of_the_astronaut())).get_json()
    photo, _ = _group_face(3)
    other = client.post("/v1/vision/face/match", data=_form(image1=read("astronaut.png"), image2=photo)).get_json()
    assert same["success"] and same["similarity"] > 0.9 and same["distance"] < 0.5
    assert other["similarity"] < 0.1 and other["distance"] > 0.6
    # DeepStack's names for a part without a filename (raw bytes, as requests sends files={"image1": (None, b)})
    raw = {"image1": (None, read("astronaut.png")), "image2": (None, read("astronaut.png"))}
    import requests as requests_lib

    body, ctype = requests_lib.models.RequestEncodingMixin._encode_files(raw, {})
    r = client.post("/v1/vision/face/match", data=body, content_type=ctype)
    assert r.status_code == 200 and r.get_json()["similarity"] == 1.0, r.get_json()
    r = client.post("/v1/vision/face/match", data=_form(image1=read("astronaut.png")))
    assert r.status_code == 400 and "two images" in r.get_json()["error"]


def test_an_answer_about_image_2_is_about_the_field_image2_however_each_was_sent(client) -> None:
    import base64

    # image2 is a file and image1 base64 text: files come first in the form, but the field names set the order.
    data = {"image1": base64.b64encode(read("car.jpg")).decode(), **_form(image2=read("astronaut.png"))}
    r = client.post("/v1/vision/face/match", data=data, content_type="multipart/form-data")
    assert r.status_code == 422 and r.get_json()["error"] == "no face found in image 1", r.get_json()
    data = {"image2": base64.b64encode(read("car.jpg")).decode(), **_form(image1=read("astronaut.png"))}
    r = client.post("/v1/vision/face/match", data=data, content_type="multipart/form-data")
    assert r.status_code == 422 and r.get_json()["error"] == "no face found in image 2", r.get_json()
    # A field numbered past what Python's int() reads (4,300 digits) is a photo like the others, not a 500.
    b64 = base64.b64encode(read("astronaut.png")).decode()
    r = client.post("/v1/vision/face/match", data={"image1": b64, "image" + "9" * 4301: b64})
    assert r.status_code == 200 and r.get_json()["similarity"] == 1.0, r.get_json()


def test_an_unreachable_database_answers_503_and_the_rest_of_the_site_works(make_app) -> None:
    model = face_model_or_skip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = make_app({"MYSITE_FACEID_MODEL": str(model),
                    "MYSITE_FACES_DB": f"postgresql+psycopg://u:pw@127.0.0.1:{port}/faces"})
    client = app.test_client()
    for path in ("/v1/vision/face/list", "/v1/vision/face/recognize"):
        r = client.post(path, data=_form(image=read("astronaut.png")))
        assert r.status_code == 503 and r.get_json()["success"] is False and "MYSITE_FACES_DB" in r.get_json()["error"]
    assert client.get("/faces").status_code == 503
    assert client.post("/detect", data=_form(image=read("astronaut.png"))).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_without_the_model_the_routes_answer_503_naming_the_fix(make_app, tmp_path) -> None:
    client = make_app({"MYSITE_MODEL_DIR": str(tmp_path)}).test_client()
    r = client.post("/v1/vision/face/recognize", data=_form(image=read("astronaut.png")))
    body = r.get_json()
    assert r.status_code == 503 and body["success"] is False
    assert "MYSITE_FACEID_MODEL" in body["error"] and "python -m mysite.models fetch faceid" in body["error"]
    assert client.post("/v1/vision/face/list").status_code == 200  # the store itself needs no model


def test_model_dir_holding_the_two_files_is_all_it_takes(make_app, tmp_path) -> None:
    face_model_or_skip()
    client = make_app({"MYSITE_MODEL_DIR": str(FACE_MODELS)}).test_client()
    r = client.post("/v1/vision/face/register", data={"userid": "E", **_form(image=read("astronaut.png"))})
    assert r.status_code == 200


def test_api_keys_and_admin_keys(make_app, tmp_path) -> None:
    model = face_model_or_skip()
    user, admin = "user-key-0123456789abcdef", "admin-key-0123456789abcdef"
    client = make_app({"MYSITE_FACEID_MODEL": str(model), "MYSITE_API_KEYS": user, "MYSITE_ADMIN_KEYS": admin,
                       "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'k.sqlite3'}"}).test_client()
    astronaut = read("astronaut.png")
    assert client.post("/v1/vision/face/list").status_code == 401
    assert client.post("/v1/vision/face/list", data={"api_key": user}).status_code == 200
    # An ordinary key may recognize and list, not change the store; the admin key may do everything.
    r = client.post("/v1/vision/face/register", data={"userid": "E", "api_key": user, **_form(image=astronaut)})
    assert r.status_code == 401 and r.get_json()["success"] is False
    r = client.post("/v1/vision/face/register", data={"userid": "E", "api_key": admin, **_form(image=astronaut)})
    assert r.status_code == 200
    assert client.delete("/faces/E", headers={"X-API-Key": user}).status_code == 401
    assert client.post("/recognize", headers={"X-API-Key": admin}, data=_form(image=astronaut)).status_code == 200
    assert client.delete("/faces/E", headers={"X-API-Key": admin}).status_code == 200


def test_without_dlib_the_routes_answer_503_saying_what_to_install(make_app, monkeypatch) -> None:
    model = face_model_or_skip()
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib-bin were not installed
    client = make_app({"MYSITE_FACEID_MODEL": str(model)}).test_client()
    r = client.post("/recognize", data=_form(image=read("astronaut.png")))
    assert r.status_code == 503 and "pip install dlib-bin" in r.get_json()["message"]
    assert client.post("/detect", data=_form(image=read("astronaut.png"))).status_code == 200


def test_the_face_routes_are_in_the_info_route_and_the_api_description(client) -> None:
    routes: dict[str, set[str]] = {}
    for r in client.get("/").get_json()["routes"]:
        routes.setdefault(r["path"], set()).update(r["methods"])
    assert routes["/faces/<path:name>"] == {"DELETE", "POST"}
    assert {"/v1/vision/face/register", "/v1/vision/face/recognize", "/v1/vision/face/list",
            "/v1/vision/face/delete", "/v1/vision/face/match", "/faces", "/recognize"} <= set(routes)
    paths = client.get("/openapi.json").get_json()["paths"]
    assert set(paths["/faces/{name}"]) == {"post", "delete"}
    recognize = paths["/v1/vision/face/recognize"]["post"]
    assert {p["name"]: p["schema"]["default"] for p in recognize["parameters"]}["min_confidence"] == 0.67
