"""The page's "Faces with names" card in headless Chromium, against gunicorn with the face model and
MYSITE_ADMIN_KEYS set: register a person with the admin key, see the list, name them on the boxes
of a photo among 17 strangers, forget them; at 1280x900 and on a phone (390x844)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from live_server import LiveServer, start_gunicorn
from test_browser import ARTIFACTS, DATA, LAPTOP, PHONE, _open, _yellow, browser  # noqa: F401
from tests_helpers import face_model_or_skip
from webdriver import Browser

pytestmark = pytest.mark.slow

ADMIN = "admin-key-0123456789"


@pytest.fixture(scope="module")
def faces_server(tmp_path_factory) -> Iterator[LiveServer]:
    model = face_model_or_skip()
    db = tmp_path_factory.mktemp("db") / "faces.sqlite3"
    with start_gunicorn({"MYSITE_FACEID_MODEL": str(model), "MYSITE_FACES_DB": f"sqlite:///{db}",
                         "MYSITE_ADMIN_KEYS": ADMIN}, log_dir=tmp_path_factory.mktemp("log")) as live:
        yield live


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> tuple[str, list[int]]:
    """The group photo with the astronaut (mirrored, 140 px) pasted below its 17 faces; and where she was pasted."""
    group = cv2.imread(str(DATA / "group_17_faces.jpg"))
    astronaut = cv2.imread(str(DATA / "astronaut.png"))
    canvas = np.vstack([group, np.full((160, group.shape[1], 3), 200, np.uint8)])
    canvas[492:632, 250:390] = cv2.resize(cv2.flip(astronaut[40:200, 140:300], 1), (140, 140))
    path = tmp_path_factory.mktemp("photos") / "crowd.jpg"
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return str(path), [250, 492, 390, 632]


def _state(b: Browser) -> str:
    return b.wait("const s = document.getElementById('people').dataset.state;"
                  "return (s === 'ready' || s === 'done' || s === 'error') && s")


def _submit(b: Browser, button: str) -> str:
    b.run("document.getElementById('people').dataset.state = 'sent'")
    b.click(button)
    return _state(b)


def _recognize(b: Browser, photo: str) -> list[str]:
    b.type("#who-photo", photo)
    assert _submit(b, "#who-run") == "done"
    import json
    return json.loads(b.run("return document.getElementById('who-canvas').dataset.names"))


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_register_with_the_admin_key_then_names_on_the_boxes(browser: Browser, faces_server, crowd, size) -> None:  # noqa: F811
    import json

    _open(browser, faces_server.url + "/", size)
    assert _state(browser) == "ready"
    assert browser.text("#people-list") == "Nobody is registered yet."
    browser.type("#person-name", "Eileen Collins")
    browser.type("#person-photos", str(DATA / "astronaut.png"))
    # Without the admin key the server refuses, and the card says so in words.
    assert _submit(browser, "#register-run") == "error"
    assert "(401)" in browser.text("#people-error")
    browser.type("#admin-key", ADMIN)
    assert _submit(browser, "#register-run") == "done"
    assert browser.text("#people-status") == "Eileen Collins: 1 face registered."
    assert browser.text("#people-list").startswith("Eileen Collins (1 photo)")
    # She is named among 17 strangers, who stay unknown; her name is drawn outside her box.
    photo, pasted = crowd
    assert _recognize(browser, photo) == ["Eileen Collins"]
    box, = json.loads(browser.run("return document.getElementById('who-canvas').dataset.namedBoxes"))
    assert pasted[0] <= box[0] < box[2] <= pasted[2] and pasted[1] <= box[1] < box[3] <= pasted[3]
    assert browser.text("#who-caption") == "18 faces: Eileen Collins."
    spots = json.loads(browser.run("return document.getElementById('who-canvas').dataset.labels"))
    near = [s for s in spots if s[0] < box[2] and box[0] < s[2] and box[1] - 40 < s[3] and s[1] < box[3] + 40]
    assert near and not any(s[0] < box[2] and box[0] < s[2] and s[1] < box[3] and box[1] < s[3] for s in near)
    # Her box's left and right edges are drawn; her forehead is not painted over.
    mid = (box[1] + box[3]) // 2
    edges = _canvas_pixels_of(browser, [(box[0], mid), (box[2], mid), ((box[0] + box[2]) // 2, box[1] + 8)])
    assert _yellow(edges[0]) and _yellow(edges[1]) and not _yellow(edges[2]), edges
    # Nothing scrolls sideways, on a phone either.
    assert browser.run("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.run("document.getElementById('who-result').scrollIntoView({block: 'center'})")
    name = "faces-page" if size == LAPTOP else "faces-phone"
    browser.screenshot(ARTIFACTS / f"{name}.png", full_page=False)
    # Forget her (the admin key again): the list empties and she is unknown.
    browser.click("button[aria-label='Forget Eileen Collins']")
    browser.wait("return document.getElementById('people-list').textContent === 'Nobody is registered yet.'")
    assert _recognize(browser, photo) == []


def _canvas_pixels_of(b: Browser, points: list[tuple[int, int]]) -> list[list[int]]:
    return b.run(
        "const ctx = document.getElementById('who-canvas').getContext('2d');"
        "return arguments[0].map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data));",
        [list(p) for p in points],
    )


def test_with_api_keys_the_list_waits_for_the_key(browser: Browser, tmp_path) -> None:  # noqa: F811
    key = "page-key-0123456789"
    env = {"MYSITE_FACEID_MODEL": str(face_model_or_skip()), "MYSITE_FACES_DB": f"sqlite:///{tmp_path / 'f.sqlite3'}",
           "MYSITE_API_KEYS": key, "MYSITE_ADMIN_KEYS": ADMIN}
    with start_gunicorn(env, log_dir=tmp_path) as live:
        _open(browser, live.url + "/")
        browser.run("sessionStorage.clear()")
        assert _state(browser) == "ready"
        assert browser.text("#people-list") == "Type the API key above to see who is registered."
        browser.type("#api-key", key)
        browser.run("document.getElementById('api-key').dispatchEvent(new Event('change'))")
        browser.wait("return document.getElementById('people-list').textContent === 'Nobody is registered yet.'")
