"""/predict, /catdetection and /objectdetection on tiny real ONNX models the tests build.

The default models.toml entries are used as they are (their sizes, means,
scales, labels); only the model files are the tests' own.
"""

from __future__ import annotations

import dataclasses
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import caffe_colour_classifier, colour_classifier, fixed_ssd

from mysite import create_app
from mysite.vision.dnn import Preprocess
from mysite.web.state import current_registry

DATA = Path(__file__).parent / "data"
COLOURS = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0)}  # BGR
# [image_id, class_id, confidence, x1, y1, x2, y2]; VOC ids: 8 cat, 12 dog, 15 person.
DETECTIONS = np.array([
    [0, 8, 0.9, 0.1, 0.2, 0.5, 0.6],
    [0, 12, 0.7, -0.1, 0.5, 1.2, 1.1],  # sticks out of the image: clipped
    [0, 15, 0.3, 0.2, 0.2, 0.3, 0.3],  # below the default 0.5
    [0, 8, 0.6, 1.1, 1.1, 1.3, 1.4],  # wholly outside: dropped
])


def _png(bgr: tuple[int, int, int], size: tuple[int, int] = (90, 60)) -> bytes:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    image[:] = bgr
    return cv2.imencode(".png", image)[1].tobytes()


def _post(client, path: str, data: bytes, **form: str):
    return client.post(path, data={"image": (io.BytesIO(data), "x.png"), **form}, content_type="multipart/form-data")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """MYSITE_MODEL_DIR holding the tests' classifier under the default entry's file names."""
    d = tmp_path_factory.mktemp("models")
    colour_classifier(d / "squeezenet1.1-7.onnx")
    # Labels without WordNet ids (a JSON list): class_id is the index. rgb = true: R is channel 0.
    (d / "imagenet_class_index.json").write_text('["red", "green", "blue"]')
    fixed_ssd(d / "tiny_ssd.onnx", DETECTIONS)
    return d


@pytest.fixture(scope="module")
def client(model_dir):
    # The real ssd entry, pointed at an ONNX file as docs/models.md documents: it needs no Caffe prototxt.
    return create_app({"MYSITE_LOG_LEVEL": "WARNING", "MYSITE_MODEL_DIR": str(model_dir),
                       "MYSITE_SSD_MODEL": str(model_dir / "tiny_ssd.onnx")}).test_client()


@pytest.mark.parametrize("colour", ["red", "green", "blue"])
def test_predict_follows_the_colour(client, colour):
    r = _post(client, "/predict", _png(COLOURS[colour]))
    assert r.status_code == 200
    body = r.get_json()
    assert body["success"] is True and body["status"] == "ok"
    assert body["class_name"] == colour and body["predictions"][0]["label"] == colour
    assert [p["probability"] for p in body["predictions"]] == sorted((p["probability"] for p in body["predictions"]),
                                                                     reverse=True)
    assert sum(p["probability"] for p in body["predictions"]) == pytest.approx(1.0, abs=1e-4)  # softmax of logits
    assert body["class_id"] == ["red", "green", "blue"].index(colour)


def test_predict_top(client):
    body = _post(client, "/predict", _png(COLOURS["red"]), top="2").get_json()
    assert [p["label"] for p in body["predictions"]] == ["red", body["predictions"][1]["label"]]
    assert len(body["predictions"]) == 2
    assert _post(client, "/predict", _png(COLOURS["red"]), top="0").status_code == 400


def test_catdetection_keeps_only_cats_scaled_to_the_image(client):
    with open(DATA / "cat.jpg", "rb") as f:
        photo = f.read()  # 1000 x 1334
    body = _post(client, "/catdetection", photo).get_json()
    assert body == {"status": "ok", "result": [{"box": [100, 267, 500, 800], "label": "cat", "confidence": 0.9}]}
    # Asking /catdetection for dogs changes nothing: the endpoint pins the label.
    assert _post(client, "/catdetection", photo, labels="dog").get_json() == body


def test_objectdetection_every_class_filters_and_clips(client):
    photo = _png((128, 128, 128), size=(200, 100))
    result = _post(client, "/objectdetection", photo).get_json()["result"]
    assert [(d["label"], d["box"]) for d in result] == [("cat", [20, 20, 100, 60]), ("dog", [0, 50, 200, 100])]
    low = _post(client, "/objectdetection", photo, min_confidence="0.1").get_json()["result"]
    assert {d["label"] for d in low} == {"cat", "dog", "person"}
    only = _post(client, "/objectdetection", photo, labels="dog, person", min_confidence="0.1").get_json()["result"]
    assert [d["label"] for d in only] == ["person", "dog"]  # reading order: top to bottom
    bad = _post(client, "/objectdetection", photo, labels="unicorn")
    assert bad.status_code == 400 and "unicorn" in bad.get_json()["message"]
    assert _post(client, "/objectdetection", photo, min_confidence="2").status_code == 400


def test_new_endpoints_are_listed_with_their_models(client):
    info = client.get("/", headers={"Accept": "application/json"}).get_json()
    paths = {r["path"] for r in info["routes"]}
    assert {"/catdetection", "/objectdetection", "/predict", "/digits", "/detect"} <= paths
    models = {m["name"]: m for m in info["models"]}
    assert models["classifier"]["loaded"] and models["ssd"]["loaded"] and models["digits"]["loaded"]


def test_one_model_hammered_from_many_threads(client):
    """Concurrent requests on one classifier: each must get its own colour back."""
    app = client.application
    model = current_registry(app).get("classifier")
    images = {c: np.full((50, 70, 3), bgr, np.uint8) for c, bgr in COLOURS.items()}

    nets = set()

    def classify(i: int) -> bool:
        colour = list(COLOURS)[i % 3]
        nets.add(id(model.nets.net()))
        return model.run(images[colour], top=1)["class_name"] == colour

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(classify, range(400)))
        assert len(nets) > 1  # each worker thread ran its own cv2.dnn.Net
    assert all(results)


def test_default_entries_without_files_answer_503_and_the_rest_works(tmp_path):
    client = create_app({"MYSITE_LOG_LEVEL": "CRITICAL", "MYSITE_MODEL_DIR": str(tmp_path)}).test_client()
    for path, name in (("/predict", "classifier"), ("/catdetection", "ssd"), ("/objectdetection", "ssd")):
        r = _post(client, path, _png(COLOURS["red"]))
        assert r.status_code == 503
        assert f"python -m mysite.models fetch {name}" in r.get_json()["message"]
    assert _post(client, "/detect", _png(COLOURS["red"])).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_labels_that_do_not_match_the_model_are_refused_at_load(tmp_path):
    colour_classifier(tmp_path / "squeezenet1.1-7.onnx")
    (tmp_path / "imagenet_class_index.json").write_text('["one", "two"]')
    app = create_app({"MYSITE_LOG_LEVEL": "CRITICAL", "MYSITE_MODEL_DIR": str(tmp_path)})
    entry = current_registry(app).entries["classifier"]
    assert not entry.loaded and "3 scores" in entry.error and "2 labels" in entry.error


def test_preprocess_applies_mean_scale_std_in_channel_order():
    image = np.zeros((4, 6, 3), np.uint8)
    image[:] = (10, 20, 30)  # B, G, R
    prep = Preprocess(size=(3, 2), scale=0.5, mean=(30, 20, 10), std=(2, 4, 5), rgb=True)
    blob = prep.blob(image)
    assert blob.shape == (1, 3, 2, 3)
    # RGB order: R=30, G=20, B=10 -> (30-30)*0.5/2, (20-20)*0.5/4, (10-10)*0.5/5
    assert blob[0, :, 0, 0].tolist() == [0, 0, 0]
    bgr = Preprocess(size=(3, 2), scale=0.5, mean=(0, 0, 0), std=(1, 2, 5)).blob(image)
    assert bgr[0, :, 1, 2].tolist() == pytest.approx([5, 5, 3])


def test_softmax_output_is_not_softmaxed_again(tmp_path):
    from mysite.vision.classify import Classifier, Label

    model = Classifier(colour_classifier(tmp_path / "c.onnx", size=8, softmax=True), None,
                       Preprocess(size=(8, 8), scale=1 / 255), [Label(i, n) for i, n in enumerate("bgr")])
    top = model.run(np.full((8, 8, 3), (255, 0, 0), np.uint8), top=3)["predictions"]
    # Softmax of logits (10, 0, 0) once: 0.99991; twice it would be about 0.58.
    assert top[0]["label"] == "b" and top[0]["probability"] > 0.999


def test_caffe_classifier_with_its_config_beside_it(tmp_path):
    """The Caffe path: model + prototxt found beside it, BGR order, mean and scale from the entry."""
    from mysite.models import kinds as model_kinds
    from mysite.models.schema import ModelSpec

    path = caffe_colour_classifier(tmp_path)
    spec = ModelSpec(name="colours", kind="classify", file=path.name, options={
        "config": "colour.prototxt", "size": [16, 16], "mean": [127.5, 127.5, 127.5], "scale": 0.007843,
        "labels": ["blue", "green", "red"],  # rgb = false: channel 0 is blue
    })
    model = model_kinds.classify(spec, path)
    for colour, bgr in COLOURS.items():
        answer = model.run(np.full((30, 40, 3), bgr, np.uint8), top=3)
        assert answer["class_name"] == colour
        assert sum(p["probability"] for p in answer["predictions"]) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="config file missing.prototxt not found"):
        model_kinds.classify(dataclasses.replace(spec, options={**spec.options, "config": "missing.prototxt"}), path)
