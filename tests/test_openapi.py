"""/openapi.json: a valid OpenAPI 3.1 document generated from what the app registered, and the API as it says.

The property test sends requests generated from the document itself (valid and invalid
parameter values, every way of sending an image, broken bodies) to every operation and
checks that none is answered 5xx and every answer is one the document lists, with its body
matching the schema given for it. It is bounded: at most MAX_EXAMPLES requests, and it
stops drawing new ones after BUDGET_S seconds.
"""

from __future__ import annotations

import base64
import io
import time

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_check import problems
from openapi_spec_validator import validate
from tests_helpers import DATA

from mysite.params import Param
from mysite.web import respond
from mysite.web.openapi import ANSWERS, IMAGE_TYPES, OPENAPI_VERSION, document, openapi_path, param_schema
from mysite.web.state import current_endpoints, current_registry, current_settings

MAX_EXAMPLES = 400
BUDGET_S = 30.0


@pytest.mark.slow
def test_the_document_is_valid_openapi_3_1_and_linked_from_the_info_route(client) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"] == OPENAPI_VERSION == "3.1.0"
    validate(doc)  # the OpenAPI 3.1 schema, as openapi-spec-validator ships it
    assert client.get("/", headers={"Accept": "application/json"}).get_json()["openapi"] == "/openapi.json"
    assert 'href="/openapi.json"' in client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)


def test_every_route_and_every_registered_row_is_described_from_its_declarations(full_app) -> None:
    doc = document(full_app)
    rules = {openapi_path(r.rule) for r in full_app.url_map.iter_rules() if not r.endpoint.endswith("static")}
    assert set(doc["paths"]) == rules
    registry = current_registry(full_app)
    for ep in current_endpoints(full_app):
        ops = doc["paths"][ep.path]
        assert set(ops) == {"get", "post"}, ep.path
        assert next(p for p in ops["get"]["parameters"] if p["name"] == "url")["required"] is True
        assert set(ops["post"]["requestBody"]["content"]) == {"multipart/form-data", *IMAGE_TYPES, "application/json",
                                                              "text/plain"}
        upload = ops["post"]["requestBody"]["content"]["multipart/form-data"]
        assert upload["schema"]["required"] == ["image"] and upload["encoding"]["image"]["contentType"]
        declared = {p["name"]: p["schema"] for p in ops["post"]["parameters"]}
        for model in (ep.choice.models.values() if ep.choice else [ep.model]):
            for p in registry.get(model).params:
                if p.name in ep.fixed:
                    assert p.name not in declared, (ep.path, p.name)  # pinned by the row: not the client's to set
                elif ep.choice is None or model == ep.choice.models[ep.choice.default_value(current_settings(full_app))]:
                    default = Param(p.name, p.type, p.default).convert(ep.defaults[p.name]) if p.name in ep.defaults \
                        else p.default
                    assert declared[p.name] == {**param_schema(p), "default": default}, (ep.path, p.name)
                    if p.name == "labels":  # a label filter also says which labels its model knows
                        assert declared[p.name]["pattern"] == registry.get(model).labels_pattern(), ep.path
                else:
                    assert p.name in declared, (ep.path, p.name)
        errors = {code for code in ops["post"]["responses"] if code != "200"}
        unsupported = str(respond.error_code(ep.errors, 415))  # DeepStack's routes answer it 400, as DeepStack does
        assert {"400", "413", unsupported, "422", "503"} <= errors, ep.path
    # Every kind of answer the table may name has a schema.
    assert set(respond.JSON_SHAPES) | set(respond.TEXT_SHAPES) <= set(ANSWERS)


def test_the_row_defaults_and_the_servers_detector_are_the_documented_defaults(make_app, full_app) -> None:
    doc = make_app({"MYSITE_FACE_DETECTOR": "dnn"}).test_client().get("/openapi.json").get_json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/detect"]["get"]["parameters"]}
    # "" is a value as not given (the server's own).
    assert params["detector"] == {"type": "string", "enum": ["haar", "yunet", "dnn", "dnn-full", ""], "default": "dnn"}
    # min_confidence as BlazeFace (the server's detector) declares it, not YuNet.
    blazeface = {p["name"]: p for p in doc["paths"]["/detect"]["post"]["parameters"]}["min_confidence"]
    assert "with" not in blazeface["description"] or "dnn" in blazeface["description"]
    predictor = {p["name"]: p["schema"] for p in doc["paths"]["/predictor"]["get"]["parameters"]}
    assert predictor["output"]["default"] == "base64"
    # A model that is not loaded says so; loaded, its parameters carry the row's own defaults.
    assert "Not loaded on this server: ssd" in doc["paths"]["/catdetection"]["get"]["description"]
    doc = document(full_app)
    cat = {p["name"]: p["schema"] for p in doc["paths"]["/catdetection"]["get"]["parameters"]}
    assert cat["min_confidence"]["default"] == 0.1 and "labels" not in cat


# --- the property test ---------------------------------------------------------------------------------


def _small(name: str, side: int, ext: str) -> bytes:
    image = cv2.imread(str(DATA / name))
    scale = side / max(image.shape[:2])
    return cv2.imencode(ext, cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))[1].tobytes()


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    """Real photos, made small so that a few hundred requests take seconds."""
    return [_small("group_17_faces.jpg", 320, ".jpg"), _small("astronaut.png", 200, ".png"),
            (DATA / "digit_7.png").read_bytes(), _small("cat.jpg", 240, ".jpg")]


JUNK = st.sampled_from([b"", b"%PDF-1.4", b"\xff\xd8\xff\xe0" + b"\0" * 64, b"GIF89a\x01\x00", b"data:image/png;base64,!!",
                        b"iVBORw0KGgo=", b"\x89PNG\r\n\x1a\n" + b"\xff" * 40]) | st.binary(max_size=64)
BAD_VALUES = st.sampled_from(["", " ", "nonsense", "nan", "inf", "-1", "1e999", "99999999999999999999", "0x10",
                              "true", "json,image"]) | st.text(max_size=8)


def _value(schema: dict) -> st.SearchStrategy[str]:
    """A value the schema allows, as a query string carries it."""
    if "enum" in schema:
        return st.sampled_from([str(v) for v in schema["enum"]])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(int(schema.get("minimum", -10**6)), int(schema.get("maximum", 10**6))).map(str)
    if kind == "number":
        return st.floats(schema.get("minimum", -1e6), schema.get("maximum", 1e6), allow_nan=False).map(repr)
    if kind == "boolean":
        return st.sampled_from(["true", "false", "1", "0", "yes", "off"])
    return st.text(max_size=12)


def _query(operation: dict, urls: list[str], invalid: bool) -> st.SearchStrategy[dict[str, str]]:
    """Each declared parameter absent or valid (or, with ``invalid``, maybe not); ?url= only ever a loopback
    address or no address at all."""
    fields = {}
    for p in operation.get("parameters", []):
        if p["name"] == "url":
            bad_urls = ["not a url", "ftp://127.0.0.1/x.jpg", "http://127.0.0.1:1/closed.jpg", "http:///nohost",
                        "file:///etc/passwd", f"{urls[0]}.missing"]
            value = st.sampled_from(urls + bad_urls if invalid else urls)
        else:
            value = _value(p["schema"]) | BAD_VALUES if invalid else _value(p["schema"])
        fields[p["name"]] = value if p.get("required") else st.one_of(st.none(), st.none(), value)
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not None})


def _body(photo_list: list[bytes]) -> st.SearchStrategy[dict]:
    """Every way inputs.py reads an image (and a few it must refuse), as test-client keyword arguments."""
    photo = st.sampled_from(photo_list)
    anything = photo | JUNK
    return st.one_of(
        st.just({}),
        st.tuples(st.sampled_from(["image", "file", "img", "other"]), anything).map(
            lambda f: {"data": {f[0]: (io.BytesIO(f[1]), "upload.jpg")}}),
        st.lists(anything, min_size=2, max_size=3).map(
            lambda parts: {"data": {"image": [(io.BytesIO(b), f"{i}.jpg") for i, b in enumerate(parts)]}}),
        st.tuples(anything, st.sampled_from(["image/jpeg", "image/png", "application/octet-stream", "text/plain"])).map(
            lambda b: {"data": b[0], "content_type": b[1]}),
        anything.map(lambda b: {"json": {"image": base64.b64encode(b).decode()}}),
        st.sampled_from([b"{", b"[]", b'{"image": 5}', b'{"image": ""}', b"[" * 2000]).map(
            lambda b: {"data": b, "content_type": "application/json"}),
        photo.map(lambda b: {"data": base64.b64encode(b), "content_type": "text/plain"}),
    )


@pytest.mark.slow
def test_no_request_generated_from_the_document_gets_a_5xx_or_an_undocumented_answer(full_app, photos,
                                                                                       image_server) -> None:
    doc = document(full_app)
    client = full_app.test_client()
    urls = [f"{image_server}/{name}" for name in ("group_17_faces.jpg", "astronaut.png", "mnist_heldout.png")]
    operations = sorted((path, method) for path, ops in doc["paths"].items() for method in ops)
    deadline = time.monotonic() + BUDGET_S
    seen: dict[int, int] = {}
    failed = []  # once one request failed, hypothesis replays it to shrink it: those must be sent whatever the time

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one_request(data: st.DataObject) -> None:
        path, method = data.draw(st.sampled_from(operations), label="operation")
        operation = doc["paths"][path][method]
        query = data.draw(_query(operation, urls, data.draw(st.booleans(), label="invalid")), label="query")
        kwargs = data.draw(_body(photos), label="body") if method == "post" else {}
        accept = data.draw(st.sampled_from(["*/*", "application/json", "image/png", "image/jpeg;q=0.9, */*;q=0.1",
                                            "text/html"]), label="accept")
        # Past the budget, no new request is sent; everything is drawn all the same, so that hypothesis
        # sees the same data generation whatever the clock says.
        if time.monotonic() > deadline and not failed:
            return
        try:
            r = client.open(path, method=method.upper(), query_string=query, headers={"Accept": accept}, **kwargs)
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500 or (r.status_code == 503 and "/healthz" != path), r.data[:300]
            assert not problems(doc, path, method, r.status_code, r.mimetype, r.data), \
                (method, path, query, problems(doc, path, method, r.status_code, r.mimetype, r.data))
        except Exception:
            failed.append(True)
            raise

    one_request()
    print(f"answers by status: {dict(sorted(seen.items()))}")
    assert seen.get(200, 0) > 0 and any(400 <= code < 500 for code in seen), seen  # both sides were exercised


@pytest.mark.slow
def test_with_api_keys_the_document_names_the_key_and_the_401(make_app) -> None:
    key = "openapi-test-key-0123456789"
    client = make_app({"MYSITE_API_KEYS": key}).test_client()
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    scheme = doc["components"]["securitySchemes"]["X-API-Key"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}
    post = doc["paths"]["/detect"]["post"]
    assert post["security"] == [{"X-API-Key": []}] and "401" in post["responses"]
    photo = (DATA / "astronaut.png").read_bytes()
    r = client.post("/detect", data={"image": (io.BytesIO(photo), "a.png")})
    assert r.status_code == 401 and not problems(doc, "/detect", "post", 401, r.mimetype, r.data)
    r = client.post("/detect", data={"image": (io.BytesIO(photo), "a.png")}, headers={"X-API-Key": key})
    assert r.status_code == 200 and not problems(doc, "/detect", "post", 200, r.mimetype, r.data)
    # Without keys nothing answers 401, and the document says none.
    assert "401" not in document(make_app()).get("paths")["/detect"]["post"]["responses"]
