"""``python -m bench.png_check``: what checking a PNG's image data (``mysite/vision/png_data.py``) costs a decode.

Before OpenCV decodes a PNG, its data is inflated once to see that it ends with its rows. This
times ``decode_image`` on 12 MP PNGs (the test photo enlarged to 4032x3024: as a photo, gray,
and flat) with the check and with it switched off, the least of five runs each, in CPU seconds;
then a 64x64 PNG followed by 1 GB of deflated zeros, which the check refuses and libpng would
inflate to the end. About 30 seconds on 2 CPUs.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image

from mysite.errors import ApiError
from mysite.vision import decode, png_data
from testkit.hostile_inputs import png_inflate_surplus

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "group_17_faces.jpg"


def _png(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    return buf.getvalue()


def _cpu(fn: Callable[[], object], runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        try:
            fn()
        except ApiError:
            pass
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    argparse.ArgumentParser(prog="python -m bench.png_check", description=__doc__.split("\n\n")[0]).parse_args()
    photo = Image.open(PHOTO).convert("RGB").resize((4032, 3024))
    files = {"photo, RGB": _png(photo), "photo, gray": _png(photo.convert("L")),
             "flat, RGB": _png(Image.new("RGB", photo.size, (120, 130, 140))),
             "64x64 then 1 GB of zeros": png_inflate_surplus(1024)}
    check = png_data.check
    print("# python -m bench.png_check: CPU seconds of decode_image, least of 5 runs\n")
    print("| PNG | size | check alone | decode, checked | decode, unchecked | checked / unchecked |")
    print("|---|---|---|---|---|---|")
    for name, data in files.items():
        alone = _cpu(partial(check, data))
        checked = _cpu(partial(decode.decode_image, data, max_pixels=10**9))
        png_data.check = lambda data: None  # type: ignore[assignment]
        try:
            unchecked = _cpu(partial(decode.decode_image, data, max_pixels=10**9), runs=1 if "zeros" in name else 5)
        finally:
            png_data.check = check  # type: ignore[assignment]
        print(f"| {name} | {len(data) / 2**20:.1f} MB | {alone:.3f} | {checked:.3f} | {unchecked:.3f} | "
              f"{checked / unchecked:.2f} |", flush=True)


if __name__ == "__main__":
    main()
