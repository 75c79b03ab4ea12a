"""Every row of the registered endpoint table, tested without a test of its own.

A row added to mysite/web/endpoints.py's table is picked up here: a real photo in every
way the API takes one (multipart, raw body, JSON base64, ?url= from loopback) must be
answered 200 as /openapi.json documents; bad input must get a documented JSON 4xx.
"""

from __future__ import annotations

import base64
import io

import pytest
from openapi_check import problems
from tests_helpers import DATA

from mysite.web.openapi import document
from mysite.web.state import current_endpoints, current_registry

# A photo with something for the model to find, by model kind; anything else gets the group of faces.
PHOTOS = {"digits": "digit_7.png", "ssd": "cat.jpg", "classify": "cat.jpg", "yunet": "astronaut.png",
          "blazeface": "astronaut.png"}


@pytest.fixture(scope="module")
def table(full_app):
    client = full_app.test_client()
    rows = current_endpoints(full_app)
    assert rows, "the app registered no endpoint"
    return full_app, client, document(full_app), rows


def _photo(app, model: str) -> str:
    return PHOTOS.get(current_registry(app).entries[model].spec.kind, "group_17_faces.jpg")


def _check(doc, path, method, r, want_ok: bool) -> list[str]:
    out = problems(doc, path, method, r.status_code, r.mimetype, r.data)
    if want_ok and r.status_code != 200:
        out.append(f"{r.status_code} {r.data[:200]!r}")
    if not want_ok and not (400 <= r.status_code < 500 and r.mimetype == "application/json"):
        out.append(f"bad input answered {r.status_code} {r.mimetype}, not a JSON 4xx")
    return [f"{method} {path}: {p}" for p in out]


@pytest.mark.slow
def test_every_registered_endpoint_answers_a_real_photo_every_way(table, image_server):
    app, client, doc, rows = table
    failures = []
    for ep in rows:
        models = ep.choice.models.items() if ep.choice else [("", ep.model)]
        for value, model in models:
            name = _photo(app, model)
            photo = (DATA / name).read_bytes()
            query = {ep.choice.param: value} if ep.choice else {}
            sends = {
                "multipart": {"data": {"image": (io.BytesIO(photo), name)}},
                "raw body": {"data": photo, "content_type": "image/png" if name.endswith(".png") else "image/jpeg"},
                "JSON base64": {"json": {"image": base64.b64encode(photo).decode()}},
            }
            for how, kwargs in sends.items():
                r = client.post(ep.path, query_string=query, **kwargs)
                failures += [f"{p} ({how}, {value or ep.model})" for p in _check(doc, ep.path, "POST", r, True)]
            r = client.get(ep.path, query_string={**query, "url": f"{image_server}/{name}"})
            failures += [f"{p} (?url=, {value or ep.model})" for p in _check(doc, ep.path, "GET", r, True)]
    assert not failures, "\n".join(failures)


def test_every_registered_endpoint_refuses_bad_input_with_a_json_4xx(table):
    app, client, doc, rows = table
    failures = []
    for ep in rows:
        bad = {
            "no image": client.post(ep.path),
            "no url": client.get(ep.path),
            "not an image": client.post(ep.path, data=b"%PDF-1.4 not a picture", content_type="image/jpeg"),
            "bad base64": client.post(ep.path, json={"image": "!!!!"}),
            "empty file": client.post(ep.path, data={"image": (io.BytesIO(b""), "x.jpg")}),
        }
        # Every parameter the document declares, with a value of its choice (?detector=) that reads it.
        photo = (DATA / _photo(app, ep.model)).read_bytes()
        for p in doc["paths"][ep.path]["post"]["parameters"]:
            if p["name"] == "url" or (p["schema"].get("type") == "string" and "enum" not in p["schema"]):
                continue
            query = {p["name"]: "nonsense"}
            if ep.choice is not None and p["name"] != ep.choice.param:
                query[ep.choice.param] = next(v for v, m in ep.choice.models.items()
                                              if any(q.name == p["name"] for q in current_registry(app).get(m).params)
                                              or p["name"] in ("output", "format"))
            bad[f"{p['name']}=nonsense"] = client.post(ep.path, query_string=query,
                                                       data={"image": (io.BytesIO(photo), "p.jpg")})
        for how, r in bad.items():
            failures += [f"{p} ({how})" for p in _check(doc, ep.path, "POST" if how != "no url" else "GET", r, False)]
            if r.status_code == 400 and "=" in how and how.split("=")[0] not in r.get_json().get("message", ""):
                failures.append(f"{ep.path} ({how}): the message does not name the parameter: {r.get_json()}")
    assert not failures, "\n".join(failures)
