"""``python -m bench.decode_memory``: every format's decode beside what the memory budget counts for it.

The request's memory budget is checked before any pixel with ``budget.decode_memory(header, gray,
reduce)``. This measures the decode it stands for: a 12 MP picture (the test photo enlarged to
4032x3024) in each format and mode the site reads is decoded by ``decode_image`` in a fresh
process, colour or gray, full size or reduced 2x, and the growth of that process's peak RSS
(``VmHWM``), with malloc set as in a CV process, is set beside the budget's figure. A ratio over 1 is a request that can take more
memory than it was allowed. Prints a Markdown table; about 2 minutes on 2 CPUs (the encoders
take most of it).

Options: ``--side N`` (the long side, default 4032), ``--only NAME`` (one file, e.g. ``webp-animated``).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from testkit.hostile_inputs import component_scans_jpeg, opaque_animated_webp
from testkit.webp_lossless import groups_webp

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "group_17_faces.jpg"
WAYS = (("colour", 1), ("gray", 1), ("gray", 2), ("colour", 2))

_MEASURE = """
import gc, sys
from mysite.server import memory
memory.limit_arenas(2)
memory.hold_heap()  # malloc as a CV process sets it (mysite/server/pool.py)
from mysite.vision.budget import decode_memory
from mysite.vision.decode import decode_image, read_header
def hwm():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
data = open(sys.argv[1], "rb").read()
gray, reduce = sys.argv[2] == "gray", int(sys.argv[3])
header = read_header(data)
gc.collect()
before = hwm()
decode_image(data, max_pixels=10**9, gray=gray, reduce=reduce, header=header)
print((hwm() - before) * 1024, decode_memory(header, gray, reduce))
"""


def _save(fmt: str, **options: object) -> Callable[[Image.Image], bytes]:
    def save(picture: Image.Image) -> bytes:
        buf = io.BytesIO()
        picture.save(buf, fmt, **options)
        return buf.getvalue()
    return save


def _alpha(picture: Image.Image) -> Image.Image:
    """The picture with a transparency gradient (a canvas drawing's kind of alpha)."""
    rgba = np.asarray(picture.convert("RGBA")).copy()
    rgba[..., 3] = np.linspace(0, 255, rgba.shape[1], dtype=np.uint8)[None, :]
    return Image.fromarray(rgba)


def _sixteen(picture: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(picture.convert("L"), dtype=np.uint16) * 257)


def _wide(mode: str) -> Callable[[Image.Image], Image.Image]:
    """The picture in gray with 32-bit samples: ``F`` (0 to 1) or ``I``."""
    def change(picture: Image.Image) -> Image.Image:
        gray = np.asarray(picture.convert("L"))
        return Image.fromarray(gray.astype(np.float32) / 255 if mode == "F" else gray.astype(np.int32) * 65793)
    return change


def _animated(fmt: str, **options: object) -> Callable[[Image.Image], bytes]:
    def save(picture: Image.Image) -> bytes:
        buf = io.BytesIO()
        frames = [picture.rotate(angle) for angle in (2, 4)]
        picture.save(buf, fmt, save_all=True, append_images=frames, **options)
        return buf.getvalue()
    return save


# name: (how the picture is changed first, how it is written)
FILES: dict[str, tuple[Callable[[Image.Image], Image.Image], Callable[[Image.Image], bytes]]] = {
    "jpeg": (lambda p: p, _save("JPEG", quality=90)),
    "jpeg-progressive": (lambda p: p, _save("JPEG", quality=90, progressive=True)),
    "jpeg-gray": (lambda p: p.convert("L"), _save("JPEG", quality=90)),
    # Each component in a scan of its own (a flat picture: no encoder here writes such scans).
    "jpeg-component-scans": (lambda p: p, lambda p: component_scans_jpeg(p.width, p.height)),
    "png": (lambda p: p, _save("PNG", compress_level=1)),
    "png-gray": (lambda p: p.convert("L"), _save("PNG", compress_level=1)),
    "png-palette": (lambda p: p.convert("P"), _save("PNG", compress_level=1)),
    "png-16bit-gray": (_sixteen, _save("PNG", compress_level=1)),
    "png-alpha": (_alpha, _save("PNG", compress_level=1)),
    "webp": (lambda p: p, _save("WEBP", quality=80, method=0)),
    "webp-lossless": (lambda p: p, _save("WEBP", lossless=True, method=0)),
    # The most prefix-code groups a lossless stream may ask for (written by hand: one per 4x4 tile).
    "webp-lossless-groups": (lambda p: p, lambda p: groups_webp(p.width, p.height, 1 << 16)),
    "webp-alpha": (_alpha, _save("WEBP", quality=80, method=0)),
    "webp-animated": (lambda p: p, _animated("WEBP", quality=80, method=0)),
    # Its header says nothing of transparency (no encoder here writes one so): Pillow opens it as RGB.
    "webp-animated-opaque": (lambda p: p, opaque_animated_webp),
    "gif": (lambda p: p.convert("P"), _save("GIF")),
    "bmp": (lambda p: p, _save("BMP")),
    "tiff": (lambda p: p, _save("TIFF")),
    "tiff-lzw": (lambda p: p, _save("TIFF", compression="tiff_lzw")),
    "tiff-16bit-gray": (_sixteen, _save("TIFF")),
    "tiff-alpha": (_alpha, _save("TIFF")),
    "tiff-cmyk": (lambda p: p.convert("CMYK"), _save("TIFF")),
    "tiff-float-gray": (_wide("F"), _save("TIFF", compression="tiff_adobe_deflate")),
    "tiff-32bit-gray": (_wide("I"), _save("TIFF", compression="tiff_adobe_deflate")),
    "heic": (lambda p: p, _save("HEIF", quality=60)),
    "avif": (lambda p: p, _save("AVIF", quality=60, speed=10)),
    "avif-alpha": (_alpha, _save("AVIF", quality=60, speed=10)),
}


def measure(path: Path, way: str, reduce: int) -> tuple[int, int]:
    """(peak RSS growth, the budget's figure) in bytes, for one decode in a fresh process."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), way, str(reduce)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=4032)
    parser.add_argument("--only")
    args = parser.parse_args()
    import mysite.vision.decode  # noqa: F401  (registers the HEIC reader with Pillow, for the encoder too)

    photo = Image.open(PHOTO).convert("RGB")
    photo = photo.resize((args.side, round(args.side * photo.height / photo.width)))
    names = [args.only] if args.only else list(FILES)
    print(f"# python -m bench.decode_memory: {photo.width}x{photo.height}; MB of peak RSS growth / the budget's MB")
    print()
    print("| file | " + " | ".join(f"{way}{'' if r == 1 else f' 1/{r}'}" for way, r in WAYS) + " | worst ratio |")
    print("|---|" + "---|" * (len(WAYS) + 1))
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            change, write = FILES[name]
            path = Path(tmp) / name
            path.write_bytes(write(change(photo)))
            cells, worst = [], 0.0
            for way, reduce in WAYS:
                used, counted = measure(path, way, reduce)
                worst = max(worst, used / counted)
                cells.append(f"{used / 2**20:.0f} / {counted / 2**20:.0f}")
            worst_all = max(worst_all, worst)
            print(f"| {name} ({path.stat().st_size // 1024} KB) | " + " | ".join(cells) + f" | {worst:.2f} |", flush=True)
    print()
    verdict = "the budget counts at least what every decode takes" if worst_all <= 1 else \
        "some decodes take more than the budget counts"
    print(f"worst ratio {worst_all:.2f}: {verdict}")


if __name__ == "__main__":
    main()
