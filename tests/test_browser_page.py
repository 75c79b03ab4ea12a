"""The page for the people who use it, in headless Chromium against gunicorn: labels that leave faces
visible (with a switch, and a label on hover or tap), only the tasks that work in plain words at phone
size, an empty pad said in words, and /mnist laid out like the rest with a way back."""

from __future__ import annotations

import json

from test_browser import ARTIFACTS, DATA, LAPTOP, PHONE, _answer, _open, _read_digit, _run, browser  # noqa: F401
from webdriver import ELEMENT, Browser


def _labels(b: Browser) -> list[list[float]]:
    return json.loads(b.run("return document.getElementById('canvas').dataset.labels || 'null'"))


def _overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _tap(b: Browser, x: float, y: float) -> None:
    """A tap (mouse press) on the canvas at picture pixel (x, y)."""
    dx, dy = b.run(
        "const c = document.getElementById('canvas'); c.scrollIntoView({block: 'center'});"
        "const r = c.getBoundingClientRect(); const k = r.width / c.width;"
        "return [arguments[0] * k - r.width / 2, arguments[1] * k - r.height / 2];", x, y)
    element = {ELEMENT: b.find("#canvas")}
    b.command("POST", "/actions", {"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [{"type": "pointerMove", "origin": element, "x": round(dx), "y": round(dy), "duration": 0},
                    {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})
    b.command("DELETE", "/actions")


def test_labels_never_cover_a_face_and_can_be_switched_off(browser: Browser, live_server) -> None:  # noqa: F811
    for size in (LAPTOP, PHONE):
        _open(browser, live_server.url + "/", size)
        browser.type("#image", str(DATA / "group_17_faces.jpg"))
        assert _run(browser) == "done"
        boxes = [d["box"] for d in _answer(browser)["result"]]
        labels = _labels(browser)
        assert labels, "labels are drawn where there is room"
        hidden = int(browser.run("return document.getElementById('canvas').dataset.hiddenLabels"))
        assert len(labels) + hidden == 17
        for label in labels:
            assert not any(_overlaps(label, box) for box in boxes), f"label {label} covers a face"
            assert not any(_overlaps(label, other) for other in labels if other is not label)
        browser.screenshot(ARTIFACTS / f"page-labels-{size[0]}.png")
    # Switched off: boxes and landmarks only.
    browser.run("document.getElementById('labels').scrollIntoView({block: 'center'})")
    browser.click("#labels")
    assert _labels(browser) == []
    # A tap on a face shows its label, even with labels off.
    x1, y1, x2, y2 = boxes[0]
    _tap(browser, (x1 + x2) / 2, (y1 + y2) / 2)
    assert browser.run("return document.getElementById('canvas').dataset.focus") == "0"


def test_the_page_places_labels_as_the_server_does(browser: Browser, live_server) -> None:  # noqa: F811
    from test_draw_layout import crowd

    from mysite.vision import layout

    _open(browser, live_server.url + "/", LAPTOP)
    boxes, sizes, width, height = crowd()
    boxes.insert(0, [0, 0, width, 24])  # a box along the top edge: the first row's labels go below theirs
    sizes.insert(0, None)
    page = browser.run("return window.mysiteDraw.placeLabels(...arguments)", boxes, sizes, width, height, 1)
    server = layout.place_labels(boxes, sizes, width, height, gap=1)
    assert page == [list(s) if s else None for s in server]
    assert sum(s is not None for s in server) == layout.MAX_LABELS
    assert server[6][1] > boxes[6][3] and server[30][3] < boxes[30][1]  # below in the first row, above in the second


def test_a_phone_sees_plain_tasks_that_fit(browser: Browser, live_server) -> None:  # noqa: F811
    _open(browser, live_server.url + "/", PHONE)
    names = browser.run("return [...document.querySelectorAll('#task option')].map((o) => o.textContent.trim())")
    assert names[0] == "Find faces" and "Read a handwritten digit" in names
    # Nothing a visitor cannot use or read: no missing model's task, no API syntax, no operator instruction.
    text = browser.run("return document.body.innerText")
    for words in ("?detector=", "haar|yunet", "MYSITE_", "python -m", "not loaded", "Say what the photo shows"):
        assert words not in text, words
    fits = browser.run("return [...document.querySelectorAll('select')].filter((s) => s.offsetParent)"
                       ".every((s) => s.getBoundingClientRect().right <= window.innerWidth)")
    assert fits and browser.run("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.screenshot(ARTIFACTS / "page-phone-tasks.png", full_page=False)


def test_an_empty_pad_is_said_to_be_empty(browser: Browser, live_server) -> None:  # noqa: F811
    _open(browser, live_server.url + "/", PHONE)
    browser.run("document.getElementById('pad').scrollIntoView({block: 'center'})")
    assert _read_digit(browser) == "error"
    assert browser.text("#pad-error") == "The pad is empty: draw a digit on it first."


def test_mnist_page_is_styled_and_leads_back(browser: Browser, live_server) -> None:  # noqa: F811
    for size in (LAPTOP, PHONE):
        browser.viewport(*size, mobile=size == PHONE)
        browser.get(live_server.url + "/mnist")
        browser.wait("return document.body.dataset.state === 'ready'")
        style = browser.run("const s = getComputedStyle(document.getElementById('send'));"
                            "return [s.backgroundColor, s.borderRadius]")
        assert style == ["rgb(31, 95, 191)", "8px"], "the page's blue button, not the browser's grey one"
        assert browser.run("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.screenshot(ARTIFACTS / f"mnist-{size[0]}.png")
    browser.click("#read")
    assert browser.wait("return document.body.dataset.state === 'error'")
    assert browser.text("#error") == "The pad is empty: draw a digit on it first."
    browser.click("#back")
    browser.wait("return document.body.dataset.state === 'ready' && !!document.getElementById('task')")
