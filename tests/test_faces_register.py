"""A registration's photos are one request's work: summed against its budget, under one work deadline, and
refused before any of it when the store is full. With the real face model (a skip without it)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import requests
from live_server import start_gunicorn
from tests_helpers import face_model_or_skip, read

from mysite import pipeline


@pytest.fixture()
def executed(monkeypatch) -> list[int]:
    """One entry per image decoded and run by the CV work (in-process: the test client's runner)."""
    calls: list[int] = []
    run = pipeline.execute

    def counting(*args, **kwargs):
        calls.append(1)
        return run(*args, **kwargs)

    monkeypatch.setattr(pipeline, "execute", counting)
    return calls


def _files(*photos: bytes) -> dict:
    return {f"image{i}": (io.BytesIO(p), f"p{i}.jpg") for i, p in enumerate(photos)}


def test_a_registrations_photos_share_the_requests_pixels(make_app, tmp_path, executed) -> None:
    # 512x512 each: one fits a limit of 0.7 megapixels, three together do not.
    client = make_app({"MYSITE_FACEID_MODEL": str(face_model_or_skip()), "MYSITE_MAX_PIXELS": "700000",
                       "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'f.sqlite3'}"}).test_client()
    photo = read("astronaut.png")
    r = client.post("/faces/A", data=_files(photo, photo, photo))
    assert r.status_code == 413 and "3 images hold 0.8 megapixels together" in r.get_json()["message"]
    assert executed == [] and client.get("/faces").get_json()["faces"] == []
    r = client.post("/v1/vision/face/register", data={"userid": "A", **_files(photo, photo, photo)})
    assert r.status_code == 413 and r.get_json()["success"] is False and executed == []
    assert client.post("/faces/A", data=_files(photo)).status_code == 200 and len(executed) == 1


def test_a_full_store_refuses_a_registration_before_any_work(make_app, tmp_path, executed) -> None:
    client = make_app({"MYSITE_FACEID_MODEL": str(face_model_or_skip()), "MYSITE_FACES_MAX": "2",
                       "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'f.sqlite3'}"}).test_client()
    photo = read("astronaut.png")
    assert client.post("/faces/A", data=_files(photo)).status_code == 200 and len(executed) == 1
    for style in ("/faces/B", "/v1/vision/face/register"):
        r = client.post(style, data={"userid": "B", **_files(photo, photo)})
        assert r.status_code == 507 and "MYSITE_FACES_MAX" in r.get_data(as_text=True)
    assert len(executed) == 1
    assert client.post("/faces/B", data=_files(photo)).status_code == 200 and len(executed) == 2


def _parts(*photos: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(f"image{i}", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)]


def _photo_2_5_mp() -> bytes:
    face = cv2.imdecode(np.frombuffer(read("astronaut.png"), np.uint8), cv2.IMREAD_COLOR)
    big = cv2.resize(face, (1580, 1580), interpolation=cv2.INTER_LINEAR)
    return cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes()


@pytest.mark.slow
def test_a_registrations_photos_share_one_work_deadline(tmp_path) -> None:
    # Sixteen photos of 2.5 megapixels: within the request's pixels and work, each a fraction of a second,
    # together more than the second the deadline gives. As sixteen jobs, each had a deadline of its own.
    env = {"MYSITE_FACEID_MODEL": str(face_model_or_skip()), "MYSITE_WORK_DEADLINE": "1",
           "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'f.sqlite3'}"}
    photo = _photo_2_5_mp()
    with start_gunicorn(env, log_dir=tmp_path) as server:
        one = requests.post(server.url + "/faces/one", files=_parts(photo), timeout=30)
        r = requests.post(server.url + "/faces/sixteen", files=_parts(*[photo] * 16), timeout=60)
        listed = requests.get(server.url + "/faces", timeout=10).json()["faces"]
    assert one.status_code == 200, one.text
    assert r.status_code == 503 and r.json()["reason"] == "timeout", (r.status_code, r.text)
    assert listed == [{"name": "one", "count": 1}]


def test_photos_sent_as_text_fields_are_each_taken(make_app, tmp_path, executed) -> None:
    # Two base64 text fields registered the first photo and dropped the second unchecked, as did a text
    # field beside a file: "added": 1 where the docs say every photo or none.
    import base64

    client = make_app({"MYSITE_FACEID_MODEL": str(face_model_or_skip()),
                       "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'f.sqlite3'}"}).test_client()
    photo = read("astronaut.png")
    text = base64.b64encode(photo).decode()
    forms = {"two": {"image": [text, text]}, "beside": {"img": text, "image": (io.BytesIO(photo), "a.png")},
             "car": {"image": [text, base64.b64encode(read("car.jpg")).decode()]}}
    for name, form in forms.items():
        r = client.post(f"/faces/{name}", data=form, content_type="multipart/form-data")
        if name == "car":  # a second photo without a face refuses the whole registration
            assert r.status_code == 422 and "image 2" in r.get_json()["message"], r.get_json()
        else:
            assert r.status_code == 200 and r.get_json()["added"] == 2, r.get_json()
    assert client.get("/faces").get_json()["faces"] == [{"name": "beside", "count": 2}, {"name": "two", "count": 2}]
