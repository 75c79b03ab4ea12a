"""Nothing private in public answers; the headers every answer carries; OPTIONS; opt-in API keys and CORS."""

from __future__ import annotations

import hmac
import io
import json
import sys
from pathlib import Path

import cv2
import pytest
import requests
from tests_helpers import multipart

from mysite.server.accesslog import redact_url
from mysite.settings import PROJECT_DIR, SettingsError, load
from mysite.web import endpoints, security

MARKER = "/home/secretuser/"
KEY, OTHER_KEY = "k3y-for-tests_0123456789", "second-key-abcdef"
PAGE = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


def _answers(client, group_jpg: bytes) -> dict[str, object]:
    """Every route's answer (and each error's) that a visitor or a script can get: label -> response."""
    out = {
        "GET / json": client.get("/", headers=JSON),
        "GET / page": client.get("/", headers=PAGE),
        "GET /healthz": client.get("/healthz"),
        "GET /mnist": client.get("/mnist"),
        "GET /nowhere": client.get("/nowhere"),
        "PUT /detect": client.put("/detect"),
        "OPTIONS /detect": client.options("/detect"),
        "POST / nothing": client.post("/", data={"endpoint": "/detect"}, headers=PAGE),
    }
    for rule in client.application.url_map.iter_rules():  # every other route too, e.g. one added later
        if "GET" in (rule.methods or ()) and not rule.arguments and f"GET {rule.rule}" not in out:
            out[f"GET {rule.rule}"] = client.get(rule.rule, headers=JSON)
    for ep in endpoints.ENDPOINTS:
        out[f"POST {ep.path}"] = client.post(ep.path, data=multipart("image", group_jpg))
        out[f"GET {ep.path} no url"] = client.get(ep.path)
        out[f"GET {ep.path} bad image"] = client.post(ep.path, data=multipart("image", b"not an image"))
        if ep.on_page:  # the page's own form, without JavaScript
            out[f"POST / {ep.path}"] = client.post(
                "/", data={"endpoint": ep.path, "image": (io.BytesIO(group_jpg), "group.jpg")}, headers=PAGE)
    return out


def _text(response) -> str:
    return "\n".join([*(f"{k}: {v}" for k, v in response.headers.items()), response.get_data().decode("latin-1")])


@pytest.fixture(scope="module")
def secret_dirs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A model folder under a home-like path, and settings that make every model's file missing or broken."""
    models = tmp_path_factory.mktemp("srv") / "home" / "secretuser" / "models"
    models.mkdir(parents=True)
    (models / "broken.xml").write_text("<opencv_storage>nothing here</opencv_storage>")
    (models / "broken.onnx").write_bytes(b"not a model")
    overrides = {
        "MYSITE_LOG_LEVEL": "CRITICAL",
        "MYSITE_MODEL_DIR": str(models),
        "MYSITE_FACE_CASCADE": str(models / "absent" / "face.xml"),  # absolute, missing
        "MYSITE_CATFACE_CASCADE": "broken.xml",  # relative to the model folder, broken
        "MYSITE_YUNET_MODEL": str(models / "broken.onnx"),  # absolute, broken: OpenCV's message names it
        "MYSITE_DIGITS_MODEL": "missing.onnx",
        "MYSITE_BLAZEFACE_MODEL": str(models / "none.tflite"),
        "MYSITE_BLAZEFACE_FULL_MODEL": str(models / "broken.onnx"),
        "MYSITE_SSD_MODEL": str(models / "ssd.caffemodel"),
        "MYSITE_CLASSIFIER_MODEL": str(models / "broken.onnx"),
    }
    return models, overrides


def test_no_server_path_in_any_answer_of_any_route(make_app, secret_dirs, group_jpg) -> None:
    models, overrides = secret_dirs
    # Every answer is kept until the end, pictures too: room for them all (each holds its room while kept).
    answers = _answers(make_app({**overrides, "MYSITE_UPLOAD_MEMORY_MB": "100000"}).test_client(), group_jpg)
    unavailable = [label for label, r in answers.items() if r.status_code == 503]
    # The check means something: most endpoints are down and say why, by file name.
    assert len(unavailable) >= 10, unavailable
    body = answers["POST /detect"].get_json()
    assert "face.xml" in body["message"] and "set MYSITE_FACE_CASCADE" in body["message"]
    info = {m["name"]: m for m in answers["GET / json"].get_json()["models"]}
    assert info["catface"]["path"] == "broken.xml" and info["face"]["path"] == "absent/face.xml"
    assert info["canny"]["path"] is None and not info["yunet"]["loaded"] and "broken.onnx" in info["yunet"]["error"]
    private = [MARKER, str(models), str(PROJECT_DIR), str(Path(cv2.data.haarcascades)), sys.prefix]
    for label, response in answers.items():
        text = _text(response)
        leaked = [p for p in private if p in text]
        assert not leaked, f"{label} ({response.status_code}) shows {leaked}: {text[:400]}"


def test_default_models_are_named_relative_to_their_folder(client) -> None:
    info = {m["name"]: m for m in client.get("/", headers=JSON).get_json()["models"]}
    assert info["face"]["path"] == "opencv-data/haarcascade_frontalface_alt.xml"
    assert info["yunet"]["path"] == "mysite/models/data/yunet_s_640_640.onnx"
    page = client.get("/", headers=PAGE).get_data(as_text=True)
    assert "opencv-data/haarcascade_frontalface_alt.xml" in page and str(PROJECT_DIR) not in page


def test_debug_shows_the_absolute_paths(make_app, secret_dirs, group_jpg) -> None:
    models, overrides = secret_dirs
    c = make_app({**overrides, "MYSITE_DEBUG": "1"}).test_client()
    message = c.post("/detect", data=multipart("image", group_jpg)).get_json()["message"]
    assert str(models / "absent" / "face.xml") in message
    info = {m["name"]: m for m in c.get("/", headers=JSON).get_json()["models"]}
    assert info["catface"]["path"] == str(models / "broken.xml")


# -- headers ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_nosniff_on_every_answer_and_page_headers_on_pages(make_app, group_jpg) -> None:
    # Every answer is kept until the end, pictures too: room for them all (each holds its room while kept).
    client = make_app({"MYSITE_UPLOAD_MEMORY_MB": "100000"}).test_client()
    answers = _answers(client, group_jpg)
    answers["static js"] = client.get("/static/page.js")
    answers["canny jpeg"] = client.post("/canny", data=multipart("image", group_jpg))
    answers["too large"] = client.post("/detect", data=b"x" * (20 * 1024 * 1024), content_type="image/jpeg")
    assert answers["canny jpeg"].mimetype == "image/jpeg" and answers["too large"].status_code == 413
    pages = 0
    for label, r in answers.items():
        assert r.headers.get("X-Content-Type-Options") == "nosniff", label
        assert r.headers.get("Referrer-Policy") == "same-origin", label
        assert r.status_code != 500, label
        if r.mimetype == "text/html":
            pages += 1
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"], label
            assert r.headers["X-Frame-Options"] == "DENY", label
    assert pages >= 4  # GET / and /mnist, and the form's answers


def test_options_is_json_with_allow_and_unknown_methods_are_json_405(client) -> None:
    for path in ("/detect", "/", "/healthz", "/v1/vision/face"):
        r = client.options(path)
        assert r.status_code == 200 and r.mimetype == "application/json", path
        allow = {m.strip() for m in r.headers["Allow"].split(",")}
        assert {"GET", "OPTIONS"} <= allow and set(r.get_json()["methods"]) == allow, path
    assert "POST" in client.options("/detect").headers["Allow"]
    assert client.options("/nowhere").status_code == 404 and client.options("/nowhere").is_json
    for method in ("PUT", "DELETE", "PATCH", "FOO", "PROPFIND"):
        r = client.open("/detect", method=method)
        assert r.status_code == 405 and r.is_json, method
        assert {"GET", "POST"} <= {m.strip() for m in r.headers["Allow"].split(",")}, method


# -- API keys --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed_app():
    from mysite import create_app

    return create_app({"MYSITE_LOG_LEVEL": "WARNING", "MYSITE_API_KEYS": f"{KEY}, {OTHER_KEY}"})


@pytest.mark.slow
def test_keys_are_off_by_default(client, group_jpg) -> None:
    assert client.post("/detect", data=multipart("image", group_jpg)).status_code == 200
    # DeepStack clients send api_key="" (their default) to a server without keys.
    assert client.post("/v1/vision/face", data={**multipart("image", group_jpg), "api_key": ""}).status_code == 200


def test_every_image_endpoint_wants_a_key(keyed_app, cat_jpg) -> None:
    c = keyed_app.test_client()
    for ep in endpoints.ENDPOINTS:
        for response in (c.post(ep.path, data=multipart("image", cat_jpg)),
                         c.get(ep.path + "?url=http://127.0.0.1:9/x.jpg"),  # refused before any fetch
                         c.post(ep.path, data=multipart("image", cat_jpg), headers={"X-API-Key": "wrong"})):
            assert response.status_code == 401 and response.is_json, ep.path
            assert "X-API-Key" in response.headers["WWW-Authenticate"], ep.path
            assert KEY not in response.get_data(as_text=True) and OTHER_KEY not in response.get_data(as_text=True)
    # Each endpoint's clients read its error shape: DeepStack's success/error.
    body = c.post("/v1/vision/face", data=multipart("image", cat_jpg)).get_json()
    assert body["success"] is False and "API key" in body["error"]


@pytest.mark.slow
def test_a_valid_key_in_the_header_or_the_form_field_passes(keyed_app, group_jpg) -> None:
    c = keyed_app.test_client()
    for key in (KEY, OTHER_KEY):
        r = c.post("/detect", data=multipart("image", group_jpg), headers={"X-API-Key": key})
        assert r.status_code == 200 and len(r.get_json()["result"]) == 17
    r = c.post("/v1/vision/face", data={**multipart("image", group_jpg), "api_key": KEY})
    assert r.status_code == 200 and r.get_json()["success"] is True
    # Seed 002's data-URL body and a raw JPEG body: the header.
    assert c.post("/detect", data=group_jpg, content_type="image/jpeg", headers={"X-API-Key": KEY}).status_code == 200


def test_a_key_in_the_url_is_refused_even_when_valid(keyed_app, group_jpg) -> None:
    c = keyed_app.test_client()
    for query in (f"api_key={KEY}", f"X-API-Key={KEY}"):
        r = c.post(f"/detect?{query}", data=multipart("image", group_jpg))
        assert r.status_code == 401 and "never in the URL" in r.get_json()["message"]


def test_health_info_pages_and_options_stay_open(keyed_app) -> None:
    c = keyed_app.test_client()
    assert c.get("/healthz").status_code == 200
    assert c.get("/", headers=JSON).status_code == 200
    page = c.get("/", headers=PAGE)
    assert page.status_code == 200 and b'id="api-key"' in page.data and b'name="api_key"' in page.data
    mnist = c.get("/mnist")
    assert mnist.status_code == 200 and b'name="api_key"' in mnist.data
    assert c.options("/detect").status_code == 200


def test_page_without_keys_has_no_key_field(client) -> None:
    assert b'id="api-key"' not in client.get("/", headers=PAGE).data and b"api_key" not in client.get("/mnist").data


@pytest.mark.slow
def test_the_page_form_sends_its_key_field(keyed_app, cat_jpg) -> None:
    c = keyed_app.test_client()
    form = {"endpoint": "/catfacedetection", "image": (io.BytesIO(cat_jpg), "cat.jpg")}
    refused = c.post("/", data=form, headers=PAGE)
    assert refused.status_code == 401 and refused.mimetype == "text/html"
    assert b"This server wants an API key" in refused.data
    form = {"endpoint": "/catfacedetection", "image": (io.BytesIO(cat_jpg), "cat.jpg"), "api_key": KEY}
    ok = c.post("/", data=form, headers=PAGE)
    assert ok.status_code == 200 and b"1 found" in ok.data
    # Seed 002's page posts its form (field img, and the key field) to /predict/.
    from test_existing_clients import _digit_png

    r = c.post("/predict/", data={"img": (io.BytesIO(_digit_png(7)), "seven.png"), "api_key": KEY})
    assert r.status_code == 200 and r.get_data(as_text=True).strip() == "7"


def test_keys_are_compared_against_every_key_in_constant_time(monkeypatch) -> None:
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", counting)
    assert security.key_matches(KEY, (KEY, OTHER_KEY, "third"))
    assert len(calls) == 3 and all(a == b == 32 for a, b in calls)  # digests: no early exit, no length to time
    calls.clear()
    assert not security.key_matches("\ud800 not a key", (KEY,)) and len(calls) == 1


def test_settings_check_keys_and_origins_and_never_echo_a_key() -> None:
    s = load({"MYSITE_API_KEYS": " a1, b2 ,", "MYSITE_CORS_ORIGINS": "https://example.com/, http://127.0.0.1:8080"},
             environ={})
    assert s.api_keys == ("a1", "b2") and s.cors_origins == ("https://example.com", "http://127.0.0.1:8080")
    assert "a1" not in repr(s)
    with pytest.raises(SettingsError) as err:
        load({"MYSITE_API_KEYS": "good, with space-secret"}, environ={})
    assert "space-secret" not in str(err.value) and "MYSITE_API_KEYS" in str(err.value)
    with pytest.raises(SettingsError, match="MYSITE_CORS_ORIGINS"):
        load({"MYSITE_CORS_ORIGINS": "example.com"}, environ={})
    assert load({}, environ={}).api_keys == () and load({}, environ={}).cors_origins == ()


def test_access_log_redaction() -> None:
    assert redact_url(f"/detect?min_size=3&api_key={KEY}&API%5FKEY={KEY}") == \
        "/detect?min_size=3&api_key=[redacted]&API%5FKEY=[redacted]"
    assert redact_url("/detect?url=http://127.0.0.1/a.jpg") == "/detect?url=http://127.0.0.1/a.jpg"


@pytest.mark.slow
def test_keys_under_gunicorn_deepstack_client_and_nothing_in_the_log(tmp_path, group_jpg, monkeypatch) -> None:
    """The Procfile's gunicorn with keys: the deepstack-python client with its api_key works, a key
    sent in the URL is refused, and no key is written to the access log."""
    from deepstack.core import DeepstackException, DeepstackFace
    from live_server import start_gunicorn

    with start_gunicorn({"MYSITE_API_KEYS": KEY}, log_dir=tmp_path) as live:
        port = int(live.url.rsplit(":", 1)[1])
        faces = DeepstackFace(ip="127.0.0.1", port=port, api_key=KEY).detect(group_jpg)
        assert len(faces) == 17
        with pytest.raises(DeepstackException, match="status code: 401"):
            DeepstackFace(ip="127.0.0.1", port=port, api_key="wrong").detect(group_jpg)
        r = requests.post(f"{live.url}/detect?api_key={KEY}", files={"image": group_jpg}, timeout=30)
        assert r.status_code == 401 and r.json()["status"] == "unauthorized"
        r = requests.post(f"{live.url}/detect", files={"image": group_jpg}, headers={"X-API-Key": KEY},
                          timeout=30)
        assert r.status_code == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
        # The project's own client: the key from $MYSITE_API_KEY, in the header.
        from mysite.client import Client, HTTPError

        monkeypatch.setenv("MYSITE_API_KEY", KEY)
        assert len(Client(live.url).detect(group_jpg)) == 17
        with pytest.raises(HTTPError, match="401"):
            Client(live.url, api_key="", retries=0).detect(group_jpg)
        r = requests.options(f"{live.url}/detect", timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    log = live.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    # The request is logged (a JSON line), the key is not.
    assert {"method": "POST", "path": "/detect", "query": "api_key=[redacted]", "status": 401}.items() <= \
        next(line for line in lines if line["query"]).items()
    assert KEY not in log


# -- CORS ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cors_is_off_by_default(client, cat_jpg) -> None:
    origin = {"Origin": "https://example.com"}
    answers = [client.post("/catfacedetection", data=multipart("image", cat_jpg), headers=origin),
               client.options("/detect", headers={**origin, "Access-Control-Request-Method": "POST"}),
               client.get("/", headers=origin)]
    for r in answers:
        assert not [h for h in r.headers.keys() if h.lower().startswith("access-control-")]
        assert "Origin" not in r.headers.get("Vary", "")


@pytest.mark.slow
def test_cors_allows_the_listed_origins_only(make_app, cat_jpg) -> None:
    app = make_app({"MYSITE_CORS_ORIGINS": "https://example.com, http://127.0.0.1:8080", "MYSITE_API_KEYS": KEY})
    c = app.test_client()
    preflight = c.options("/catfacedetection", headers={
        "Origin": "https://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.status_code == 200  # no key needed: a browser's preflight never carries one
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://example.com"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Origin" in preflight.headers.getlist("Vary")
    r = c.post("/catfacedetection", data=multipart("image", cat_jpg),
               headers={"Origin": "http://127.0.0.1:8080", "X-API-Key": KEY})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    assert "Server-Timing" in r.headers["Access-Control-Expose-Headers"]
    # A 401 also carries the header, so the page's script can read why.
    r = c.post("/catfacedetection", data=multipart("image", cat_jpg), headers={"Origin": "https://example.com"})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == "https://example.com"
    for bad in ("https://evil.example", "https://example.com.evil.example", "null"):
        r = c.options("/detect", headers={"Origin": bad, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in r.headers and "Access-Control-Allow-Methods" not in r.headers
        assert "Origin" in r.headers.getlist("Vary")


def test_cors_any_origin(make_app) -> None:
    c = make_app({"MYSITE_CORS_ORIGINS": "*"}).test_client()
    r = c.get("/healthz", headers={"Origin": "https://anyone.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(r.data) == {"status": "ok"}
    assert "Access-Control-Allow-Origin" not in c.get("/healthz").headers  # no Origin: not a CORS request


def test_nginx_own_error_answers_are_nosniff_too() -> None:
    """The JSON errors nginx makes itself in front of the app (Elastic Beanstalk, the Docker image)."""
    import re

    from mysite.server import proxy_conf

    conf = proxy_conf.render(load({}, environ={}), 120)
    blocks = re.findall(r"location @mysite_\d+ \{([^}]*)\}", conf)
    assert len(blocks) == 3 and all("add_header X-Content-Type-Options nosniff always;" in b for b in blocks)
    assert (PROJECT_DIR / proxy_conf.CONF_PATH).read_text() == conf  # the committed file is the rendered one


def test_start_up_log_says_keys_are_on_without_showing_them(make_app, caplog) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="mysite.web.security"):
        make_app({"MYSITE_API_KEYS": f"{KEY},short", "MYSITE_LOG_LEVEL": "INFO"})
    text = caplog.text
    assert "API keys required on the image endpoints (2 keys)" in text and "shorter than 16" in text
    assert KEY not in text and "short," not in text
