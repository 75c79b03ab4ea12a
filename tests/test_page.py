"""The page at / (server side): tasks from the URL map, JSON for JSON clients, the form without JavaScript."""

from __future__ import annotations

import base64
import html as htmllib
import io
import json
import random
import re
from html import unescape as html_unescape
from pathlib import Path

import cv2
import numpy as np
import pytest
from flask import jsonify

from mysite.web.state import current_endpoints, current_registry

DATA = Path(__file__).with_name("data")
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # what Chromium sends


def _options(html: str) -> list[str]:
    """The task list's paths, sorted."""
    select = re.search(r'<select id="task".*?</select>', html, re.S).group(0)
    return sorted(re.findall(r'<option value="([^"]+)"', select))


def test_json_clients_still_get_json_from_root(client) -> None:
    r = client.get("/")
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert {"name", "version", "routes", "models"} <= set(body)
    assert "/detect" in {route["path"] for route in body["routes"]}


def test_browsers_get_the_page_with_every_image_endpoint(client) -> None:
    r = client.get("/", headers=HTML)
    html = r.get_data(as_text=True)
    assert r.mimetype == "text/html"
    # Routes kept for other clients' formats are not tasks; nor are those whose model this server lacks.
    registry = current_registry(client.application)
    image_routes = sorted(ep.path for ep in current_endpoints(client.application)
                          if ep.on_page and registry.entries[ep.model].loaded)
    assert _options(html) == image_routes
    assert re.search(r'<option value="/detect"[^>]*selected', html), "the book's face API is the default task"
    assert ('id="digits"' in html) == ("/digits" in image_routes), "a digit pad exactly when /digits exists"
    # Routes and models are still listed.
    assert "<code>/healthz</code>" in html and "haarcascade_frontalface_alt.xml" in html
    assert "cdn" not in html.lower() and "https://" not in html.replace("https://example.org/photo.jpg", "")


def test_a_new_endpoint_appears_by_itself_and_digits_get_a_pad(make_app) -> None:
    app = make_app()
    def digits():  # type: ignore[no-untyped-def]
        """Read a handwritten digit"""
        return jsonify({"status": "ok", "digit": 7, "probability": 1.0, "probabilities": [0.0] * 7 + [1.0, 0.0, 0.0]})

    app.add_url_rule("/digits", view_func=digits, methods=["GET", "POST"])
    html = app.test_client().get("/", headers=HTML).get_data(as_text=True)
    assert "/digits" in _options(html)
    assert "Read a handwritten digit" in html
    assert 'id="digits"' in html and 'data-endpoint="/digits"' in html and 'id="pad"' in html


def test_static_files_are_served_from_the_package(client) -> None:
    js = client.get("/static/page.js")
    css = client.get("/static/page.css")
    assert js.status_code == 200 and "createImageBitmap" in js.get_data(as_text=True)
    assert css.status_code == 200 and css.mimetype == "text/css"


def _form(client, fields: dict):  # type: ignore[no-untyped-def]
    return client.post("/", data=fields, headers=HTML, content_type="multipart/form-data")


def test_form_without_javascript_shows_json_and_the_drawn_picture(client) -> None:
    r = _form(client, {"endpoint": "/detect", "image": ((DATA / "group_17_faces.jpg").open("rb"), "group.jpg")})
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    shown = re.search(r'<pre id="json"[^>]*>(.*?)</pre>', html, re.S).group(1)
    answer = json.loads(htmllib.unescape(shown))
    assert answer["status"] == "ok" and len(answer["result"]) == 17
    data_url = re.search(r'<img id="server-image" src="data:image/jpeg;base64,([^"]+)"', html).group(1)
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(data_url), np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = answer["result"][0]["box"]
    b, g, rr = (int(v) for v in picture[(y1 + y2) // 2, x1])
    assert b < 110 and g > 170 and rr > 170, "the box is drawn on the picture"
    assert "Server time:" in html


def test_form_params_reach_the_model(client) -> None:
    r = _form(client, {"endpoint": "/detect", "min_neighbors": "100",
                       "image": ((DATA / "group_17_faces.jpg").open("rb"), "group.jpg")})
    assert '"result": []' in htmllib.unescape(r.get_data(as_text=True))


@pytest.mark.slow
def test_form_by_url(make_app, image_server) -> None:
    app = make_app({"MYSITE_URL_ALLOW_NETWORKS": "127.0.0.1/32"})
    r = _form(app.test_client(), {"endpoint": "/catfacedetection", "url": f"{image_server}/cat.jpg"})
    assert r.status_code == 200
    assert htmllib.unescape(r.get_data(as_text=True)).count('"box"') == 1


def test_form_fields_passed_on_with_a_url_are_bounded(client) -> None:
    # With a URL, every field became the task's query, escaped and parsed again: a 2 MB text field of
    # random bytes cost 1.4 s of CPU and 776 MB, 9 MB of it gigabytes.
    noise = bytes(random.Random(3).randrange(256) for _ in range(200_000)).decode("latin-1")
    r = _form(client, {"endpoint": "/detect", "url": "http://127.0.0.1:9/x.jpg", "notes": noise})
    assert r.status_code == 400 and "fields come to more than 16384 characters" in htmllib.unescape(r.get_data(as_text=True))


def test_form_canny_shows_the_edge_image(client) -> None:
    r = _form(client, {"endpoint": "/canny", "image": ((DATA / "astronaut.png").open("rb"), "a.png")})
    assert r.status_code == 200
    assert '<img id="server-image" src="data:image/jpeg;base64,' in r.get_data(as_text=True)


def test_form_errors_are_words_with_the_apis_status(client) -> None:
    r = _form(client, {"endpoint": "/detect", "image": (io.BytesIO(b"just some text, no picture"), "notes.txt")})
    html = r.get_data(as_text=True)
    assert r.status_code == 415
    alert = re.search(r'role="alert">(.*?)</div>', html, re.S).group(1)
    assert alert.startswith("That file is not an image the server can read. (415) expected an image")
    assert "Traceback" not in html

    r = _form(client, {"endpoint": "/detect"})
    assert r.status_code == 400 and "Choose an image file or give the URL of one." in r.get_data(as_text=True)
    r = _form(client, {"endpoint": "/healthz", "image": (io.BytesIO(b"x"), "x.jpg")})
    assert r.status_code == 400 and "Choose one of the tasks" in r.get_data(as_text=True)


def test_form_too_large_is_explained(make_app) -> None:
    small = make_app({"MYSITE_MAX_UPLOAD_MB": "0.01"}).test_client()
    r = _form(small, {"endpoint": "/detect", "image": ((DATA / "group_17_faces.jpg").open("rb"), "group.jpg")})
    assert r.status_code == 413
    assert "The image is too large. (413)" in r.get_data(as_text=True)


def test_a_form_whose_body_could_not_be_received_is_told_so_in_the_page(make_app) -> None:
    # The body is received before the app runs (server/upload_deadline.py); one that cannot be had (too
    # slow, broken, too long, no room) is the API's JSON error, and the page's own words on the form.
    small = make_app({"MYSITE_MAX_UPLOAD_MB": "0.01"}).test_client()
    photo = (DATA / "group_17_faces.jpg").read_bytes() * 2  # past the body limit: found out as it arrives
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked"}
    r = small.post("/", data={"endpoint": "/detect", "image": (io.BytesIO(photo), "group.jpg")}, headers=HTML,
                   environ_overrides=chunked, content_type="multipart/form-data")
    page = r.get_data(as_text=True)
    assert r.status_code == 413 and r.mimetype == "text/html", page[:300]
    alert = re.search(r'role="alert">(.*?)</div>', page, re.S).group(1)
    assert alert.startswith("The image is too large. (413) the request body is longer") and "Traceback" not in page
    r = small.post("/detect", data={"image": (io.BytesIO(photo), "group.jpg")}, environ_overrides=chunked,
                   content_type="multipart/form-data")
    assert r.status_code == 413 and r.get_json()["reason"] == "too_large"


def _fieldsets(html: str) -> dict[str, list[str]]:
    """Each options fieldset ("/detect yunet", "/catfacedetection") -> the names of its inputs."""
    out = {}
    for attrs, body in re.findall(r'<fieldset class="params" ([^>]*)>(.*?)</fieldset>', html, re.S):
        task = re.search(r'data-task="([^"]+)"', attrs).group(1)
        choice = re.search(r'data-choice="([^"]+)"', attrs)
        out[f"{task} {choice.group(1)}" if choice else task] = re.findall(r'name="([^"]+)"', body)
    return out


def test_detector_choice_starts_on_yunet_and_each_detector_has_its_own_options(client) -> None:
    html = client.get("/", headers=HTML).get_data(as_text=True)
    choice = re.search(r'<fieldset class="choice" data-task="/detect">.*?</fieldset>', html, re.S).group(0)
    assert re.findall(r'<option value="([^"]+)"', choice) == ["haar", "yunet", "dnn", "dnn-full"]
    assert re.search(r'<option value="yunet"[^>]* selected', choice)
    # In words, not the API's values; the API's default is told to developers, beside the routes.
    assert "YuNet: every face" in choice and "Face detector" in choice
    assert "without one this server runs <code>haar</code>" in _developers(html)
    # Each detector says what to pick it for, on the page and in the OpenAPI description alike.
    from mysite.web.endpoints import FACE_DETECTORS

    for value, use in FACE_DETECTORS.uses.items():
        assert re.search(rf'<option value="{value}"[^>]*>[^<]*{re.escape(use)}', html_unescape(choice)), value
    spec = client.get("/openapi.json").get_json()
    described = [p["description"] for op in spec["paths"]["/detect"].values() for p in op.get("parameters", [])
                 if p["name"] == "detector"]
    assert described and all(use in described[0] for use in FACE_DETECTORS.uses.values())
    sets = _fieldsets(html)
    assert "/detect" not in sets  # no cascade options outside the haar choice
    assert {"min_neighbors", "scale_factor"} <= set(sets["/detect haar"])
    assert set(sets["/detect yunet"]) == {"min_confidence", "nms", "min_size", "min_face"}
    assert "min_neighbors" not in sets["/detect dnn"] and "min_confidence" in sets["/detect dnn-full"]


def test_page_says_what_the_server_runs_when_its_default_is_changed(make_app) -> None:
    html = make_app({"MYSITE_FACE_DETECTOR": "dnn"}).test_client().get("/", headers=HTML).get_data(as_text=True)
    assert "without one this server runs <code>dnn</code>" in _developers(html)


@pytest.mark.slow
def test_form_without_javascript_runs_the_chosen_detector(client) -> None:
    group = (DATA / "group_17_faces.jpg").read_bytes()
    for detector, keys in (("yunet", {"box", "confidence", "landmarks"}), ("haar", {"box"})):
        r = client.post("/", headers=HTML, data={"endpoint": "/detect", "detector": detector,
                                                  "image": (io.BytesIO(group), "g.jpg")})
        html = r.get_data(as_text=True)
        answer = json.loads(htmllib.unescape(re.search(r'<pre id="json"[^>]*>(.*?)</pre>', html, re.S).group(1)))
        assert r.status_code == 200 and len(answer["result"]) == 17
        assert all(set(d) == keys for d in answer["result"])
        # The page keeps the visitor's choice.
        assert re.search(rf'<option value="{detector}"[^>]* selected', html)


def _developers(html: str) -> str:
    return re.search(r'<details class="card developers">.*?</details>', html, re.S).group(0)


def _for_visitors(html: str) -> str:
    """The page as a visitor sees it before opening the developers' part: markup outside it, scripts' data out."""
    html = html.replace(_developers(html), "")
    return re.sub(r"<script.*?</script>", "", html, flags=re.S)


def test_visitors_see_only_the_tasks_that_work_in_plain_words(client, full_app) -> None:
    """Tasks whose model is missing are not offered, and no operator instruction or API syntax is shown."""
    html = client.get("/", headers=HTML).get_data(as_text=True)
    visible = _for_visitors(html)
    options = re.search(r'<select id="task".*?</select>', html, re.S).group(0)
    assert "/predict" not in _options(html) and "/objectdetection" not in _options(html)  # not on this server
    assert re.findall(r">([^<]+)</option>", options) == [
        "Find faces", "Find cat faces", "Outline the edges", "Read a handwritten digit"]  # the table's order
    for developer_words in ("?detector=", "haar|yunet", "MYSITE_", "python -m", "not loaded", "[x1, y1"):
        assert developer_words not in visible, developer_words
    # Operators still see every model and why one is missing: in the JSON at / (and in the log).
    models = {m["name"]: m for m in client.get("/").get_json()["models"]}
    assert not models["classifier"]["loaded"] and "squeezenet1.1-7.onnx not found" in models["classifier"]["error"]
    # With every model there, every task of the table is offered.
    every = full_app.test_client().get("/", headers=HTML).get_data(as_text=True)
    assert _options(every) == sorted(ep.path for ep in current_endpoints(full_app) if ep.on_page)


def test_no_javascript_form_shows_the_detector_that_answered(client) -> None:
    """A form that names no detector (the bird classifier's ``bird_image`` form) is answered by the server's default,
    Haar: the page shows Haar chosen, not the page's own starting choice, YuNet."""
    r = client.post("/", headers=HTML, data={"bird_image": ((DATA / "group_17_faces.jpg").open("rb"), "g.jpg")})
    html = r.get_data(as_text=True)
    answer = json.loads(htmllib.unescape(re.search(r'<pre id="json"[^>]*>(.*?)</pre>', html, re.S).group(1)))
    assert r.status_code == 200 and answer["result"] and all(set(d) == {"box"} for d in answer["result"])  # Haar's
    choice = re.search(r'<fieldset class="choice" data-task="/detect">.*?</fieldset>', html, re.S).group(0)
    assert re.findall(r'<option value="([^"]+)"[^>]* selected', choice) == ["haar"]


def test_a_picture_without_a_digit_is_not_called_damaged(client) -> None:
    blank = cv2.imencode(".png", np.full((280, 280), 255, np.uint8))[1].tobytes()
    r = _form(client, {"endpoint": "/digits", "image": (io.BytesIO(blank), "blank.png")})
    alert = re.search(r'role="alert">(.*?)</div>', r.get_data(as_text=True), re.S).group(1)
    assert r.status_code == 422 and alert.startswith("The model found nothing it can answer for in this picture.")
    assert "damaged" not in alert


def test_mnist_page_looks_like_the_rest_and_leads_back(client) -> None:
    html = client.get("/mnist").get_data(as_text=True)
    assert 'href="/static/page.css' in html and '<header class="top">' in html
    assert re.search(r'<a class="back"[^>]* href="/">', html), "a way back to the tasks"
    assert 'type="submit"' not in html.replace('<button type="submit"', ""), "no bare browser Submit button"
    assert "style=" not in html, "styled by page.css, like the page at /"
    css = client.get("/static/page.css").get_data(as_text=True)
    assert "input[type=password]" in css, "the API key field is styled like the others"


def test_a_missing_model_is_not_explained_to_visitors_as_to_operators(client) -> None:
    """A form posted for a task whose model is missing (an old page, a bookmark): plain words only."""
    r = _form(client, {"endpoint": "/predict", "image": ((DATA / "cat.jpg").open("rb"), "cat.jpg")})
    alert = re.search(r'role="alert">(.*?)</div>', r.get_data(as_text=True), re.S).group(1)
    assert r.status_code == 503
    assert alert == "This model is not available on this server right now. (503)"


def test_the_uploads_thumbnail_is_held_to_the_requests_memory(client) -> None:
    """/digits reads a picture gray and small; the page's thumbnail decodes it in colour, and is budgeted too."""
    big = np.full((5000, 8000), 200, np.uint8)  # 40 MP, a few KB as PNG: 240 MB to decode in colour at full size
    big[100:200, 100:200] = 0  # something for the model to read
    small = cv2.imread(str(DATA / "digit_7.png"), cv2.IMREAD_GRAYSCALE)
    pages = {}
    for name, picture in (("big", big), ("small", small)):
        data = cv2.imencode(".png", picture)[1].tobytes()
        r = client.post("/", data={"endpoint": "/digits", "image": (io.BytesIO(data), f"{name}.png")}, headers=HTML)
        assert r.status_code == 200
        pages[name] = r.get_data(as_text=True)
    assert "Digit: " in pages["big"] and 'id="thumbnail"' not in pages["big"]
    assert "The picture is too large to show here." in pages["big"]
    assert 'id="thumbnail"' in pages["small"]
