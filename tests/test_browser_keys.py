"""The page and /mnist in headless Chromium against gunicorn with MYSITE_API_KEYS set: the visitor types
the key once, the scripts send it as X-API-Key (never in the URL), and a missing key is said in words."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_server import LiveServer, start_gunicorn
from test_browser import ARTIFACTS, DATA, _answer, _open, _run, browser  # noqa: F401  (the module's Chromium fixture)
from test_existing_clients import _digit_png
from webdriver import Browser

pytestmark = pytest.mark.slow

KEY = "page-key-0123456789"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> Iterator[LiveServer]:
    with start_gunicorn({"MYSITE_API_KEYS": KEY}, log_dir=tmp_path_factory.mktemp("log")) as live:
        yield live


def test_page_asks_for_the_key_and_sends_it(browser: Browser, keyed_server, tmp_path) -> None:  # noqa: F811
    _open(browser, keyed_server.url + "/")
    browser.run("sessionStorage.clear()")
    browser.select("#task", "/catfacedetection")
    browser.type("#image", str(DATA / "cat.jpg"))
    assert _run(browser) == "error"
    alert = browser.text("#error")
    assert alert.startswith("This server wants an API key: type it in the API key field. (401)")
    browser.type("#api-key", KEY)
    browser.run("document.getElementById('api-key').dispatchEvent(new Event('change'))")
    assert _run(browser) == "done"
    assert len(_answer(browser)["result"]) == 1
    browser.screenshot(ARTIFACTS / "page-api-key.png", full_page=False)
    # The tab keeps the key: /mnist has it already, and sends it with the drawing's data URL.
    browser.get(keyed_server.url + "/mnist")
    browser.wait("return document.body.dataset.state === 'ready'")
    assert browser.run("return document.getElementById('api-key').value") == KEY
    digit = tmp_path / "seven.png"
    digit.write_bytes(_digit_png(7))
    browser.type("#img", str(digit))
    browser.click("#send")
    browser.wait("return document.getElementById('result').textContent === '7'")
    # No key was ever put in a URL: gunicorn's access log has the requests, not the key.
    log = keyed_server.log.read_text()
    assert "POST /catfacedetection" in log and "POST /predict/" in log and KEY not in log
