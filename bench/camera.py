"""``python -m bench.camera``: the live camera's frame rate, as the page sends frames, over HTTP to one worker.

The page sends one frame at a time (the next when the answer is in), as a JPEG of the chosen width,
to ``/detect?detector=yunet``. This sends the same: the group photo at 640x480 (and 320x240, 480x360)
as browser-quality JPEGs, one request in flight, on one keep-alive connection, to the Procfile's
gunicorn with one web worker and one CV process (``--cv-processes``), for ``--seconds`` per size.
Prints a Markdown table: frames/s (wall), the median and p90 round trip, the median server time
(``Server-Timing``), the CPU per frame of every process of the instance (web worker, dispatcher, CV),
and the frames/s that CPU time allows (what a machine with a free core for the worker would reach).
``--browser`` also runs the page itself in headless Chromium with a fake camera filming the photo
and reads the frames/s the page shows. Never fails. Takes about ``4 x --seconds``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2

from bench.server import Server
from testkit.net import HOST, ROOT
from testkit.video import write_y4m

PHOTO = ROOT / "tests" / "data" / "group_17_faces.jpg"
SIZES = ((640, 480), (480, 360), (320, 240))
QUALITY = 80  # canvas.toBlob("image/jpeg", 0.8), as camera.js sends


def frame(size: tuple[int, int]) -> bytes:
    """The group photo as one camera frame of ``size``, a JPEG as the browser encodes it."""
    image = cv2.resize(cv2.imread(str(PHOTO), cv2.IMREAD_COLOR), size, interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()


def _body(jpeg: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"frame.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + jpeg + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def run(server: Server, jpeg: bytes, seconds: float) -> dict[str, float]:
    """Frames sent one at a time for ``seconds``: frames/s, round trips, server times, the instance's CPU per frame."""
    body, ctype = _body(jpeg)
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    trips, servers, faces = [], [], 0
    cpu0 = server.cpu_seconds()
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds and len(trips) < 10_000:
            t = time.perf_counter()
            conn.request("POST", "/detect?detector=yunet", body=body,
                         headers={"Content-Type": ctype, "Accept": "application/json"})
            response = conn.getresponse()
            answer = response.read()
            trips.append((time.perf_counter() - t) * 1000)
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {answer[:200]!r}")
            timing = response.getheader("Server-Timing") or ""
            if "dur=" in timing:
                servers.append(float(timing.split("dur=")[-1].split(",")[0]))
            faces = answer.count(b'"box"')
    finally:
        conn.close()
    wall = time.perf_counter() - started
    cpu = (server.cpu_seconds() - cpu0) / max(1, len(trips))
    return {"fps": len(trips) / wall, "p50": statistics.median(trips),
            "p90": statistics.quantiles(trips, n=10)[-1] if len(trips) > 9 else max(trips),
            "server": statistics.median(servers) if servers else float("nan"),
            "cpu_ms": cpu * 1000, "cpu_fps": 1 / cpu if cpu else float("nan"), "frames": len(trips), "faces": faces}


def browser_fps(port: int, seconds: float) -> dict[str, float] | str:
    """The page's own live camera in headless Chromium (a fake camera filming the photo at 640x480).

    Run in a child process whose path has ``tests/``, where the tests' WebDriver client lives.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-m", "bench.camera", "--browser-child", str(port), "--seconds", str(seconds)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 180)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return f"not run: {(done.stderr.strip().splitlines() or ['exit ' + str(done.returncode)])[-1]}"
    return json.loads(lines[-1])


def _browser_child(port: int, seconds: float) -> None:
    """Drive the page's camera against ``port`` and print its frames/s as JSON (see ``browser_fps``)."""
    from webdriver import chromium, find_chromium

    if find_chromium() is None:
        raise SystemExit("chromium and chromedriver are not both installed")
    with tempfile.TemporaryDirectory() as tmp:
        video = write_y4m(PHOTO, Path(tmp) / "group.y4m")
        args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={video}"]
        with chromium(Path(tmp), extra_args=args) as b:
            b.size(1280, 900)
            b.get(f"http://{HOST}:{port}/")
            b.wait("return document.body.dataset.state === 'ready'")
            b.click("#camera-start")
            b.wait("return Number(document.getElementById('camera').dataset.frames || 0) >= 3", timeout=60)
            first = b.run("return [performance.now(), +document.getElementById('camera').dataset.frames]")
            time.sleep(seconds)
            last = b.run("return [performance.now(), +document.getElementById('camera').dataset.frames,"
                         " document.getElementById('camera').dataset.frameSize]")
            b.click("#camera-stop")
    print(json.dumps({"fps": (last[1] - first[1]) / ((last[0] - first[0]) / 1000), "size": last[2]}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per frame size (default 10)")
    parser.add_argument("--browser", action="store_true", help="also run the page in headless Chromium")
    parser.add_argument("--browser-child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--cv-processes", type=int, default=1,
                        help="MYSITE_CV_PROCESSES: the CV processes that run the detections (default 1)")
    parser.add_argument("--cv-threads", type=int, default=-1, help="MYSITE_CV_THREADS of the worker (default -1)")
    args = parser.parse_args(argv)
    if args.browser_child:
        _browser_child(args.browser_child, args.seconds)
        return
    with Server(workers=1, cv_threads=args.cv_threads,
                extra_env={"MYSITE_CV_PROCESSES": str(args.cv_processes)}) as server:
        warm = frame(SIZES[0])
        run(server, warm, 1.0)  # the model's first call, and the connection
        load = os.getloadavg()[0]
        print(f"One gunicorn worker, MYSITE_CV_PROCESSES={args.cv_processes}, MYSITE_CV_THREADS={args.cv_threads}; "
              "/detect?detector=yunet, one frame in flight, "
              f"{args.seconds:g} s per size; "
              f"JPEG quality {QUALITY}.\n")
        print("| frame | frames/s | round trip p50 / p90 ms | server ms (p50) | instance CPU ms/frame "
              "| frames/s its CPU allows | faces |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for size in SIZES:
            r = run(server, frame(size), args.seconds)
            print(f"| {size[0]}x{size[1]} | {r['fps']:.1f} | {r['p50']:.1f} / {r['p90']:.1f} | {r['server']:.1f} "
                  f"| {r['cpu_ms']:.1f} | {r['cpu_fps']:.1f} | {r['faces']:.0f} |")
        print(f"\nLoad average (1 min) {load:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs: "
              "above the CPU count, frames/s is the machine's share, and the CPU column is the figure to compare.")
        if args.browser:
            seen = browser_fps(server.port, args.seconds)
            print()
            if isinstance(seen, str):
                print(f"Browser: {seen}")
            else:
                print(f"The page's live camera in headless Chromium (fake camera, {seen['size']} frames): "
                      f"{seen['fps']:.1f} frames/s (the browser, its JPEG encoding and the server share the machine).")


if __name__ == "__main__":
    main()
