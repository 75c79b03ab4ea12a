"""The MNIST Flask API's page flow in headless Chromium against the site under gunicorn: our /mnist page,
and that API's own index.html + jQuery index.js, run as printed (jQuery from Debian's libjs-jquery, not a CDN)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import ARTIFACTS, browser  # noqa: F401  (the module's Chromium fixture)
from test_existing_clients import _digit_png
from webdriver import Browser

pytestmark = pytest.mark.slow

JQUERY = Path("/usr/share/javascript/jquery/jquery.min.js")

# The MNIST Flask API's templates/index.html and static/index.js, as printed; only the two script tags are
# filled in place (the CDN's jQuery 2.1.3 -> Debian's jQuery, url_for('static', ...) -> the file's text).
MNIST_API_INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
  <head>
    <title>MNIST CNN</title>
  </head>

  <body>
    <h1>MNIST Handwritten Digits Prediction</h1>

    <form>
      <input type="file" name="img"></input>
      <input type="submit"></input>
    </form>
    <hr>
    <h3>Prediction: <span id="result"></span></h3>

    <script>JQUERY</script>

    <script>INDEX_JS</script>

</body>
</html>
"""
MNIST_API_INDEX_JS = """$("form").submit(function(evt){
    evt.preventDefault();
    var formData = new FormData($(this)[0]);
    $.ajax({
        url: '/predict/',
        type: 'POST',
        data: formData,
        async: false,
        cache: false,
        contentType: false,
        enctype: 'multipart/form-data',
        processData: false,
        success: function (response) {
            $('#result').empty().append(response);
        }
    });
    return false;
});
"""


def _state(b: Browser) -> str:
    return b.wait("const s = document.body.dataset.state; return (s === 'done' || s === 'error') && s")


def test_our_digit_page_reads_a_drawing_and_a_file(browser: Browser, live_server, tmp_path) -> None:  # noqa: F811
    browser.get(live_server.url + "/mnist")
    browser.wait("return document.body.dataset.state === 'ready'")
    browser.run("document.getElementById('pad').scrollIntoView({block: 'center'})")
    browser.pointer("#pad", [[(4, -100 + 10 * i) for i in range(21)]])  # a "1": one stroke down the middle
    browser.click("#read")
    assert _state(browser) == "done"
    assert browser.text("#result") == "1"
    browser.screenshot(ARTIFACTS / "mnist-page.png", full_page=False)
    digit = tmp_path / "seven.png"
    digit.write_bytes(_digit_png(7))
    browser.type("#img", str(digit))
    browser.click("#send")
    browser.wait("return document.getElementById('result').textContent === '7'")
    # An empty drawing is no digit: the server's words are shown, the answer stays empty.
    browser.click("#clear")
    browser.click("#read")
    assert _state(browser) == "error"
    assert "no digit found" in browser.text("#error") and browser.text("#result") == ""


@pytest.mark.needs("jquery")
def test_the_mnist_apis_own_jquery_page_shows_the_digit(browser: Browser, live_server, tmp_path) -> None:  # noqa: F811
    jquery = JQUERY.read_text(encoding="utf-8")
    page = MNIST_API_INDEX_HTML.replace("JQUERY", jquery).replace("INDEX_JS", MNIST_API_INDEX_JS)
    # Same origin as /predict/, as the MNIST Flask API's page was with its app; a JSON answer, not one of our pages,
    # whose Content-Security-Policy (script-src 'self') would stop its inline scripts.
    browser.get(live_server.url + "/healthz")
    browser.run("document.open(); document.write(arguments[0]); document.close();", page)
    browser.wait("return typeof window.jQuery === 'function' && document.querySelector('input[name=img]')")
    digit = tmp_path / "mnist7.png"
    digit.write_bytes(_digit_png(7))
    browser.type("input[name=img]", str(digit))
    browser.click("input[type=submit]")
    browser.wait("return document.getElementById('result').textContent === '7'")
    browser.screenshot(ARTIFACTS / "mnist-api-jquery-page.png", full_page=False)
