"""``python -m bench.heif_memory``: peak memory of decoding a 12 MP HEIC and AVIF, per decoded pixel.

HEIC and AVIF are decoded by Pillow's plugins (libheif through pillow-heif, libavif), not
OpenCV: the request's memory budget counts them with ``decode.pillow_only_memory``. This
measures what that figure stands for: each decode (colour or gray, full size or reduced 4x)
runs in a fresh process, and the growth of its peak RSS (``VmHWM``: ``ru_maxrss`` would carry this
process's peak over the exec) over the moment
before the decode is divided by the picture's pixels. Prints a Markdown table with the
figure the budget uses beside each. The photos are the test group photo enlarged to
4032x3024 (an iPhone's 12 MP) and encoded here; encoding the HEIC takes about 15 s of CPU.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from mysite.vision import decode

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "group_17_faces.jpg"
SIZE = (4032, 3024)

_MEASURE = """
import gc, sys
from mysite.vision.decode import decode_image, pillow_only_memory, read_header
def hwm():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
data = open(sys.argv[1], "rb").read()
gray, reduce = sys.argv[2] == "gray", int(sys.argv[3])
header = read_header(data)
gc.collect()
before = hwm()
decode_image(data, max_pixels=10**9, gray=gray, reduce=reduce, header=header)
peak = hwm()
pixels = header.width * header.height
print((peak - before) * 1024 / pixels, pillow_only_memory(header, gray, reduce) / pixels)
"""


def photos(folder: Path) -> dict[str, Path]:
    """The 12 MP photo as HEIC and as AVIF, written into ``folder``."""
    big = Image.open(PHOTO).convert("RGB").resize(SIZE)
    out = {}
    for fmt, options in (("HEIF", {"quality": 80}), ("AVIF", {"quality": 80, "speed": 8})):
        buf = io.BytesIO()
        big.save(buf, fmt, **options)
        out[fmt] = folder / f"photo.{fmt.lower()}"
        out[fmt].write_bytes(buf.getvalue())
    return out


def main() -> None:
    assert "HEIF" in decode.FORMATS, "pillow-heif is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        files = photos(Path(tmp))
        print(f"| format | decode | peak RSS growth per pixel | budget's figure per pixel |  ({SIZE[0]}x{SIZE[1]})")
        print("| --- | --- | --- | --- |")
        for fmt, path in files.items():
            for gray in ("color", "gray"):
                for reduce in ("1", "4"):
                    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), gray, reduce],
                                          capture_output=True, text=True, timeout=300, check=True)
                    measured, budgeted = (float(v) for v in done.stdout.split())
                    print(f"| {fmt} | {gray}, 1/{reduce} | {measured:.1f} B | {budgeted:.0f} B |")


if __name__ == "__main__":
    main()
