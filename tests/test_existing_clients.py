"""Every client already out there, as written, against the Procfile's gunicorn on loopback.

Each client below is rebuilt from its own text (the published examples this site is compatible with,
the book's Keras client, the ``deepstack-python`` package): the scripts as printed, only the
host and port changed; the curl lines run with the real curl. The classifier and the SSD are
the tests' tiny fixed-weight ONNX models (``tiny_models.py``) under the default models.toml
entries, so the answers are known: a red picture is ImageNet class 285, Egyptian_cat.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from live_server import LiveServer, start_gunicorn
from tests_helpers import require
from tiny_models import colour_classifier, fixed_ssd

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
RED, GREEN = (0, 0, 255), (0, 255, 0)  # BGR
# [image_id, class_id, confidence, x1, y1, x2, y2]; VOC ids: 8 cat, 12 dog, 15 person.
DETECTIONS = np.array([
    [0, 8, 0.9, 0.1, 0.2, 0.5, 0.6],
    [0, 12, 0.7, 0.5, 0.5, 1.0, 1.0],
    [0, 8, 0.3, 0.6, 0.1, 0.9, 0.4],  # a cat the book's 0.1 keeps and a 0.5 threshold would not
    [0, 15, 0.2, 0.2, 0.2, 0.3, 0.3],  # below deepstack-python's default 0.45
])


def _png(bgr: tuple[int, int, int], size: tuple[int, int] = (120, 90)) -> bytes:
    image = np.full((size[1], size[0], 3), bgr, np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def _digit_png(label: int) -> bytes:
    """A held-out MNIST digit, enlarged to 275x275 and made dark ink on white, as the MNIST Flask API's self2.png."""
    sheet = cv2.imread(str(DATA / "mnist_heldout.png"), cv2.IMREAD_GRAYSCALE)
    labels = json.loads((DATA / "mnist_heldout.json").read_text())["labels"]
    i = labels.index(label)
    cell = sheet[(i // 20) * 28:(i // 20 + 1) * 28, (i % 20) * 28:(i % 20 + 1) * 28]
    return cv2.imencode(".png", 255 - cv2.resize(cell, (275, 275), interpolation=cv2.INTER_LINEAR))[1].tobytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """gunicorn as the Procfile runs it; the classifier's labels are the shipped ImageNet class index."""
    models = tmp_path_factory.mktemp("models")
    # Red drives class 285 (n02124075 Egyptian_cat), green 281 (tabby), blue 0 (tench).
    colour_classifier(models / "squeezenet1.1-7.onnx", classes=(285, 281, 0), outputs=1000)
    fixed_ssd(models / "tiny_ssd.onnx", DETECTIONS)
    env = {"MYSITE_MODEL_DIR": str(models), "MYSITE_SSD_MODEL": str(models / "tiny_ssd.onnx"),
           "MYSITE_MAX_UPLOAD_MB": "1"}
    with start_gunicorn(env, log_dir=tmp_path_factory.mktemp("log")) as live:
        yield live


def _curl(*args: str) -> str:
    require("curl")
    return subprocess.run([str(shutil.which("curl")), "-s", *args], capture_output=True, text=True, timeout=30, check=True).stdout


# --- The MNIST Flask API: the MNIST app's curl line, its canvas body and its jQuery call -------------------

def test_mnist_api_curl_line_gets_the_bare_digit(server, tmp_path):
    for label in (2, 7):
        path = tmp_path / f"digit{label}.png"
        path.write_bytes(_digit_png(label))
        # curl -X POST -F img=@"path_to_file" http://localhost/predict/
        assert _curl("-X", "POST", "-F", f"img=@{path}", f"{server.url}/predict/") == str(label)


def test_mnist_api_data_url_body_as_a_canvas_sends_it(server):
    data_url = "data:image/png;base64," + base64.b64encode(_digit_png(7)).decode()
    # $.ajax({type: "POST", url: "/predict/", data: canvas.toDataURL()}): a form-urlencoded string body.
    r = requests.post(f"{server.url}/predict/", data=data_url,
                      headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain") and r.text == "7"
    r = requests.post(f"{server.url}/predict/", data=data_url.encode())  # no Content-Type at all
    assert r.text == "7"


def test_mnist_api_errors_are_readable_and_predict_without_slash_is_another_route(server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a digit")
    out = _curl("-X", "POST", "-F", f"img=@{notes}", f"{server.url}/predict/")
    body = json.loads(out)
    assert body["status"] == "unsupported media type" and "received 11 bytes of text" in body["message"]
    blank = tmp_path / "blank.png"
    blank.write_bytes(_png((255, 255, 255)))
    assert "no digit found" in json.loads(_curl("-F", f"img=@{blank}", f"{server.url}/predict/"))["message"]
    # /predict (no slash) is the ImageNet classifier: a distinct rule, never redirected.
    r = requests.post(f"{server.url}/predict", files={"image": _png(RED)}, allow_redirects=False)
    assert r.status_code == 200 and r.json()["class_name"] == "Egyptian_cat"


# --- The AIDemo base64 client: the face-recognition demo's Client.py, as printed ------------------------------

AIDEMO_CLIENT = '''
# Client.py
import requests
import base64
import time

url = "{url}/predictor"

file_path = './111.jpg'



file = open(file_path, 'rb')

encode = base64.b64encode(file.read())


#r = requests.post(url, data=encode)
for i in range(10):# 针对流式数据传输的多次尝试，以防调用失败
    try:
        r = requests.post(url, data=encode)
    except Exception as e:
        if i >= 9:
            do_some_log()
        else:
            time.sleep(0.5)
    else:
        time.sleep(0.1)
        break
result = r.content

img = base64.b64decode(result)
file = open('test3.jpg', 'wb')
file.write(img)
file.close()
'''


def test_aidemo_client_writes_the_photo_with_faces_drawn(server, tmp_path, group_jpg):
    (tmp_path / "111.jpg").write_bytes(group_jpg)
    (tmp_path / "Client.py").write_text(AIDEMO_CLIENT.format(url=server.url), encoding="utf-8")
    subprocess.run([sys.executable, "Client.py"], cwd=tmp_path, check=True, timeout=60)
    drawn = cv2.imread(str(tmp_path / "test3.jpg"))
    assert drawn is not None and drawn.shape == (cv2.imread(str(tmp_path / "111.jpg")).shape)
    # The book's first face, [151, 29, 193, 71]: its left edge is box-yellow, its centre is not.
    b, g, r = (int(v) for v in drawn[50, 151])
    assert r > 200 and g > 200 and b < 90
    b, g, r = (int(v) for v in drawn[50, 172])
    assert not (r > 200 and g > 200 and b < 90)
    # JSON stays one parameter away on the same route.
    j = requests.post(f"{server.url}/predictor?output=json", data=base64.b64encode(group_jpg)).json()
    assert len(j["result"]) == 17


# --- The book's Keras client (request_keras_rest_api.py) ---------------------------------------

KERAS_CLIENT = '''
import requests

KERAS_REST_API_URL = "{url}/predict"
IMAGE_PATH = "{image}"

# Load the image and construct the payload:
image = open(IMAGE_PATH, "rb").read()
payload = {{"image": image}}

# Submit the POST request:
r = requests.post(KERAS_REST_API_URL, files=payload).json()

# Show the results:
if r["success"]:
    # Iterate over the predictions
    for (i, result) in enumerate(r["predictions"]):
        # Print the results:
        print("{{}}. {{}}: {{:.4f}}".format(i + 1, result["label"], result["probability"]))
else:
    print("Request failed")
'''


def test_keras_client_prints_predictions_or_its_own_failure_branch(server, tmp_path):
    car = tmp_path / "car.jpg"
    car.write_bytes(_png(GREEN))
    (tmp_path / "keras.py").write_text(KERAS_CLIENT.format(url=server.url, image=car))
    out = subprocess.run([sys.executable, "keras.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 5 and lines[0].startswith("1. tabby: ") and float(lines[0].split(": ")[1]) > 0.99
    for payload in (b"%PDF-1.4 not a picture", b""):  # 415, 400
        car.write_bytes(payload)
        out = subprocess.run([sys.executable, "keras.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert (out.returncode, out.stdout) == (0, "Request failed\n"), out.stderr
    r = requests.put(f"{server.url}/predict")
    assert r.status_code == 405 and r.json()["success"] is False


# --- The PyTorch tutorial: the PyTorch tutorial's requests call ---------------------------------------------

def test_pytorch_tutorial_gets_the_wordnet_id_and_underscored_name(server, tmp_path):
    cat = tmp_path / "cat.jpg"
    cat.write_bytes(_png(RED))  # the tiny classifier reads colour: red is class 285
    resp = requests.post(f"{server.url}/predict", files={"file": open(cat, "rb")})
    body = resp.json()
    assert {"class_id": body["class_id"], "class_name": body["class_name"]} == {
        "class_id": "n02124075", "class_name": "Egyptian_cat"}
    assert body["predictions"][0] == {"label": "Egyptian_cat", "probability": body["predictions"][0]["probability"],
                                      "class_id": "n02124075"}


# --- The bird classifier: the bird classifier's upload form -----------------------------------------------

def _page(r: requests.Response) -> dict[str, str]:
    def grab(pattern: str) -> str:
        m = re.search(pattern, r.text)
        return m.group(1) if m else ""
    return {"error": grab(r'id="error"[^>]*>([^<]*)<'), "summary": grab(r'id="summary"[^>]*>([^<]*)<'),
            "thumbnail": grab(r'id="thumbnail" src="(data:image/jpeg;base64,[^"]{20})')}


def test_bird_classifier_form_gets_a_page_with_label_confidence_and_thumbnail(server):
    photo = cv2.imencode(".jpg", np.full((600, 800, 3), RED, np.uint8))[1].tobytes()
    r = requests.post(f"{server.url}/", files={"bird_image": ("bird.jpg", photo)}, data={"submit": "Process"})
    page = _page(r)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert page["error"] == "" and page["summary"].startswith("Predicted: Egyptian_cat (")
    assert page["summary"].endswith("% confidence)") and page["thumbnail"]
    thumb = re.search(r'id="thumbnail" src="data:image/jpeg;base64,([^"]+)"', r.text).group(1)
    small = cv2.imdecode(np.frombuffer(base64.b64decode(thumb), np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (300, 400, 3)  # fits 400x400, as the bird classifier's thumbnail


@pytest.mark.parametrize(("files", "code", "message"), [
    ({}, 400, "No file uploaded."),
    ({"bird_image": ("", b"")}, 400, "No file selected to upload."),
    ({"bird_image": ("bird.txt", b"a note")}, 415, "The file type you selected: &#39;.txt&#39; is not supported."),
    ({"bird_image": ("big.jpg", b"\xff\xd8\xff" + b"\0" * 1_500_000)}, 413,
     "Uploaded file too large: the limit is 1 MB."),
])
def test_bird_classifier_form_messages_are_shown_on_the_page(server, files, code, message):
    r = requests.post(f"{server.url}/", files=files or None, data={"submit": "Process"})
    assert r.status_code == code and r.headers["Content-Type"].startswith("text/html")
    assert message in _page(r)["error"]


def test_bird_classifier_form_without_a_classifier_finds_faces(make_app, group_jpg):
    client = make_app({"MYSITE_CLASSIFIER_MODEL": "/nonexistent/model.onnx"}).test_client()
    r = client.post("/", data={"bird_image": (io.BytesIO(group_jpg), "group.jpg")},
                    content_type="multipart/form-data")
    assert r.status_code == 200
    assert re.search(r'id="summary"[^>]*>17 found<', r.get_data(as_text=True))


# --- DeepStack / CodeProject.AI: the deepstack-python client itself --------------------------------

def test_deepstack_python_face_and_object_clients(server, group_jpg):
    from deepstack.core import DeepstackException, DeepstackFace, DeepstackObject

    port = int(server.url.rsplit(":", 1)[1])
    faces = DeepstackFace(ip="127.0.0.1", port=port).detect(group_jpg)
    assert len(faces) == 17
    assert all(set(f) == {"x_min", "y_min", "x_max", "y_max", "label", "confidence"} for f in faces)
    assert {"x_min": 151, "y_min": 29, "x_max": 193, "y_max": 71, "label": "face", "confidence": 1.0} in faces
    photo = _png((128, 128, 128), size=(200, 100))
    objects = DeepstackObject(ip="127.0.0.1", port=port).detect(photo)  # min_confidence 0.45, the client's default
    assert sorted((o["label"], o["confidence"]) for o in objects) == [("cat", 0.9), ("dog", 0.7)]
    cat = next(o for o in objects if o["confidence"] == 0.9)
    assert [cat["x_min"], cat["y_min"], cat["x_max"], cat["y_max"]] == [20, 20, 100, 60]
    low = DeepstackObject(ip="127.0.0.1", port=port, min_confidence=0.1).detect(photo)
    assert len(low) == 4
    with pytest.raises(DeepstackException, match="status code: 400"):  # as DeepStack's server: no 415
        DeepstackObject(ip="127.0.0.1", port=port).detect(b"not an image at all")


def test_deepstack_answers_and_errors_on_the_wire(server, group_jpg):
    r = requests.post(f"{server.url}/v1/vision/face", files={"image": group_jpg}, data={"min_confidence": "0.6"})
    body = r.json()
    assert r.status_code == 200 and body["success"] is True and len(body["predictions"]) == 17
    assert isinstance(body["duration"], float)
    r = requests.post(f"{server.url}/v1/vision/detection", files={"image": b"GIF89a broken"})
    body = r.json()
    assert r.status_code == 422 and body["success"] is False and body["error"] == body["message"]
    r = requests.post(f"{server.url}/v1/vision/detection")
    assert r.status_code == 400 and r.json()["success"] is False and "image" in r.json()["error"]


# --- The book's cat client and SSD from ONNX ---------------------------------------------------

def test_catdetection_keeps_the_books_threshold_and_the_ssd_loaded_from_onnx(server):
    info = requests.get(f"{server.url}/", headers={"Accept": "application/json"}).json()
    assert next(m for m in info["models"] if m["name"] == "ssd")["loaded"]
    photo = _png((128, 128, 128), size=(200, 100))
    cats = requests.post(f"{server.url}/catdetection", files={"image": photo}).json()["result"]
    assert sorted(d["confidence"] for d in cats) == [0.3, 0.9]
    strict = requests.post(f"{server.url}/catdetection", files={"image": photo}, data={"min_confidence": "0.5"})
    assert [d["confidence"] for d in strict.json()["result"]] == [0.9]
