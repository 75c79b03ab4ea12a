"""Every error answer of every registered route carries a ``reason`` from the one documented set."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from mysite.errors import REASONS, ApiError, Reason, reason_for

API_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "api.md"
PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
                        "0000000a49444154789c6360000000020001e221bc330000000049454e44ae426082")


def _requests(path: str, methods: set[str]) -> list[tuple[str, dict]]:
    """Bad requests of every kind this route could receive."""
    sends: list[tuple[str, dict]] = [
        ("PUT", {}), ("DELETE", {}),
        ("GET", {"query_string": {"url": "ftp://127.0.0.1/x.jpg"}}),  # refused before any connection
        ("GET", {"query_string": {"url": "http://127.0.0.1:1/x.jpg", "min_neighbors": "lots"}}),
    ]
    if "POST" in methods:
        sends += [
            ("POST", {}),  # no image
            ("POST", {"data": b"%PDF-1.4 not a picture", "content_type": "application/pdf"}),
            ("POST", {"data": {"image": (io.BytesIO(b"\xff\xd8\xff\xe0" + b"\0" * 64), "x.jpg")}}),  # broken JPEG
            ("POST", {"data": {"image": (io.BytesIO(PNG_1PX), "x.png")}, "query_string": {"output": "nonsense"}}),
            ("POST", {"data": b"\xff\xd8\xff" + b"\0" * 1_200_000, "content_type": "image/jpeg"}),  # over 1 MB
            ("POST", {"data": b"{\"image\": 3", "content_type": "application/json"}),
        ]
    return sends


@pytest.mark.parametrize("overrides", [
    {"MYSITE_MAX_UPLOAD_MB": "1"},
    # Every model missing: each image route answers its 503.
    {"MYSITE_MAX_UPLOAD_MB": "1", "MYSITE_MODEL_DIR": "/nonexistent", "MYSITE_FACE_CASCADE": "/nonexistent/f.xml",
     "MYSITE_CAT_CASCADE": "/nonexistent/c.xml"},
])
def test_every_error_answer_of_every_route_has_a_documented_reason(make_app, overrides) -> None:
    app = make_app(overrides)
    client = app.test_client()
    seen: dict[str, set[int]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method, kwargs in _requests(rule.rule, set(rule.methods or ())):
            r = client.open(rule.rule, method=method, **kwargs)
            if r.status_code < 400:
                continue
            if r.mimetype == "text/html":  # the page shows its errors in the page itself
                assert rule.rule in ("/", "/mnist"), (rule.rule, method, r.status_code)
                continue
            body = r.get_json(silent=True)
            assert isinstance(body, dict), (rule.rule, method, r.status_code, r.data[:200])
            assert body.get("reason") in REASONS, (rule.rule, method, r.status_code, body)
            assert body.get("message"), (rule.rule, method, body)  # the human message stays beside it
            seen.setdefault(body["reason"], set()).add(r.status_code)
    assert r_nowhere(client) == "not_found"
    # The loop really met the errors it is about (a broken loop must not pass by seeing none).
    expected = {"method_not_allowed", "url_refused", "missing_image", "unsupported_media", "too_large"}
    if "MYSITE_MODEL_DIR" in overrides:
        expected.add("model_not_loaded")
    else:
        expected |= {"bad_parameter", "bad_image"}
    assert expected <= set(seen), seen


def r_nowhere(client) -> str:
    return client.get("/no/such/route").get_json()["reason"]


def test_healthz_names_the_missing_model_by_reason(make_app) -> None:
    r = make_app({"MYSITE_FACE_CASCADE": "/nonexistent/f.xml"}).test_client().get("/healthz")
    assert r.status_code == 503 and r.get_json()["reason"] == "model_not_loaded"


def test_reasons_are_stable_snake_case_words_each_class_has_one_and_a_raise_may_override() -> None:
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", r) for r in REASONS) and len(set(REASONS)) == len(REASONS)
    for cls in ApiError.__subclasses__():
        assert cls.reason.value in REASONS
    assert ApiError("x", reason=Reason.URL_REFUSED).body() == {"status": "bad request", "message": "x",
                                                              "reason": "url_refused"}
    assert reason_for(404) is Reason.NOT_FOUND and reason_for(418) is Reason.HTTP_ERROR


def test_the_api_guide_documents_every_reason() -> None:
    text = API_GUIDE.read_text()
    missing = [r for r in REASONS if f"`{r}`" not in text]
    assert not missing, f"docs/api.md does not document {missing}"
