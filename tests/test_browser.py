"""The page in a real browser: headless Chromium, driven over WebDriver, against the site under gunicorn.

Skipped when Chromium or chromedriver is missing, except when CI=true: there they must run.
Screenshots go to test-artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_server import PROJECT
from tests_helpers import require
from webdriver import Browser, chromium

pytestmark = pytest.mark.slow

DATA = Path(__file__).with_name("data")
ARTIFACTS = PROJECT / "test-artifacts"
LAPTOP, PHONE = (1280, 900), (390, 844)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require("chromium")
    with chromium(ARTIFACTS) as b:
        yield b


def _open(b: Browser, url: str, size: tuple[int, int] = LAPTOP) -> None:
    b.viewport(*size, mobile=size == PHONE)
    b.get(url)
    b.wait("return document.body.dataset.state === 'ready'")


def _run(b: Browser) -> str:
    b.click("#run")
    return b.wait("const s = document.body.dataset.state; return (s === 'done' || s === 'error') && s")


def _canvas_pixels(b: Browser, points: list[tuple[int, int]]) -> list[list[int]]:
    return b.run(
        "const ctx = document.getElementById('canvas').getContext('2d');"
        "return arguments[0].map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data));",
        [list(p) for p in points],
    )


def _yellow(rgba: list[int]) -> bool:
    r, g, b, _ = rgba
    return r > 200 and g > 200 and b < 90


def _assert_boxes_on_canvas(b: Browser, boxes: list[list[int]]) -> None:
    """Each box's left and right edges are painted box-yellow; the face inside is not.

    (Not the top and bottom edges: in a crowd, the label tab of the face below covers them.)
    """
    edges, inside = [], []
    for x1, y1, x2, y2 in boxes:
        edges += [(x1, (y1 + y2) // 2), (x2, (y1 + y2) // 2)]
        inside.append(((x1 + x2) // 2, y1 + (y2 - y1) // 6))  # the forehead: no landmark there
    pixels = _canvas_pixels(b, edges + inside)
    for point, rgba in zip(edges, pixels[: len(edges)], strict=True):
        assert _yellow(rgba), f"no box edge drawn at {point}: {rgba}"
    assert not any(_yellow(p) for p in pixels[len(edges):]), "a face was painted over"


def _answer(b: Browser) -> dict:
    import json

    return json.loads(b.run("return document.getElementById('json').textContent"))


def _visible(b: Browser, css: str) -> list[str]:
    """``data-task``/``data-choice`` of the elements matching ``css`` that a visitor sees."""
    return b.run("return [...document.querySelectorAll(arguments[0])].filter((e) => !e.hidden && !e.disabled)"
                 ".map((e) => e.dataset.choice ? `${e.dataset.task} ${e.dataset.choice}` : e.dataset.task)", css)


def _option_names(b: Browser) -> list[str]:
    return b.run("return [...document.querySelectorAll('fieldset.params:enabled [name]')].map((e) => e.name)")


def test_group_photo_shows_17_faces_with_landmarks_json_and_server_time(browser: Browser, live_server) -> None:
    _open(browser, live_server.url + "/")
    assert browser.run("return document.getElementById('task').value") == "/detect"
    # The page starts on the best detector; the API's default stays the book's Haar cascade.
    assert browser.run("return document.querySelector('fieldset.choice select').value") == "yunet"
    browser.type("#image", str(DATA / "group_17_faces.jpg"))
    assert _run(browser) == "done"
    answer = _answer(browser)
    assert answer["status"] == "ok" and len(answer["result"]) == 17
    assert all(len(d["landmarks"]) == 5 and d["confidence"] > 0.7 for d in answer["result"])
    assert browser.run("return document.getElementById('canvas').dataset.boxes") == "17"
    assert browser.run("return document.getElementById('canvas').dataset.landmarks") == "85"
    # Every landmark is a yellow dot on the canvas.
    points = [p for d in answer["result"] for p in d["landmarks"].values()]
    assert all(_yellow(rgba) for rgba in _canvas_pixels(browser, [tuple(p) for p in points]))
    assert browser.run("const c = document.getElementById('canvas'); return [c.width, c.height]") == [640, 482]
    _assert_boxes_on_canvas(browser, [d["box"] for d in answer["result"]])
    caption = browser.run("return document.getElementById('caption').textContent")
    assert caption.startswith("17 boxes found. Server time: ") and " ms" in caption
    browser.screenshot(ARTIFACTS / "page-detect-laptop.png")


def test_phone_layout_with_a_cat(browser: Browser, live_server) -> None:
    _open(browser, live_server.url + "/", PHONE)
    browser.select("#task", "/catfacedetection")
    browser.type("#image", str(DATA / "cat.jpg"))
    assert _run(browser) == "done"
    answer = _answer(browser)
    assert len(answer["result"]) == 1
    _assert_boxes_on_canvas(browser, [answer["result"][0]["box"]])
    # Nothing sticks out sideways on a phone: no horizontal scrolling.
    assert browser.run("return document.documentElement.scrollWidth <= window.innerWidth")
    assert browser.run("return document.getElementById('canvas').getBoundingClientRect().width <= window.innerWidth")
    browser.screenshot(ARTIFACTS / "page-catface-phone.png")


def test_canny_shows_the_edge_image(browser: Browser, live_server) -> None:
    _open(browser, live_server.url + "/")
    browser.select("#task", "/canny")
    browser.type("#image", str(DATA / "group_17_faces.jpg"))
    assert _run(browser) == "done"
    assert browser.run("return document.getElementById('json').textContent").startswith("(the answer is an image:")
    # The canvas holds the edge map: gray pixels, mostly black, some white.
    stats = browser.run(
        "const c = document.getElementById('canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let white = 0, colour = 0;"
        "for (let i = 0; i < d.length; i += 4) {"
        "  if (d[i] > 128) white++;"
        "  if (Math.abs(d[i] - d[i + 1]) > 16 || Math.abs(d[i] - d[i + 2]) > 16) colour++;"
        "}"
        "return [c.width, c.height, white / (d.length / 4), colour];"
    )
    width, height, white, colour = stats
    assert (width, height) == (640, 482)
    assert 0.01 < white < 0.3 and colour == 0
    browser.screenshot(ARTIFACTS / "page-canny.png", full_page=False)


def test_image_by_url_is_drawn_by_the_server(browser: Browser, live_server, image_server) -> None:
    _open(browser, live_server.url + "/")
    browser.type("#url", f"{image_server}/group_17_faces.jpg")
    assert _run(browser) == "done"
    answer = _answer(browser)
    assert len(answer["result"]) == 17
    _assert_boxes_on_canvas(browser, [d["box"] for d in answer["result"]])


def test_options_follow_the_detector_and_reach_the_model(browser: Browser, live_server) -> None:
    _open(browser, live_server.url + "/")
    browser.click("details.options summary")
    # YuNet chosen: its options, none of the cascade's.
    assert _visible(browser, "fieldset.choice") == ["/detect"]
    assert _visible(browser, "fieldset.params") == ["/detect yunet"]
    assert "min_confidence" in _option_names(browser) and "min_neighbors" not in _option_names(browser)
    browser.screenshot(ARTIFACTS / "page-detector-yunet-options.png", full_page=False)
    browser.select("fieldset.choice select", "haar")
    assert _visible(browser, "fieldset.params") == ["/detect haar"]
    assert "min_neighbors" in _option_names(browser) and "min_confidence" not in _option_names(browser)
    browser.run("document.querySelector('fieldset[data-choice=\"haar\"] input[name=min_neighbors]').value = ''")
    browser.type("fieldset[data-choice='haar'] input[name=min_neighbors]", "100")
    browser.type("#image", str(DATA / "group_17_faces.jpg"))
    assert _run(browser) == "done"
    assert _answer(browser)["result"] == []
    assert browser.run("return document.getElementById('caption').textContent").startswith("0 boxes found.")
    # Haar answers the book's boxes: no confidence, no landmarks.
    browser.run("document.querySelector('fieldset[data-choice=\"haar\"] input[name=min_neighbors]').value = '5'")
    assert _run(browser) == "done"
    result = _answer(browser)["result"]
    assert len(result) == 17 and all(set(d) == {"box"} for d in result)
    # Another task: no detector, and its own options.
    browser.select("#task", "/catfacedetection")
    assert _visible(browser, "fieldset.choice") == [] and _visible(browser, "fieldset.params") == ["/catfacedetection"]


def test_api_errors_are_shown_in_words(browser: Browser, live_server, tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a picture\n")
    _open(browser, live_server.url + "/")
    browser.type("#image", str(notes))
    assert _run(browser) == "error"
    alert = browser.run("const e = document.getElementById('error'); return e.hidden ? '' : e.textContent")
    assert alert.startswith("That file is not an image the server can read. (415) expected an image")
    browser.screenshot(ARTIFACTS / "page-error.png", full_page=False)


def _draw_one(browser: Browser) -> None:
    """A person drawing a "1": one vertical stroke down the middle of the pad, with the mouse."""
    browser.run("document.getElementById('pad').scrollIntoView({block: 'center'})")
    browser.pointer("#pad", [[(4, -95 + 10 * i) for i in range(20)]])


def _read_digit(browser: Browser) -> str:
    browser.click("#pad-read")
    return browser.wait("const s = document.getElementById('digits').dataset.state;"
                        "return (s === 'done' || s === 'error') && s")


def test_digit_drawn_on_the_pad_is_read(browser: Browser, live_server) -> None:
    """On a phone-sized page: a "1" drawn with the pointer is read by the real model; Clear empties the pad."""
    _open(browser, live_server.url + "/", PHONE)
    _draw_one(browser)
    assert _read_digit(browser) == "done"
    assert browser.run("return document.getElementById('digit').textContent") == "1"
    assert browser.run("return document.querySelectorAll('#digit-bars meter').length") == 10
    browser.screenshot(ARTIFACTS / "page-digit.png")
    browser.click("#pad-clear")
    # An empty pad has no ink: the model is not asked, the API's 422 is shown in words.
    assert _read_digit(browser) == "error"


def test_form_works_without_javascript(live_server) -> None:
    """The same page with scripts turned off: the plain form POST shows the JSON and the drawn picture."""
    require("chromium")
    with chromium(ARTIFACTS, extra_args=["--blink-settings=scriptEnabled=false"]) as b:
        b.size(*LAPTOP)
        b.get(live_server.url + "/")
        b.type("#image", str(DATA / "group_17_faces.jpg"))
        b.click("#run")
        text = b.wait_text("#json", '"box"')
        assert text.count('"box"') == 17 and text.count('"landmarks"') == 17  # the page's detector: YuNet
        assert b.property("#server-image", "naturalWidth") == 640
        b.screenshot(ARTIFACTS / "page-no-javascript.png", full_page=False)
