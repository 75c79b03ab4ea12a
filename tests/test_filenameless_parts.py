"""A multipart image part without a filename (RFC 7578 makes it optional) is the image, on every image route."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import requests

from mysite.web.endpoints import ENDPOINTS

DATA = Path(__file__).with_name("data")
GROUP = (DATA / "group_17_faces.jpg").read_bytes()
DIGIT = (DATA / "digit_7.png").read_bytes()


def _post(client, path: str, files) -> tuple[int, object]:  # type: ignore[no-untyped-def]
    """POST ``files`` encoded exactly as requests encodes them (``(None, data)``: a part with no filename)."""
    prepared = requests.Request("POST", f"http://localhost{path}", files=files).prepare()
    r = client.post(path, data=prepared.body, headers={"Content-Type": prepared.headers["Content-Type"]})
    body = r.get_json(silent=True)
    if isinstance(body, dict):
        body.pop("duration", None)
    return r.status_code, body if body is not None else r.data


@pytest.mark.parametrize("path", [ep.path for ep in ENDPOINTS])
@pytest.mark.parametrize("field", ["image", "file", "img"])
def test_a_part_without_filename_is_answered_as_one_with(full_app, path: str, field: str) -> None:
    client = full_app.test_client()
    photo = DIGIT if "digit" in path or path == "/predict/" else GROUP
    named = _post(client, path, {field: ("photo.jpg", photo, "image/jpeg")})
    bare = _post(client, path, {field: (None, photo)})
    assert named[0] == 200, named
    assert bare == named


def test_several_parts_without_filenames_are_several_images(full_app) -> None:
    status, body = _post(full_app.test_client(), "/detect", [("image", (None, GROUP)), ("image", (None, GROUP))])
    assert status == 200
    assert [len(r["result"]) for r in body["results"]] == [17, 17]  # type: ignore[index]


def test_base64_text_in_a_part_without_filename_still_works(full_app) -> None:
    client = full_app.test_client()
    assert _post(client, "/detect", {"image": (None, base64.b64encode(GROUP))})[0] == 200
    data_url = b"data:image/jpeg;base64," + base64.b64encode(GROUP)
    assert _post(client, "/detect", {"image": (None, data_url)})[0] == 200
    status, body = _post(client, "/detect", {"image": (None, b"some words, no picture")})
    assert status == 415 and body["reason"] == "unsupported_media"  # type: ignore[index]


def test_requests_without_a_filename_through_gunicorn(live_server) -> None:
    r = requests.post(f"{live_server.url}/detect", files={"image": (None, GROUP)}, timeout=60)
    assert r.status_code == 200 and len(r.json()["result"]) == 17
