"""The existing clients' routes, in-process: time (wall and CPU) and memory (peak and kept RSS).

    python -m bench.compat            # about 1 minute on 2 idle CPUs (2 min under load 12); --reps N (default 5)

Each route gets the body its client sends: the bird classifier's form (``bird_image``; faces, as no
classifier ships), the MNIST Flask API's multipart ``img`` and canvas data URL on ``/predict/``, the
AIDemo client's base64 body on ``/predictor``, DeepStack's multipart on ``/v1/vision/face``, beside ``/detect``
on the same photo. Photos: the group photo (0.3 MP) and the 12 MP composition of
``testkit/compose.py``. Memory is this process's RSS: peak (VmHWM) over the run and what is
kept after the requests of each route, relative to before.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.measure import interleaved
from bench.server import multipart
from mysite import create_app
from testkit import compose

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), in MB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def routes(client: Any, photo: bytes, digit: bytes) -> dict[str, Callable[[], int]]:
    """One call per existing client, as that client sends it; each answers the status code."""
    form, form_type = multipart(photo, "bird_image", "bird.jpg")
    image, image_type = multipart(photo)
    img, img_type = multipart(digit, "img", "digit.png")
    b64 = base64.b64encode(photo)
    data_url = b"data:image/png;base64," + base64.b64encode(digit)
    return {
        "/detect (book, for comparison)": lambda: client.post("/detect", data=image,
                                                              content_type=image_type).status_code,
        "POST / (bird classifier form)": lambda: client.post("/", data=form, content_type=form_type).status_code,
        "/predictor (AIDemo base64)": lambda: client.post("/predictor", data=b64).status_code,
        "/v1/vision/face (DeepStack)": lambda: client.post("/v1/vision/face", data=image,
                                                           content_type=image_type).status_code,
        "/predict/ (MNIST API img)": lambda: client.post("/predict/", data=img, content_type=img_type).status_code,
        "/predict/ (MNIST API data URL)": lambda: client.post("/predict/", data=data_url).status_code,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.compat", description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="timed calls per route and photo (default 5)")
    args = ap.parse_args(argv)
    client = create_app({"MYSITE_URL_FETCH": "off", "MYSITE_LOG_LEVEL": "ERROR"}).test_client()
    digit = (DATA / "mnist_heldout.png").read_bytes()
    started = time.monotonic()
    print(f"mysite bench.compat: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print("\n| route (client) | photo | wall ms median / p90 | CPU ms | status | RSS kept after the route (MB) |")
    print("|---|---|---|---|---|---|")
    for name, photo in (("group_17_faces.jpg", (DATA / "group_17_faces.jpg").read_bytes()),
                        ("composition_12mp.jpg", compose.build_jpeg()[0])):
        for label, fn in routes(client, photo, digit).items():
            gc.collect()
            before = rss_mb()
            (timing, status), = interleaved({label: fn}, args.reps).values()
            gc.collect()
            kept = rss_mb() - before
            print(f"| {label} | {name} | {timing} | {timing.cpu:.0f} | {status} | {kept:+.1f} |")
    print(f"\npeak RSS of the process (VmHWM): {rss_mb('VmHWM'):.0f} MB; now {rss_mb():.0f} MB; "
          f"ran {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
