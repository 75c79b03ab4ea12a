"""Just enough of the W3C WebDriver protocol, over ``requests``, to drive headless Chromium in tests.

chromedriver speaks WebDriver over HTTP; a dozen commands cover what the page tests
need, so the project does not depend on selenium. The browser is locked to loopback:
``--host-resolver-rules`` makes every other host name unresolvable.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from live_server import free_port, stop, wait_until

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--disable-extensions", "--no-default-browser-check", "--no-proxy-server", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


class WebDriverError(RuntimeError):
    """A WebDriver command failed; the message is chromedriver's."""


def find_chromium() -> tuple[str, str] | None:
    """(browser, chromedriver) executables, or None when either is missing."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class Browser:
    """One WebDriver session."""

    def __init__(self, endpoint: str, session: str) -> None:
        self.base = f"{endpoint}/session/{session}"

    def command(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        r = requests.request(method, self.base + path, json=payload if method == "POST" else None, timeout=60)
        value = r.json().get("value")
        if r.status_code != 200:
            raise WebDriverError(f"{method} {path}: {value.get('error')}: {value.get('message', '')[:500]}")
        return value

    def get(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def size(self, width: int, height: int) -> None:
        self.command("POST", "/window/rect", {"width": width, "height": height})

    def find(self, css: str) -> str:
        return self.command("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def run(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) and return its value."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def type(self, css: str, text: str) -> None:
        """Send keys to an element; for ``<input type=file>``, ``text`` is the path of the file to choose."""
        self.command("POST", f"/element/{self.find(css)}/value", {"text": text})

    def text(self, css: str) -> str:
        return self.command("GET", f"/element/{self.find(css)}/text")

    def property(self, css: str, name: str) -> Any:
        return self.command("GET", f"/element/{self.find(css)}/property/{name}")

    def click(self, css: str) -> None:
        self.command("POST", f"/element/{self.find(css)}/click", {})

    def select(self, css: str, value: str) -> None:
        """Choose an ``<option>`` by value, as a person would: click it."""
        self.click(f"{css} option[value='{value}']")

    def pointer(self, css: str, strokes: list[list[tuple[int, int]]]) -> None:
        """Draw with the mouse: each stroke is points relative to the element's centre, pressed between."""
        element = {ELEMENT: self.find(css)}
        actions: list[dict[str, Any]] = []
        for stroke in strokes:
            x, y = stroke[0]
            actions += [{"type": "pointerMove", "origin": element, "x": x, "y": y, "duration": 0},
                        {"type": "pointerDown", "button": 0}]
            actions += [{"type": "pointerMove", "origin": element, "x": x, "y": y, "duration": 30}
                        for x, y in stroke[1:]]
            actions.append({"type": "pointerUp", "button": 0})
        self.command("POST", "/actions", {"actions": [
            {"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": actions}]})
        self.command("DELETE", "/actions")

    def wait_text(self, css: str, contains: str, timeout: float = 20.0) -> str:
        """The text of ``css`` once it contains ``contains``; works with scripts off and across page loads."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = self.text(css)
                if contains in text:
                    return text
            except WebDriverError:
                pass  # not there yet, or the old page's element went stale while the new one loads
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {contains!r} in {css}")
            time.sleep(0.05)

    def wait(self, script: str, *args: Any, timeout: float = 20.0) -> Any:
        """Poll ``script`` until it returns something truthy; its value is returned."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.run(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for: {script}")
            time.sleep(0.05)

    def cdp(self, cmd: str, params: dict[str, Any] | None = None) -> Any:
        """A Chrome DevTools Protocol command, through chromedriver's own endpoint."""
        return self.command("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params or {}})

    def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        """Show pages at ``width`` x ``height`` CSS pixels; ``mobile`` emulates a phone's viewport."""
        if mobile:
            self.cdp("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
        else:
            self.cdp("Emulation.clearDeviceMetricsOverride")
            self.size(width, height)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the viewport, or of the whole page when ``full_page``."""
        if full_page:
            width, height = self.run("const e = document.documentElement; return [e.scrollWidth, e.scrollHeight];")
            data = self.cdp("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            })["data"]
        else:
            data = self.command("GET", "/screenshot")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium(log_dir: Path, extra_args: list[str] | None = None) -> Iterator[Browser]:
    """A headless Chromium with a fresh profile, driven through chromedriver on a loopback port."""
    found = find_chromium()
    if found is None:
        raise FileNotFoundError("chromium and chromedriver are not both installed")
    browser_bin, driver_bin = found
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mysite-chromium-") as profile, \
            (log_dir / "chromedriver.log").open("wb") as log:
        driver = subprocess.Popen([driver_bin, f"--port={port}", "--allowed-ips=127.0.0.1"],
                                  stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LANG": "en_US.UTF-8"})
        endpoint = f"http://127.0.0.1:{port}"
        session = None
        try:
            wait_until(lambda: requests.get(f"{endpoint}/status", timeout=1).json()["value"]["ready"], driver,
                       "chromedriver", timeout=20)
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": browser_bin, "args": [*ARGS, *(extra_args or []), f"--user-data-dir={profile}"],
                },
            }}}
            r = requests.post(f"{endpoint}/session", json=caps, timeout=60)
            if r.status_code != 200:
                raise WebDriverError(f"could not start Chromium: {r.json().get('value')}")
            session = r.json()["value"]["sessionId"]
            yield Browser(endpoint, session)
        finally:
            if session:
                requests.delete(f"{endpoint}/session/{session}", timeout=30)
            stop(driver)
