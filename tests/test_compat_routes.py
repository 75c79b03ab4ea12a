"""The compatibility rows of the endpoint table, in-process: answer forms and error bodies as data."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import colour_classifier, fixed_ssd

from mysite.models import kinds as model_kinds
from mysite.models.schema import ModelSpec
from mysite.vision.classify import read_labels
from mysite.web import respond
from mysite.web.state import current_endpoints


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    """The tiny colour classifier with ImageNet's 1000 outputs: red is class 285, Egyptian_cat."""
    d = tmp_path_factory.mktemp("classifier")
    colour_classifier(d / "squeezenet1.1-7.onnx", classes=(285, 281, 0), outputs=1000)
    return d


def test_every_row_names_an_answer_and_error_form_that_exists(app):
    endpoints = current_endpoints(app)
    for ep in endpoints:
        assert ep.output in {*respond.JSON_SHAPES, *respond.TEXT_SHAPES, "image"}, ep.path
        assert ep.errors in respond.ERROR_FIELDS, ep.path
    assert len({ep.name for ep in endpoints}) == len(endpoints)  # /predict and /predict/ are two endpoints


@pytest.mark.parametrize(("send", "code"), [
    ({}, 400),  # no image
    ({"data": b"%PDF-1.4 a document", "content_type": "application/pdf"}, 415),
    ({"data": {"image": (io.BytesIO(b"\xff\xd8\xff" + b"\0" * 2_000_000), "x.jpg")}}, 413),  # over the body limit
])
def test_every_predict_error_carries_success_false(make_app, classifier_dir, send, code):
    client = make_app({"MYSITE_MAX_UPLOAD_MB": "1", "MYSITE_MODEL_DIR": str(classifier_dir)}).test_client()
    r = client.post("/predict", **send)
    assert r.status_code == code and r.get_json()["success"] is False and r.get_json()["message"]
    r = client.put("/predict")
    assert r.status_code == 405 and r.get_json()["success"] is False
    # Other routes keep the book's two fields, and the machine-readable reason beside them.
    body = client.post("/detect", data=b"%PDF-1.4", content_type="application/pdf").get_json()
    assert set(body) == {"status", "message", "reason"}
    assert set(client.get("/nowhere").get_json()) == {"status", "message", "reason"}


def test_predict_with_no_classifier_is_a_503_with_success_false(client):
    r = client.post("/predict", data={"image": (io.BytesIO(cv2.imencode(".png", np.zeros((9, 9, 3), np.uint8))[1]
                                                           .tobytes()), "x.png")})
    assert r.status_code == 503 and r.get_json()["success"] is False


@pytest.mark.slow
def test_predictor_answers_base64_by_default_and_json_when_asked(client, group_jpg):
    r = client.post("/predictor", data=base64.b64encode(group_jpg))
    assert r.status_code == 200 and r.mimetype == "text/plain"
    assert base64.b64decode(r.data)[:3] == b"\xff\xd8\xff"
    r = client.post("/predictor?output=json", data=base64.b64encode(group_jpg))
    assert len(r.get_json()["result"]) == 17


def test_digit_text_route_and_deepstack_errors(client):
    r = client.post("/predict/", data={"img": (io.BytesIO(b"not a picture"), "d.png")})
    assert r.status_code == 415 and set(r.get_json()) == {"status", "message", "reason"}
    r = client.post("/v1/vision/detection", data={"image": (io.BytesIO(b"x" * 40), "x.jpg")})
    body = r.get_json()
    assert r.status_code in (400, 503) and body["success"] is False and body["error"] == body["message"]
    assert body["duration"] == 0


def test_deepstack_face_can_draw_and_takes_the_detector_choice(client, astronaut_png):
    r = client.post("/v1/vision/face?detector=dnn", data={"image": (io.BytesIO(astronaut_png), "a.png")})
    (face,) = r.get_json()["predictions"]
    assert face["label"] == "face" and 0.5 < face["confidence"] < 1
    r = client.post("/v1/vision/face?output=image", data={"image": (io.BytesIO(astronaut_png), "a.png")})
    assert r.mimetype == "image/jpeg"


def test_shipped_imagenet_labels_have_wordnet_ids():
    labels = read_labels(model_kinds.DATA_DIR / "imagenet_class_index.json")
    assert len(labels) == 1000 and labels[285].id == "n02124075" and labels[285].name == "Egyptian_cat"
    ids = [lb.id for lb in labels]
    assert ids == sorted(ids) and len(set(ids)) == 1000  # ImageNet's class order: WordNet ids sorted


def test_config_is_needed_only_where_the_format_keeps_its_graph_apart(tmp_path):
    spec = ModelSpec(name="ssd", kind="ssd", file="m", options={"config": "absent.prototxt"})
    assert model_kinds.config(spec, Path(tmp_path / "ssd.onnx")) is None
    with pytest.raises(ValueError, match="config file absent.prototxt not found"):
        model_kinds.config(spec, Path(tmp_path / "ssd.caffemodel"))


def test_bird_classifier_thumbnail_of_a_large_photo_fits_400_px(make_app, classifier_dir):
    client = make_app({"MYSITE_MODEL_DIR": str(classifier_dir)}).test_client()
    photo = cv2.imencode(".jpg", np.full((3000, 4000, 3), (0, 0, 255), np.uint8))[1].tobytes()  # red, 12 MP
    r = client.post("/", data={"bird_image": (io.BytesIO(photo), "p.jpg")}, content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and re.search(r'id="summary"[^>]*>Predicted: Egyptian_cat \(', html)
    thumb = re.search(r'id="thumbnail" src="data:image/jpeg;base64,([^"]+)"', html).group(1)
    small = cv2.imdecode(np.frombuffer(base64.b64decode(thumb), np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (300, 400, 3) and small[150, 200].tolist() == pytest.approx([0, 0, 254], abs=2)


def test_the_page_offers_catdetection_with_the_books_threshold(make_app, tmp_path):
    fixed_ssd(tmp_path / "ssd.onnx", np.zeros((1, 1, 1, 7)))
    html = make_app({"MYSITE_SSD_MODEL": str(tmp_path / "ssd.onnx")}).test_client().get(
        "/", headers={"Accept": "text/html"}).get_data(as_text=True)
    cat = re.search(r'data-task="/catdetection".*?</fieldset>', html, re.S).group(0)
    objects = re.search(r'data-task="/objectdetection".*?</fieldset>', html, re.S).group(0)
    assert 'name="min_confidence" type="number" value="0.1"' in cat
    assert 'name="min_confidence" type="number" value="0.5"' in objects


def test_deepstack_detection_names_objects_as_deepstack_does(make_app, tmp_path):
    # VOC ids: 14 motorbike, 20 tvmonitor, 15 person.
    detections = np.array([[0, 14, 0.9, 0.1, 0.1, 0.4, 0.4], [0, 20, 0.8, 0.5, 0.5, 0.9, 0.9],
                           [0, 15, 0.7, 0.0, 0.5, 0.2, 1.0]])
    fixed_ssd(tmp_path / "ssd.onnx", detections)
    client = make_app({"MYSITE_SSD_MODEL": str(tmp_path / "ssd.onnx")}).test_client()
    photo = cv2.imencode(".png", np.zeros((100, 200, 3), np.uint8))[1].tobytes()
    body = client.post("/v1/vision/detection", data={"image": (io.BytesIO(photo), "p.png")}).get_json()
    assert sorted(p["label"] for p in body["predictions"]) == ["motorcycle", "person", "tv"]
    # The site's own route keeps the model's labels.
    result = client.post("/objectdetection", data={"image": (io.BytesIO(photo), "p.png")}).get_json()["result"]
    assert sorted(d["label"] for d in result) == ["motorbike", "person", "tvmonitor"]


def test_deepstack_detection_keeps_what_deepstack_keeps_without_min_confidence(make_app, tmp_path):
    """DeepStack's server keeps detections from 0.40 when no min_confidence is sent (Frigate sends none)."""
    detections = np.array([[0, 8, 0.9, 0.1, 0.1, 0.4, 0.4], [0, 12, 0.45, 0.5, 0.5, 0.9, 0.9],
                           [0, 15, 0.35, 0.0, 0.5, 0.2, 1.0]])
    fixed_ssd(tmp_path / "ssd.onnx", detections)
    app = make_app({"MYSITE_SSD_MODEL": str(tmp_path / "ssd.onnx")})
    client = app.test_client()
    photo = cv2.imencode(".png", np.zeros((100, 200, 3), np.uint8))[1].tobytes()
    body = client.post("/v1/vision/detection", data={"image": (io.BytesIO(photo), "p.png")}).get_json()
    assert sorted(p["label"] for p in body["predictions"]) == ["cat", "dog"]
    sent = client.post("/v1/vision/detection", data={"image": (io.BytesIO(photo), "p.png"), "min_confidence": "0.3"})
    assert len(sent.get_json()["predictions"]) == 3
    # The site's own route keeps its own default.
    result = client.post("/objectdetection", data={"image": (io.BytesIO(photo), "p.png")}).get_json()["result"]
    assert [d["label"] for d in result] == ["cat"]
    doc = client.get("/openapi.json").get_json()
    (param,) = [p for p in doc["paths"]["/v1/vision/detection"]["post"]["parameters"] if p["name"] == "min_confidence"]
    assert param["schema"]["default"] == 0.4


@pytest.mark.parametrize("path", ["/v1/vision/face", "/v1/vision/detection"])
def test_a_file_that_is_no_image_is_a_400_on_deepstack_routes(make_app, tmp_path, path):
    """DeepStack answers 400 "invalid image file"; its clients know no 415 (deepstack-sdk: "Unknown error")."""
    fixed_ssd(tmp_path / "ssd.onnx", np.zeros((1, 1, 1, 7)))
    client = make_app({"MYSITE_SSD_MODEL": str(tmp_path / "ssd.onnx")}).test_client()
    r = client.post(path, data={"image": (io.BytesIO(b"%PDF-1.4 a document"), "x.jpg")})
    body = r.get_json()
    assert r.status_code == 400 and body["success"] is False and body["reason"] == "unsupported_media"
    assert "PDF" in body["error"]
    assert client.post("/detect", data={"image": (io.BytesIO(b"%PDF-1.4 a document"), "x.jpg")}).status_code == 415
    responses = client.get("/openapi.json").get_json()["paths"][path]["post"]["responses"]
    assert "415" not in responses and "unsupported media type" in responses["400"]["description"]
