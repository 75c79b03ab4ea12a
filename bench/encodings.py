"""``python -m bench.encodings``: a 40 MP photo in every encoding the site reads, and what each costs.

The photo (the 12 MP composition scaled to 8000x5000) is written as baseline and progressive
JPEG (RGB and CMYK), PNG, palette and single-strip TIFF, 16-bit TIFF (20 MP), lossless WebP, RLE
BMP, plus a flat-colour 6000x6000 GIF and a progressive JPEG whose last scan repeats to 1 MB.
Each goes to ``/detect`` (Haar, and YuNet for the PNG) of the Procfile's gunicorn, one at a
time; printed: status, seconds, and the peak RSS of the CV process that served it (every CV
process's ``VmHWM`` reset before the request). Then the costliest accepted one from two clients
at once, three times each, while the whole instance's PSS is sampled (``bench.memory.whole_server``).
Loopback only; every request has a timeout.
"""

from __future__ import annotations

import argparse
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from bench.memory import Case, status_mb, whole_server
from bench.server import Server, multipart, request
from testkit import compose

GOAL_PEAK_MB, GOAL_INSTANCE_MB = 300, 512


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def scan_bomb(size: int) -> bytes:
    """A progressive 8000x5000 JPEG whose last scan repeats until the file is ``size`` bytes."""
    data = _save(Image.new("RGB", (8000, 5000), (120, 130, 140)), "JPEG", progressive=True, quality=50)
    start, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[start:end] * max(1, (size - len(data)) // (end - start)) + data[end:]


def rle8_bmp(im: Image.Image) -> bytes:
    """An 8-bit run-length encoded BMP (Pillow reads these but does not write them)."""
    pal = im.quantize(8)
    w, h = pal.size
    rows = np.asarray(pal, np.uint8)
    out = bytearray()
    for row in rows[::-1]:  # bottom-up
        edges = np.flatnonzero(np.diff(row)) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [w]))
        for s, e in zip(starts, ends):
            n, v = int(e - s), int(row[s])
            while n > 0:
                out += bytes((min(n, 255), v))
                n -= 255
        out += b"\x00\x00"
    out += b"\x00\x01"
    palette = (pal.getpalette() or [])[: 3 * 256]
    colours = b"".join(bytes((palette[i + 2], palette[i + 1], palette[i], 0)) for i in range(0, len(palette), 3))
    colours = colours.ljust(256 * 4, b"\0")
    offset = 14 + 40 + len(colours)
    info = (40).to_bytes(4, "little") + w.to_bytes(4, "little") + h.to_bytes(4, "little") + (1).to_bytes(2, "little") \
        + (8).to_bytes(2, "little") + (1).to_bytes(4, "little") + len(out).to_bytes(4, "little") + bytes(8) \
        + (256).to_bytes(4, "little") + bytes(4)
    head = b"BM" + (offset + len(out)).to_bytes(4, "little") + bytes(4) + offset.to_bytes(4, "little")
    return head + info + colours + bytes(out)


def encodings() -> list[tuple[str, str, Callable[[], bytes]]]:
    def photo() -> Image.Image:
        big = cv2.resize(compose.build()[0], (8000, 5000), interpolation=cv2.INTER_CUBIC)
        return Image.fromarray(cv2.cvtColor(big, cv2.COLOR_BGR2RGB))

    def flat() -> Image.Image:  # few colours: lossless encodings of 40 MP stay under the upload limit
        return photo().quantize(8).convert("RGB")

    def half() -> Image.Image:
        return photo().resize((5656, 3536))  # 20 MP

    def tiff16() -> bytes:
        gray = np.asarray(half().quantize(8).convert("L"), np.uint16) * 257
        return _save(Image.fromarray(gray), "TIFF", compression="tiff_lzw")

    return [
        ("baseline JPEG", "/detect", lambda: _save(photo(), "JPEG", quality=90)),
        ("progressive JPEG", "/detect", lambda: _save(photo(), "JPEG", quality=90, progressive=True)),
        ("progressive CMYK JPEG", "/detect", lambda: _save(photo().convert("CMYK"), "JPEG", quality=90, progressive=True)),
        ("PNG", "/detect", lambda: _save(flat(), "PNG")),
        ("PNG, YuNet", "/detect?detector=yunet", lambda: _save(flat(), "PNG")),
        ("single-strip TIFF", "/detect", lambda: _save(flat(), "TIFF", compression="tiff_lzw")),
        ("palette TIFF", "/detect", lambda: _save(flat().quantize(8), "TIFF", compression="tiff_lzw")),
        ("16-bit gray TIFF (20 MP)", "/detect", tiff16),
        ("lossless WebP", "/detect", lambda: _save(flat(), "WEBP", lossless=True, quality=0, method=0)),
        ("RLE BMP", "/detect", lambda: rle8_bmp(photo())),
        ("flat 6000x6000 GIF", "/detect", lambda: _save(Image.new("P", (6000, 6000), 3), "GIF")),
        ("1 MB scan bomb (8000x5000 progressive)", "/detect", lambda: scan_bomb(1_000_000)),
    ]


def send(server: Server, path: str, body: bytes) -> tuple[int, float, float, bytes]:
    """Status, seconds, the CV processes' highest peak RSS (MB), and the answer's start."""
    for pid in server.cv_pids():
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    peak = 0.0
    done = threading.Event()

    def sample() -> None:  # a process killed at its deadline takes its VmHWM with it: sample as it runs
        nonlocal peak
        while not done.is_set():
            for pid in server.cv_pids():
                try:
                    peak = max(peak, status_mb(pid, "VmHWM"))
                except OSError:
                    pass
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    mp, ctype = multipart(body)
    t = time.perf_counter()
    try:
        status, answer = request(server.port, "POST", path, mp, ctype, timeout=120)
    except OSError as exc:  # e.g. the server closed the connection on a body over the upload limit
        status, answer = 0, repr(exc).encode()
    finally:
        seconds = time.perf_counter() - t
        done.set()
        sampler.join()
    return status, seconds, peak, answer[:160]


def main() -> None:
    argparse.ArgumentParser(prog="python -m bench.encodings", description=__doc__.split("\n\n")[0]).parse_args()
    print("| encoding | bytes | status | seconds | CV process peak RSS (MB) | answer |")
    print("| --- | --- | --- | --- | --- | --- |")
    accepted: list[tuple[float, str, str, bytes]] = []
    with Server(workers=2, cv_threads=-1) as server:
        for name, path, build in encodings():
            body = build()
            status, seconds, peak, answer = send(server, path, body)
            what = answer.decode("utf-8", "replace").replace("|", "/") if status != 200 else "ok"
            print(f"| {name} | {len(body):,} | {status} | {seconds:.1f} | {peak:.0f} | {what} |", flush=True)
            if status == 200:
                accepted.append((peak, name, path, body))
            del body
    worst = max(accepted, default=None)
    if worst is None:
        return
    _, name, path, body = worst
    peak_pss, statuses = whole_server(Case(name, path, lambda: multipart(body)))
    worst_peak = max(p for p, *_ in accepted)
    print(f"\nAccepted: peak CV process RSS at most {worst_peak:.0f} MB (goal <= {GOAL_PEAK_MB}). Two '{name}' at "
          f"once: whole instance peak {peak_pss:.0f} MB PSS (goal <= {GOAL_INSTANCE_MB}); statuses {statuses}.")


if __name__ == "__main__":
    main()
