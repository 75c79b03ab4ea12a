"""One source of truth: the page, GET /, /openapi.json and error bodies read the table the app registered.

A row added to the table reaches all of them without other code; the drawing pad goes to
the row whose model reads digits, whatever its path; the page's detector follows what the
server will run.
"""

from __future__ import annotations

import io
import re

import pytest
from tests_helpers import DATA

from mysite import create_app
from mysite.web import endpoints
from mysite.web.state import current_endpoints, current_registry, current_settings

HTML = {"Accept": "text/html"}


@pytest.fixture()
def table_app():
    """An app built with another table: ``table_app(rows)``."""
    def build(rows: tuple[endpoints.Endpoint, ...], overrides: dict | None = None):
        return create_app({"MYSITE_LOG_LEVEL": "WARNING", **(overrides or {})}, endpoints=rows)
    return build


def test_a_new_row_reaches_the_page_the_info_route_the_document_and_the_errors(table_app) -> None:
    extra = endpoints.Endpoint("/outline", "canny", "Edges of the image, as a JPEG (a second row on one model)",
                         output="image", errors="success")
    app = table_app((*endpoints.ENDPOINTS, extra))
    client = app.test_client()
    assert current_endpoints(app)[-1] is extra
    page = client.get("/", headers=HTML).get_data(as_text=True)
    assert re.search(r'<option value="/outline" data-output="image"', page)  # the row's own output kind
    assert "/outline" in {r["path"] for r in client.get("/").get_json()["routes"]}
    assert "/outline" in client.get("/openapi.json").get_json()["paths"]
    r = client.post("/outline", data={"image": (io.BytesIO((DATA / "astronaut.png").read_bytes()), "a.png")})
    assert r.status_code == 200 and r.mimetype == "image/jpeg"
    assert client.post("/outline", data=b"junk", content_type="image/jpeg").get_json()["success"] is False
    # The module's table is not what the app reads: an app without the row knows nothing of it.
    plain = table_app(endpoints.ENDPOINTS)
    assert all(ep.path != "/outline" for ep in current_endpoints(plain))
    assert plain.test_client().post("/outline").status_code == 404


def test_the_digit_pad_goes_to_the_row_whose_model_reads_digits(table_app) -> None:
    rows = tuple(ep for ep in endpoints.ENDPOINTS if ep.path != "/digits") + (
        endpoints.Endpoint("/read-digit", "digits", "Read one handwritten digit", output="fields"),
        endpoints.Endpoint("/not-digits", "canny", "Not a digit reader, whatever its path", output="image"),
    )
    html = table_app(rows).test_client().get("/", headers=HTML).get_data(as_text=True)
    assert re.search(r'<section class="card" id="digits"[^>]*data-endpoint="/read-digit"', html)
    # No row of kind digits on the page: no pad (/predict/ answers text, for seed 002's page, not this pad).
    html = table_app(tuple(ep for ep in endpoints.ENDPOINTS if ep.path != "/digits")).test_client().get(
        "/", headers=HTML).get_data(as_text=True)
    assert 'id="digits"' not in html


def test_the_page_starts_on_the_detector_the_server_runs_when_yunet_is_not_there(make_app, tmp_path) -> None:
    app = make_app({"MYSITE_FACE_DETECTOR": "dnn", "MYSITE_YUNET_MODEL": str(tmp_path / "absent.onnx")})
    html = app.test_client().get("/", headers=HTML).get_data(as_text=True)
    choice = re.search(r'<fieldset class="choice" data-task="/detect">.*?</fieldset>', html, re.S).group(0)
    assert re.search(r'<option value="dnn"[^>]* selected', choice)
    assert re.search(r'<option value="yunet"[^>]* disabled', choice)
    assert not re.search(r'<option value="haar"[^>]* selected', choice)  # Haar's options are not the ones shown
    doc = app.test_client().get("/openapi.json").get_json()
    detector = next(p for p in doc["paths"]["/detect"]["get"]["parameters"] if p["name"] == "detector")
    assert detector["schema"]["default"] == "dnn"
    # What the page's form runs without a detector named is what the server runs: BlazeFace (boxes with confidence).
    r = app.test_client().post("/detect", data={"image": (io.BytesIO((DATA / "astronaut.png").read_bytes()), "a.png")})
    assert r.status_code == 200 and all("confidence" in d and "landmarks" not in d for d in r.get_json()["result"])


def test_typed_accessors_give_what_create_app_built(app) -> None:
    assert current_settings(app).max_pixels > 0
    assert current_registry(app).entries["face"].loaded
    assert {ep.path for ep in current_endpoints(app)} >= {"/detect", "/digits", "/v1/vision/face"}
    with app.test_request_context("/"):
        assert current_registry() is current_registry(app) and current_settings() is current_settings(app)


def test_the_clients_route_table_agrees_with_the_registered_rows(app) -> None:
    """mysite/client/routes.py is what the batch client knows without asking the server: it must not drift from the rows."""
    from mysite.client.routes import ROUTES, route_for
    from mysite.web import respond

    for ep in current_endpoints(app):
        if ep.path.rstrip("/") != ep.path or ep.defaults.get("output"):
            continue  # seed routes answering text by default (/predict/, /predictor): the client sends to them as-is
        route = route_for(ep.path)
        assert ep.path in ROUTES, f"{ep.path} is registered but the client's table has no row for it"
        boxes = {"boxes": "result", "deepstack": "predictions"}.get(ep.output)
        assert route.boxes == boxes, ep.path
        assert route.answers_image == (ep.output == "image"), ep.path
        assert route.several == (ep.output == "boxes"), ep.path  # repeated image fields: api._batch, boxes only
        assert route.draws == (ep.output in respond.DETECTIONS), ep.path


def test_a_shape_that_does_not_exist_stops_the_table_where_it_is_built() -> None:
    with pytest.raises(ValueError, match=r"endpoint /outline: 'imgae' is not an Output; one of boxes, .*image"):
        endpoints.Endpoint("/outline", "canny", "Edges", output="imgae")
    with pytest.raises(ValueError, match=r"'sucess' is not an ErrorShape"):
        endpoints.Endpoint("/outline", "canny", "Edges", output="image", errors="sucess")
    row = endpoints.Endpoint("/outline", "canny", "Edges", output="image", errors="success")
    assert row.output is endpoints.Output.IMAGE and row.errors is endpoints.ErrorShape.SUCCESS


def test_create_app_takes_loaded_settings_and_a_table() -> None:
    from mysite.settings import load

    settings = load({"MYSITE_LOG_LEVEL": "WARNING", "MYSITE_MAX_UPLOAD_MB": "3"}, environ={})
    app = create_app(settings=settings, endpoints=endpoints.ENDPOINTS[:1])
    assert current_settings(app) is settings and current_endpoints(app) == endpoints.ENDPOINTS[:1]
    assert app.test_client().post("/catfacedetection").status_code == 404
    with pytest.raises(TypeError):
        create_app({"MYSITE_DEBUG": "1"}, settings=settings)
