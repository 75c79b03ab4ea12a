"""/digits on real MNIST digits the model never trained on, sent every way the MNIST seed sends them."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from loopback import serve

from mysite import create_app
from mysite.errors import Unprocessable
from mysite.models.kinds import DATA_DIR
from mysite.vision.digits import DigitReader, to_mnist

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def heldout() -> tuple[list[np.ndarray], list[int]]:
    """300 held-out MNIST test digits (tests/data/mnist_heldout.json says where from)."""
    sheet = cv2.imread(str(DATA / "mnist_heldout.png"), cv2.IMREAD_GRAYSCALE)
    labels = json.loads((DATA / "mnist_heldout.json").read_text())["labels"]
    digits = [sheet[(k // 20) * 28:(k // 20 + 1) * 28, (k % 20) * 28:(k % 20 + 1) * 28] for k in range(len(labels))]
    return digits, labels


@pytest.fixture(scope="module")
def client():
    return create_app({"MYSITE_LOG_LEVEL": "WARNING"}).test_client()


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def test_shipped_model_is_small_and_reads_heldout_digits(heldout):
    path = DATA_DIR / "mnist_cnn.onnx"
    assert path.stat().st_size <= 1024 * 1024
    reader = DigitReader(path)
    digits, labels = heldout
    got = [reader.run(d)["digit"] for d in digits]
    accuracy = np.mean(np.array(got) == np.array(labels))
    assert sorted(set(labels)) == list(range(10))
    assert accuracy >= 0.97, f"accuracy {accuracy:.3f}"


def test_multipart_img_field_as_the_seed_client_sends(client, heldout):
    digits, labels = heldout
    right = 0
    for d, label in list(zip(digits, labels))[::10]:
        r = client.post("/digits", data={"img": (io.BytesIO(_png(d)), "digit.png")}, content_type="multipart/form-data")
        assert r.status_code == 200
        body = r.get_json()
        assert body["status"] == "ok"
        assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-3
        assert body["probability"] == max(body["probabilities"])
        right += body["digit"] == label
    assert right >= 29  # of 30


def test_canvas_data_url_body_dark_ink_on_light(client, heldout):
    """A canvas drawing: big, black strokes on white, posted as a raw data-URL body."""
    digits, labels = heldout
    right = 0
    for d, label in list(zip(digits, labels))[5::30]:
        canvas = 255 - cv2.resize(d, (280, 280), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(canvas, 60, 20, 100, 40, cv2.BORDER_CONSTANT, value=255)  # off-centre
        body = b"data:image/png;base64," + base64.b64encode(_png(cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)))
        r = client.post("/digits", data=body, content_type="application/x-www-form-urlencoded")
        assert r.status_code == 200, r.get_json()
        right += r.get_json()["digit"] == label
    assert right >= 9  # of 10


def test_transparent_canvas_with_black_ink(client, heldout):
    """A canvas left transparent (toDataURL of strokes only): black ink on alpha 0 over black."""
    digits, labels = heldout
    right = 0
    for d, label in list(zip(digits, labels))[7::30]:
        ink = cv2.resize(d, (280, 280), interpolation=cv2.INTER_CUBIC)
        rgba = np.zeros((280, 280, 4), np.uint8)
        rgba[:, :, 3] = ink  # colour stays black everywhere; only the alpha says where the ink is
        body = b"data:image/png;base64," + base64.b64encode(_png(rgba))
        r = client.post("/digits", data=body)
        assert r.status_code == 200, r.get_json()
        right += r.get_json()["digit"] == label
    assert right >= 9  # of 10


def test_photo_of_paper_with_dust(client, heldout):
    """Dark ink on grey paper with dark specks around it, sent as a JPEG: the specks must not widen the crop."""
    digits, labels = heldout
    rng = np.random.default_rng(7)
    right = 0
    for d, label in list(zip(digits, labels))[2::10]:
        page = np.full((300, 300), 235, np.uint8)
        page[60:200, 80:220] = 255 - cv2.resize(d, (140, 140), interpolation=cv2.INTER_CUBIC)
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 300, 2))
            cv2.circle(page, (x, y), 2, 30, -1)
        jpeg = cv2.imencode(".jpg", page, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
        r = client.post("/digits", data={"image": (io.BytesIO(jpeg), "page.jpg")}, content_type="multipart/form-data")
        right += r.get_json()["digit"] == label
    assert right >= 29  # of 30; without removing the specks, 11 of 30 were read right


def test_to_mnist_inverts_crops_and_centres():
    page = np.full((200, 300), 230, np.uint8)
    cv2.line(page, (40, 30), (40, 150), 20, 9)  # a dark "1" near the left edge of light paper
    out = to_mnist(page)
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.max() == pytest.approx(1.0, abs=0.05) and out[0].max() == 0  # white ink, black border
    m = cv2.moments(out)
    assert m["m10"] / m["m00"] == pytest.approx(14, abs=0.6)
    assert m["m01"] / m["m00"] == pytest.approx(14, abs=0.6)
    ys, xs = np.nonzero(out > 0.1)
    assert ys.max() - ys.min() + 1 in (20, 21)  # the tall side fills MNIST's 20-pixel box


def test_blank_image_is_422(client):
    with pytest.raises(Unprocessable):
        to_mnist(np.full((50, 50), 255, np.uint8))
    r = client.post("/digits", data={"img": (io.BytesIO(_png(np.zeros((40, 40), np.uint8))), "blank.png")},
                    content_type="multipart/form-data")
    assert r.status_code == 422
    assert "no digit" in r.get_json()["message"]


def test_digits_keeps_the_foundation_errors(client):
    assert client.put("/digits").status_code == 405
    assert client.post("/digits").status_code == 400
    r = client.post("/digits", data={"img": (io.BytesIO(b"%PDF-1.4 not an image"), "x.pdf")}, content_type="multipart/form-data")
    assert r.status_code == 415


def test_digit_by_url_from_a_loopback_server(heldout):
    """The usual inputs work too: GET /digits?url=... (loopback allowed explicitly, as in the fetch tests)."""
    digits, labels = heldout
    app = create_app({"MYSITE_LOG_LEVEL": "WARNING", "MYSITE_URL_ALLOW_NETWORKS": "127.0.0.0/8"})
    with serve({"/digit.png": (200, {"Content-Type": "image/png"}, _png(digits[123]))}) as (base, seen):
        r = app.test_client().get(f"/digits?url={base}/digit.png")
    assert r.status_code == 200 and len(seen) == 1
    assert r.get_json()["digit"] == labels[123]
