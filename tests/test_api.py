"""Every image endpoint, every input form and every error path, through Flask's test client."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from tests_helpers import BOOK_GROUP_BOXES, boxes_of, multipart

from mysite.web.state import current_registry

# -- the book's answers ---------------------------------------------------------------------------

def test_group_photo_gives_the_books_17_faces(client, group_jpg):
    r = client.post("/detect", data=multipart("image", group_jpg))
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert body["status"] == "ok"
    assert all(set(d) == {"box"} for d in body["result"])  # the book's shape, nothing added
    ours = sorted(boxes_of(body))
    # Exactly what the book's code computes with this OpenCV ...
    gray = cv2.cvtColor(cv2.imdecode(np.frombuffer(group_jpg, np.uint8), -1), cv2.COLOR_BGR2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt.xml")
    rects = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(25, 25))
    assert ours == sorted([[x, y, x + w, y + h] for x, y, w, h in np.asarray(rects).tolist()])
    # ... and, within a pixel of rounding between OpenCV versions, what the book printed in 2019.
    assert len(ours) == len(BOOK_GROUP_BOXES) == 17
    for mine, book in zip(ours, BOOK_GROUP_BOXES):
        assert np.abs(np.subtract(mine, book)).max() <= 2, (mine, book)


@pytest.mark.slow
def test_boxes_come_in_a_stable_reading_order(client, group_jpg):
    answers = [client.post("/detect", data=multipart("image", group_jpg)).get_json()["result"] for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    tops = [d["box"][1] for d in answers[0]]
    assert tops == sorted(tops)


def test_cat_photo_gives_one_cat_face(client, cat_jpg):
    body = client.post("/catfacedetection", data=multipart("image", cat_jpg)).get_json()
    assert body["status"] == "ok" and len(body["result"]) == 1
    x1, y1, x2, y2 = body["result"][0]["box"]
    assert abs(x1 - 256) <= 10 and abs(y1 - 504) <= 10 and abs(x2 - 498) <= 10 and abs(y2 - 746) <= 10


@pytest.mark.parametrize("path", ["/detect", "/catfacedetection"])
def test_car_photo_has_no_face_of_either_kind(client, car_jpg, path):
    body = client.post(path, data=multipart("image", car_jpg)).get_json()
    assert body == {"status": "ok", "result": []}


def test_astronaut_face(client, astronaut_png):
    body = client.post("/detect", data=multipart("image", astronaut_png, "a.png")).get_json()
    assert len(body["result"]) == 1
    assert np.allclose(body["result"][0]["box"], [177, 67, 272, 162], atol=8)


# -- every input form -----------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["image", "file", "img"])
def test_multipart_fields_used_by_the_seed_clients(client, group_jpg, field):
    r = client.post("/detect", data=multipart(field, group_jpg))
    assert r.status_code == 200 and len(r.get_json()["result"]) == 17


def test_raw_image_body(client, group_jpg):
    r = client.post("/detect", data=group_jpg, content_type="image/jpeg")
    assert len(r.get_json()["result"]) == 17


def test_raw_body_without_content_type(client, group_jpg):
    r = client.post("/detect", data=group_jpg)
    assert len(r.get_json()["result"]) == 17


@pytest.mark.parametrize("wrap", [
    lambda b: base64.b64encode(b),                                   # seed 003's client
    lambda b: base64.encodebytes(b),                                 # MIME: wrapped in lines
    lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),              # URL-safe, unpadded
    lambda b: b"data:image/jpeg;base64," + base64.b64encode(b),      # a canvas's toDataURL (seed 002)
])
def test_base64_and_data_url_bodies(client, group_jpg, wrap):
    r = client.post("/detect", data=wrap(group_jpg))
    assert r.status_code == 200 and len(r.get_json()["result"]) == 17


def test_base64_sent_as_form_urlencoded_keeps_its_plus_signs(client, group_jpg):
    # curl -d @file.b64 sends application/x-www-form-urlencoded; '+' must not turn into spaces.
    data = base64.b64encode(group_jpg)
    assert b"+" in data
    r = client.post("/detect", data=data, content_type="application/x-www-form-urlencoded")
    assert len(r.get_json()["result"]) == 17


def test_json_body(client, group_jpg):
    r = client.post("/detect", json={"image": base64.b64encode(group_jpg).decode()})
    assert len(r.get_json()["result"]) == 17


def test_data_url_in_a_form_text_field(client, group_jpg):
    url = "data:image/jpeg;base64," + base64.b64encode(group_jpg).decode()
    r = client.post("/detect", data={"img": url}, content_type="multipart/form-data")
    assert len(r.get_json()["result"]) == 17


# -- parameters -----------------------------------------------------------------------------------

def test_parameters_change_the_answer(client, group_jpg):
    strict = client.post("/detect?min_size=60", data=multipart("image", group_jpg)).get_json()["result"]
    assert strict == []  # every face in the photo is smaller than 60 px
    loose = client.post("/detect?min_neighbors=1", data=multipart("image", group_jpg)).get_json()["result"]
    assert len(loose) >= 17


def test_parameters_as_form_fields(client, group_jpg):
    data = multipart("image", group_jpg)
    data["min_size"] = "60"
    assert client.post("/detect", data=data).get_json()["result"] == []


@pytest.mark.parametrize("query,name", [
    ("scale_factor=abc", "scale_factor"),
    ("scale_factor=1.0", "scale_factor"),
    ("scale_factor=1.01", "scale_factor"),  # 5x the work of 1.05: a 40 MP photo would outlast the worker
    ("scale_factor=nan", "scale_factor"),
    ("min_neighbors=-1", "min_neighbors"),
    ("min_neighbors=2.5", "min_neighbors"),
    ("min_size=0", "min_size"),
    ("min_size=99999999", "min_size"),
])
def test_bad_parameters_are_400_naming_them(client, group_jpg, query, name):
    r = client.post(f"/detect?{query}", data=multipart("image", group_jpg))
    assert r.status_code == 400
    assert r.get_json()["status"] == "bad request" and name in r.get_json()["message"]


# -- canny ----------------------------------------------------------------------------------------

def test_canny_returns_a_jpeg_edge_map(client, group_jpg):
    r = client.post("/canny", data=multipart("image", group_jpg))
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    edges = cv2.imdecode(np.frombuffer(r.data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert edges.shape == (482, 640)
    expected = cv2.Canny(cv2.imdecode(np.frombuffer(group_jpg, np.uint8), cv2.IMREAD_GRAYSCALE), 100, 200)
    # JPEG blurs single-pixel edges a little; the edge pixels are where OpenCV puts them.
    assert np.mean((edges > 127) == (expected > 0)) > 0.97


def test_canny_thresholds(client, group_jpg):
    low = client.post("/canny?low=10&high=20", data=multipart("image", group_jpg)).data
    high = client.post("/canny?low=300&high=600", data=multipart("image", group_jpg)).data

    def count(d: bytes) -> int:
        return int((cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_GRAYSCALE) > 127).sum())

    assert count(low) > 2 * count(high)
    assert client.post("/canny?low=x", data=multipart("image", group_jpg)).status_code == 400


# -- errors ---------------------------------------------------------------------------------------

def test_unknown_route_is_the_books_404(client):
    r = client.get("/process")
    assert r.status_code == 404
    assert r.get_json() == {"status": "not found", "message": "route not found", "reason": "not_found"}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_the_books_405_with_allow(client, method):
    r = client.open("/detect", method=method)
    assert r.status_code == 405
    assert r.get_json() == {"status": "failure", "message": f"{method} method not supported for API",
                              "reason": "method_not_allowed"}
    assert {m.strip() for m in r.headers["Allow"].split(",")} >= {"GET", "POST"}


def test_get_without_url_is_the_books_400(client):
    r = client.get("/detect")
    assert r.status_code == 400
    assert r.get_json() == {"status": "bad request", "message": "Parameter url is not present",
                              "reason": "missing_image"}


@pytest.mark.parametrize("kwargs", [
    {},
    {"data": {"other": "x"}, "content_type": "multipart/form-data"},
    {"data": b"   ", "content_type": "application/octet-stream"},
])
def test_post_without_image_is_the_books_400(client, kwargs):
    r = client.post("/detect", **kwargs)
    assert r.status_code == 400
    assert r.get_json() == {"status": "bad request", "message": "Parameter image is not present",
                              "reason": "missing_image"}


def test_non_image_upload_is_415_naming_what_came(client):
    r = client.post("/detect", data=multipart("image", b"%PDF-1.5 not a picture", "cv.pdf"))
    assert r.status_code == 415
    assert "PDF" in r.get_json()["message"]


def test_truncated_image_is_422(client, group_jpg):
    r = client.post("/detect", data=multipart("image", group_jpg[:2000]))
    assert r.status_code == 422 and r.get_json()["status"] == "unprocessable"


def test_upload_over_the_limit_is_413(make_app, group_jpg):
    small = make_app({"MYSITE_MAX_UPLOAD_MB": 0.05}).test_client()  # 52 KB; the photo is 77 KB
    for kwargs in ({"data": multipart("image", group_jpg)}, {"data": group_jpg, "content_type": "image/jpeg"}):
        r = small.post("/detect", **kwargs)
        assert r.status_code == 413 and r.get_json()["status"] == "too large"
    big_body = small.post("/detect", data=b"x" * 200_000, content_type="image/jpeg")
    assert big_body.status_code == 413 and "0.05 MB" in big_body.get_json()["message"]


def test_too_many_pixels_is_413(make_app, group_jpg):
    r = make_app({"MYSITE_MAX_PIXELS": 100_000}).test_client().post("/detect", data=multipart("image", group_jpg))
    assert r.status_code == 413 and "megapixels" in r.get_json()["message"]


def test_bad_json_and_bad_base64_are_400(client):
    assert client.post("/detect", data=b"{nope", content_type="application/json").status_code == 400
    assert client.post("/detect", json={"picture": "x"}).status_code == 400
    r = client.post("/detect", data=b"data:image/png,notbase64")
    assert r.status_code == 400 and "base64" in r.get_json()["message"]


def test_internal_errors_are_json_without_traceback(make_app, monkeypatch, group_jpg):
    app = make_app()
    model = current_registry(app).get("face")

    def broken(*a, **k):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(model, "run", broken)
    r = app.test_client().post("/detect", data=multipart("image", group_jpg))
    assert r.status_code == 500
    assert r.get_json() == {"status": "internal error", "message": "internal error occurred in server",
                              "reason": "internal_error"}
    assert b"secret" not in r.data and b"Traceback" not in r.data


def test_garbage_never_gives_500(client):
    rng = np.random.default_rng(7)
    bodies = [bytes(rng.integers(0, 256, n, dtype=np.uint8)) for n in (1, 10, 1000, 50_000)]
    bodies += [b"\xff\xd8\xff" + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)), b"\x89PNG\r\n\x1a\n" * 50]
    for body in bodies:
        for path in ("/detect", "/catfacedetection", "/canny"):
            for kwargs in ({"data": body}, {"data": multipart("image", body)}, {"data": body, "content_type": "image/png"}):
                r = client.post(path, **kwargs)
                assert r.status_code in (400, 413, 415, 422), (path, r.status_code, r.data[:200])
                assert set(r.get_json()) == {"status", "message", "reason"}


# -- a model that is not there --------------------------------------------------------------------

@pytest.mark.slow
def test_missing_cascade_is_503_naming_the_setting_and_the_rest_still_works(make_app, group_jpg, cat_jpg):
    app = make_app({"MYSITE_FACE_CASCADE": "/nonexistent/haarcascade_frontalface_alt.xml"})
    c = app.test_client()
    r = c.post("/detect", data=multipart("image", group_jpg))
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "unavailable" and "set MYSITE_FACE_CASCADE" in body["message"]
    # The file's name, not where the server looked for it (MYSITE_DEBUG=1 shows that: tests/test_security.py).
    assert "haarcascade_frontalface_alt.xml" in body["message"] and "/nonexistent/" not in body["message"]
    assert c.post("/catfacedetection", data=multipart("image", cat_jpg)).status_code == 200
    assert c.get("/healthz").status_code == 503
    info = c.get("/", headers={"Accept": "application/json"}).get_json()
    face = next(m for m in info["models"] if m["name"] == "face")
    assert face["loaded"] is False and "not found" in face["error"]


def test_broken_cascade_file_is_503_too(make_app, tmp_path, group_jpg):
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage>nothing here</opencv_storage>")
    c = make_app({"MYSITE_FACE_CASCADE": str(bad)}).test_client()
    r = c.post("/detect", data=multipart("image", group_jpg))
    assert r.status_code == 503 and "could not be loaded" in r.get_json()["message"]


# -- info and health ------------------------------------------------------------------------------

def test_info_route_is_derived_from_the_app(app, client):
    body = client.get("/", headers={"Accept": "application/json"}).get_json()
    paths = {r["path"]: r for r in body["routes"]}
    rules = {r.rule for r in app.url_map.iter_rules() if not r.endpoint.endswith("static")}
    assert set(paths) == rules
    assert paths["/detect"]["methods"] == ["GET", "POST"] and "faces" in paths["/detect"]["description"]
    assert body["version"]
    face = next(m for m in body["models"] if m["name"] == "face")
    assert face["loaded"] and face["path"].endswith("haarcascade_frontalface_alt.xml")
    assert face["setting"] == "MYSITE_FACE_CASCADE"


def test_info_route_for_json_clients_by_default(client):
    assert client.get("/").mimetype == "application/json"  # requests sends Accept: */*


def test_info_route_is_a_page_for_browsers(client):
    r = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert r.mimetype == "text/html"
    assert b"/catfacedetection" in r.data and b"haarcascade_frontalface_alt.xml" in r.data


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}


def test_server_timing_header(client, group_jpg):
    r = client.post("/detect", data=multipart("image", group_jpg))
    assert r.headers["Server-Timing"].startswith("total;dur=")


# -- isolation ------------------------------------------------------------------------------------

def test_an_upload_leaves_no_file_behind(client, monkeypatch, car_jpg):
    # A body is received whole before the app runs (mysite/server/upload_deadline.py): one longer than
    # 64 KB into a temporary file that never has a name, closed when the request ends. Werkzeug's own
    # spooling of multipart files over 500 KB is turned off: the app reads them in memory.
    import os
    import tempfile

    made = []
    real = tempfile.TemporaryFile

    def recording(*args, **kwargs):
        file = real(*args, **kwargs)
        made.append((file, os.readlink(f"/proc/self/fd/{file.fileno()}")))
        return file

    def named(*args, **kwargs):
        raise AssertionError("an upload was written to a named file")

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", named)
    big = car_jpg + b"\0" * 600_000  # trailing bytes after the JPEG's end are ignored by decoders
    r = client.post("/detect", data=multipart("image", big))
    assert r.status_code == 200 and r.get_json()["result"] == []
    assert len(made) == 1, made  # the body's, and nothing of the app's
    file, path = made[0]
    assert path.endswith("(deleted)") and file.closed, path


@pytest.mark.slow
def test_concurrent_requests_get_their_own_answers(make_app, group_jpg, cat_jpg, car_jpg):
    from concurrent.futures import ThreadPoolExecutor

    app = make_app({"MYSITE_QUEUE": "20"})  # every request waits its turn for the detection slot
    jobs = [("/detect", group_jpg, 17), ("/catfacedetection", cat_jpg, 1), ("/detect", car_jpg, 0)] * 6

    def run(job):
        path, data, expected = job
        body = app.test_client().post(path, data=multipart("image", data)).get_json()
        return len(body["result"]) == expected

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert all(pool.map(run, jobs))
