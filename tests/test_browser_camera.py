"""The live camera in headless Chromium with a fake camera that films the group photo (a Y4M file), against
gunicorn: frames scaled in the browser to the chosen width, never more than one request in flight, boxes
and landmarks drawn over the video, frames per second and server time shown; at 1280x900 and 390x844."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_browser import ARTIFACTS, DATA, LAPTOP, PHONE
from tests_helpers import require
from webdriver import Browser, chromium

from testkit.video import write_y4m

# Counts requests in flight from the page's own fetch calls, apart from the page's own bookkeeping.
WATCH_FETCH = """
window.__inFlight = 0; window.__maxInFlight = 0; window.__posts = 0;
const real = window.fetch;
window.fetch = async (...args) => {
  window.__inFlight += 1; window.__posts += 1;
  window.__maxInFlight = Math.max(window.__maxInFlight, window.__inFlight);
  try { return await real(...args); } finally { window.__inFlight -= 1; }
};
"""


@pytest.fixture(scope="module")
def camera_browser(tmp_path_factory) -> Iterator[Browser]:
    require("chromium")
    video = write_y4m(DATA / "group_17_faces.jpg", tmp_path_factory.mktemp("camera") / "group.y4m")
    with chromium(ARTIFACTS, extra_args=["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                         f"--use-file-for-fake-video-capture={video}"]) as b:
        yield b


def _start(b: Browser, url: str, size: tuple[int, int], frames: int) -> dict:
    b.viewport(*size, mobile=size == PHONE)
    b.get(url)
    b.wait("return document.body.dataset.state === 'ready'")
    b.run(WATCH_FETCH)
    b.run("document.getElementById('camera').scrollIntoView({block: 'start'})")
    b.click("#camera-start")
    b.wait("return Number(document.getElementById('camera').dataset.frames || 0) >= arguments[0]", frames,
           timeout=60)
    return b.run("const s = document.getElementById('camera').dataset;"
                 "return {frames: +s.frames, size: s.frameSize, boxes: +s.boxes, fps: +s.fps, pageMax: +s.maxInFlight,"
                 " max: window.__maxInFlight, posts: window.__posts,"
                 " stats: document.getElementById('camera-stats').textContent}")


def _yellow_on_overlay(b: Browser) -> int:
    return b.run("const c = document.getElementById('camera-overlay');"
                 "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
                 "for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] > 200 && d[i + 2] < 90"
                 " && d[i + 3] > 200) n++; return n;")


def test_live_camera_sends_one_frame_at_a_time_and_draws_the_faces(camera_browser: Browser, live_server) -> None:
    b = camera_browser
    seen = _start(b, live_server.url + "/", LAPTOP, frames=8)
    assert seen["max"] == 1 and seen["pageMax"] == 1, "never more than one frame in flight"
    assert seen["size"] == "640x480"
    assert seen["boxes"] >= 12, seen  # YuNet on the filmed group photo
    assert seen["fps"] > 0 and "frames/s · server time " in seen["stats"] and " ms · 640×480" in seen["stats"]
    assert _yellow_on_overlay(b) > 500, "boxes and landmarks are drawn over the video"
    b.screenshot(ARTIFACTS / "camera-laptop.png", full_page=False)
    # A smaller frame width is what is sent; the boxes still land on the video's faces.
    b.select("#camera-width", "320")
    b.wait("return document.getElementById('camera').dataset.frameSize === '320x240'", timeout=30)
    # Another camera (a phone's back one) restarts the stream; still one frame at a time.
    frames = b.run("return +document.getElementById('camera').dataset.frames")
    b.select("#camera-facing", "environment")
    b.wait("return +document.getElementById('camera').dataset.frames >= arguments[0] + 4", frames, timeout=60)
    assert b.run("return window.__maxInFlight") == 1
    b.click("#camera-stop")
    assert b.run("return document.getElementById('camera').dataset.state") == "off"
    posts = b.run("return window.__posts")
    b.run("return new Promise((r) => setTimeout(r, 500))")
    assert b.run("return window.__posts") - posts <= 1, "stopped: no more frames are sent"


def test_live_camera_on_a_phone(camera_browser: Browser, live_server) -> None:
    b = camera_browser
    seen = _start(b, live_server.url + "/", PHONE, frames=4)
    assert seen["max"] == 1 and seen["boxes"] >= 12
    assert b.run("return document.documentElement.scrollWidth <= window.innerWidth")
    video, overlay = b.run("return ['camera-video', 'camera-overlay'].map((id) => {"
                           " const r = document.getElementById(id).getBoundingClientRect();"
                           " return [r.left, r.top, r.width, r.height].map(Math.round); })")
    assert video == overlay and video[2] <= 390, "the drawing lies exactly over the video, inside the screen"
    b.screenshot(ARTIFACTS / "camera-phone.png", full_page=False)
    b.click("#camera-stop")

