"""Hostile requests for the site's image endpoints: generated, mutated and bomb inputs, reproducibly.

Used by the CI fuzz test (``tests/test_fuzz.py``) and by any campaign against a running
server. Everything is built in memory from real photos; nothing is downloaded, and the only
URLs generated are literal addresses the site's ``?url=`` policy refuses before connecting
(or that the caller turns off with ``MYSITE_URL_FETCH=off``).

Interface::

    from testkit.hostile_inputs import Request, requests, bombs, mutate, photos_from

    photos = photos_from(Path("tests/data"), max_side=160)   # {name: bytes}, real photos made small
    for r in requests(seed=0, count=2000, paths=["/detect", "/canny"], photos=photos):
        r.method, r.path, r.headers, r.body, r.kind    # one HTTP request; path has its query string
        r.client_kwargs()                               # the same as Flask test-client keyword arguments

- ``requests(seed, count, paths, photos)``: ``count`` requests spread over ``paths`` and
  every input form (``kind``: multipart, multipart-text, batch, raw, base64, data-url,
  json, form, malformed-multipart, url, get, bomb), with bad and extreme parameters mixed in.
  The same seed gives the same requests, byte for byte.
- ``bombs()``: ``(name, bytes)`` pixel and decompression bombs: headers declaring 40 MP with
  a few hundred bytes behind them (JPEG, PNG, GIF, BMP, WebP), a real 8000x5000 RGBA PNG
  of about 160 KB, thin 3000x1 and 70000x2 images, an AVIF whose header says 64x48 over a
  4096x4096 picture and one that says 64x64 over a grid of 8192x8192, a 64x64 TIFF in one
  8192x8192 tile, a 64x64 PNG whose image data inflates on to 128 MB; built once and cached.
- ``mutate(data, rng)``: one hostile edit of a file (bit flips, truncation, inserted,
  repeated or zeroed bytes, an overwritten header field, two files spliced).
- ``image(rng)``: a small random image in a random format (HEIC and AVIF included), mode and shape.

Bound the campaign yourself: ``count`` is exact, and each request is at most a few MB.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import random
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
import pillow_heif
from PIL import Image

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF", "HEIF")
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff",
        "WEBP": "image/webp", "AVIF": "image/avif", "HEIF": "image/heic"}
FIELDS = ("image", "file", "img")

# Parameter values: bad ones (400 expected) and the extremes of the documented ranges (accepted or refused by budget).
PARAM_VALUES: dict[str, Sequence[str]] = {
    "scale_factor": ("1.05", "1.1", "2", "1.0", "0", "-1", "nan", "inf", "1e309", "abc", ""),
    "min_neighbors": ("0", "1", "5", "100", "-1", "101", "3.5", "9" * 30),
    "min_size": ("1", "25", "10000", "0", "-5", "1e3", "x"),
    "min_face": ("0", "0.001", "0.025", "1", "1.5", "-0.1", "nan"),
    "low": ("0", "100", "10000", "-1", "10001"),
    "high": ("0", "200", "10000", "x"),
    "output": ("json", "image", "base64", "IMAGE", "gif", "", "\u00e9"),
    "format": ("png", "jpeg", "jpg", "gif", "PNG"),
    "detector": ("haar", "dnn", "dnn-full", "yunet", "", "../../etc/passwd"),
    "min_confidence": ("0", "1", "0.5", "2", "nan"),
    "nms": ("0", "1", "-1"),
    "labels": ("cat", "cat,dog", "unicorn", ",,,", "cat," * 50),
    "top": ("1", "1000", "0", "1001"),
    "url": ("", "ftp://127.0.0.1/x", "http://10.0.0.1/x", "http://[::1]/x", "http://169.254.169.254\\@a.invalid/",
            "file:///etc/passwd", "http://0x7f000001/", "javascript:alert(1)", "http://127.0.0.1:1/%00"),
}


@dataclass(frozen=True)
class Request:
    """One HTTP request: ``path`` includes its query string; ``body`` is sent as it is."""

    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = ""  # which input form or attack it is
    repeated: tuple[tuple[str, str], ...] = ()  # more header lines, a name perhaps many times

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for Flask's ``test_client().open(**kwargs)``."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() != "content-type"] + list(self.repeated)
        return {"path": self.path, "method": self.method, "data": self.body, "headers": headers,
                "content_type": self.headers.get("Content-Type")}


# --- images -------------------------------------------------------------------------------------


def photos_from(folder: Path, max_side: int = 160) -> dict[str, bytes]:
    """The real photos of ``folder`` (jpg, png), each scaled so its long side is at most ``max_side``, as JPEG/PNG."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            continue
        f = max_side / max(img.shape[:2])
        if f < 1:
            img = cv2.resize(img, (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))),
                             interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(path.suffix.lower() if path.suffix.lower() != ".jpeg" else ".jpg", img)
        if ok:
            out[path.name] = buf.tobytes()
    return out


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "HEIF":  # written by pillow-heif itself: registering its Pillow plugin here would change how the site reads
        pillow_heif.from_pillow(im).save(buf, **kw)
    else:
        im.save(buf, fmt, **kw)
    return buf.getvalue()


def image(rng: random.Random) -> bytes:
    """A small random image: some format, mode (gray, alpha, palette, 16-bit, bilevel, CMYK) and shape."""
    fmt = rng.choice(FORMATS)
    w, h = rng.choice([(1, 1), (2, 3), (64, 48), (120, 90), (300, 1), (1, 300), (33, 17), (160, 160)])
    mode = rng.choice(["L", "RGB", "RGBA", "LA", "P", "1", "I;16", "CMYK"])
    arr = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr, "RGB")
    if mode == "I;16":
        im = Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257)
    elif mode != "RGB":
        im = im.convert(mode)
    try:
        return _save(im, fmt)
    except (OSError, ValueError, KeyError):
        return _save(im.convert("RGB"), fmt)


def jpeg_header(width: int, height: int) -> bytes:
    """A JPEG whose frame header declares ``width`` x ``height`` but holds the data of a 16x16 picture."""
    small = _save(Image.new("RGB", (16, 16), (90, 120, 150)), "JPEG")
    i = small.index(b"\xff\xc0")
    return small[: i + 5] + struct.pack(">HH", height, width) + small[i + 9:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, color_type: int = 6, rows: int | None = None, depth: int = 8) -> bytes:
    """A PNG of zeros (color type 6: RGBA); ``rows`` limits the rows actually compressed (None: all)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\x00" * (1 + width * channels * depth // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height if rows is None else rows)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_header(width: int, height: int) -> bytes:
    small = _save(Image.new("P", (4, 4)), "GIF")
    return small[:6] + struct.pack("<HH", width, height) + small[10:]


def bmp_header(width: int, height: int) -> bytes:
    small = _save(Image.new("RGB", (4, 4)), "BMP")
    return small[:18] + struct.pack("<ii", width, height) + small[26:]


@lru_cache(maxsize=1)
def bombs() -> tuple[tuple[str, bytes], ...]:
    """Pixel and decompression bombs, and the shapes that once broke decoding or encoding."""
    return (
        ("jpeg-header-8000x5000", jpeg_header(8000, 5000)),
        ("jpeg-header-65500x65500", jpeg_header(65500, 65500)),
        ("jpeg-header-6400x6250", jpeg_header(6400, 6250)),
        ("png-rgba-8000x5000", png(8000, 5000, 6)),
        ("png-gray-8000x5000-truncated", png(8000, 5000, 0, rows=10)),
        ("png-rgb16-4000x3000-truncated", png(4000, 3000, 2, rows=5, depth=16)),
        ("gif-header-65535x65535", gif_header(65535, 65535)),
        ("bmp-header-30000x30000", bmp_header(30000, 30000)),
        ("bmp-header-negative", bmp_header(-5, -5)),
        ("png-3000x1", _save(Image.new("L", (3000, 1), 128), "PNG")),
        ("webp-3000x1", _save(Image.new("L", (3000, 1), 128), "WEBP")),
        ("tiff-1x3000", _save(Image.new("L", (1, 3000), 128), "TIFF")),
        ("png-70000x2", _save(Image.new("L", (70000, 2), 128), "PNG")),
        ("avif-4096x4096-saying-64x48", avif_saying(4096, 4096, 64, 48)),
        ("avif-grid-8192x8192-saying-64x64", heif_canvas(8, 8, 1024, says=(64, 64))),
        ("tiff-64x64-in-a-8192x8192-tile", tiff_tiled(np.zeros((64, 64), np.uint8), 8192)),
        ("png-64x64-then-128-mb-of-zeros", png_inflate_surplus(128)),  # small, like the others: a batch of it fits
    )


def iso_box(kind: bytes, payload: bytes) -> bytes:
    """An ISO base media box (HEIC, AVIF, MP4)."""
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def iso_full_box(kind: bytes, payload: bytes, version: int = 0) -> bytes:
    """A box with a version and flags."""
    return iso_box(kind, bytes([version, 0, 0, 0]) + payload)


def av1_sequence_header(width: int, height: int) -> bytes:
    """A reduced still-picture AV1 sequence header OBU for ``width`` x ``height`` (AV1 5.5)."""
    bits = "000" + "1" + "1" + "11111" + format(15, "04b") + format(15, "04b")
    bits += format(width - 1, "016b") + format(height - 1, "016b") + "1"
    bits += "0" * (-len(bits) % 8)
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return bytes([0x0A, len(payload)]) + payload


def avif_track_flood(tracks: int, size: int) -> bytes:
    """An AVIF sequence of ``tracks`` AV1 tracks whose first samples are all the same ``size`` bytes:
    a sequence header, then one padding OBU."""
    header = av1_sequence_header(64, 48)
    pad = size - len(header) - 5  # the padding OBU's payload, after its header byte and 4-byte size
    sample = header + b"\x7a" + bytes([(pad >> 7 * i & 0x7F) | (0x80 if i < 3 else 0) for i in range(4)]) + bytes(pad)

    def moov(at: int) -> bytes:
        stsd = iso_full_box(b"stsd", struct.pack(">I", 1) + iso_box(b"av01", bytes(78)))
        stsz = iso_full_box(b"stsz", struct.pack(">II", len(sample), 1))
        stco = iso_full_box(b"stco", struct.pack(">II", 1, at))
        stbl = iso_box(b"stbl", stsd + stsz + stco)
        return iso_box(b"moov", iso_box(b"trak", iso_box(b"mdia", iso_box(b"minf", stbl))) * tracks)

    ftyp = iso_box(b"ftyp", b"avis\0\0\0\0avismif1")
    head = ftyp + moov(0)
    return ftyp + moov(len(head) + 8) + iso_box(b"mdat", sample)


def avif_saying(width: int, height: int, says_width: int, says_height: int) -> bytes:
    """A flat ``width`` x ``height`` AVIF whose header (its ``ispe`` property) states another size."""
    data = bytearray(_save(Image.new("RGB", (width, height), (120, 130, 140)), "AVIF", quality=50, speed=10))
    at = data.index(b"ispe") + 8
    data[at: at + 8] = struct.pack(">II", says_width, says_height)
    return bytes(data)


def _iso_children(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The payload bounds of the first box of each type between ``start`` and ``end`` (32-bit sizes only)."""
    found: dict[bytes, tuple[int, int]] = {}
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        found.setdefault(kind, (start + 8, start + size))
        start += size
    return found


def _heif_picture(side: int, fmt: str) -> tuple[bytes, bytes, bytes, bytes]:
    """A flat ``side``-pixel square encoded as HEIC or AVIF (``fmt``: "HEIF" or "AVIF"): its coded data, its
    configuration box, its item type and the file's brand."""
    one = _save(Image.new("RGB", (side, side), (120, 130, 140)), fmt, quality=50, **({"speed": 10} if fmt == "AVIF" else {}))
    config, coding, brand = (b"av1C", b"av01", b"avif") if fmt == "AVIF" else (b"hvcC", b"hvc1", b"heic")
    meta = _iso_children(one, 0, len(one))[b"meta"]
    boxes = _iso_children(one, meta[0] + 4, meta[1])
    config_at = _iso_children(one, *_iso_children(one, *boxes[b"iprp"])[b"ipco"])[config]
    iloc = boxes[b"iloc"][0]
    assert one[iloc] == 0 and one[iloc + 6: iloc + 8] == b"\0\1", "one item, located by version 0"
    base_size = one[iloc + 5] >> 4
    base = int.from_bytes(one[iloc + 12: iloc + 12 + base_size], "big")
    offset, length = struct.unpack_from(">II", one, boxes[b"iloc"][1] - 8)  # its one extent
    return one[base + offset: base + offset + length], one[config_at[0] - 8: config_at[1]], coding, brand


def _heif_file(brand: bytes, meta_box: Callable[[int], bytes], data: bytes) -> bytes:
    """``ftyp``, the ``meta`` box ``meta_box(where the data starts)`` makes, and ``mdat``."""
    ftyp = iso_box(b"ftyp", brand + b"\0\0\0\0mif1" + brand + b"miaf")
    head = ftyp + meta_box(0)
    return ftyp + meta_box(len(head) + 8) + iso_box(b"mdat", data)


def _heif_meta(items: bytes, iloc: list[tuple[int, int, int]], properties: bytes, associations: bytes,
               more: bytes = b"") -> bytes:
    """A ``meta`` box whose primary item is item 1: ``items`` (``infe`` boxes), one (item, offset, length) each."""
    count = len(iloc)
    return iso_full_box(b"meta", iso_full_box(b"hdlr", bytes(4) + b"pict" + bytes(13))
                        + iso_full_box(b"pitm", struct.pack(">H", 1))
                        + iso_full_box(b"iloc", bytes([0x44, 0]) + struct.pack(">H", len(iloc)) + b"".join(
                            struct.pack(">HHHII", i, 0, 1, at, n) for i, at, n in iloc))
                        + iso_full_box(b"iinf", struct.pack(">H", count) + items) + more
                        + iso_box(b"iprp", iso_box(b"ipco", properties)
                                  + iso_full_box(b"ipma", struct.pack(">I", count) + associations)))


def heif_cropped(side: int, shown: int, fmt: str = "HEIF") -> bytes:
    """A flat ``side``-pixel square HEIC (or AVIF) whose clean aperture (``clap``) shows ``shown`` pixels of it."""
    coded, config, coding, brand = _heif_picture(side, fmt)
    clap = iso_box(b"clap", struct.pack(">IIIIiIiI", shown, 1, shown, 1, 0, 1, 0, 1))
    properties = iso_full_box(b"ispe", struct.pack(">II", side, side)) + config + clap
    item = iso_full_box(b"infe", struct.pack(">HH", 1, 0) + coding + b"\0", version=2)
    return _heif_file(brand, lambda at: _heif_meta(item, [(1, at, len(coded))], properties,
                                                   struct.pack(">HBBBB", 1, 3, 1, 0x82, 0x83)), coded)


def heif_canvas(columns: int, rows: int, tile: int, says: tuple[int, int] | None = None, fmt: str = "AVIF",
                overlay: bool = False) -> bytes:
    """A HEIC or AVIF (``fmt``: "HEIF" or "AVIF") drawn from ``columns`` x ``rows`` flat ``tile``-pixel tiles,
    each its own copy of the encoder's data, as a grid (or, with ``overlay``, an overlay of one tile on a canvas
    of that size); its ``ispe`` states the canvas, or ``says`` (width, height) instead."""
    coded, config, coding, brand = _heif_picture(tile, fmt)
    width, height = columns * tile, rows * tile
    cells = range(2, 2 + (1 if overlay else columns * rows))
    canvas = (bytes([0, 1]) + bytes(8) + struct.pack(">IIii", width, height, 0, 0) if overlay
              else bytes([0, 1, rows - 1, columns - 1]) + struct.pack(">II", width, height))
    infe = iso_full_box(b"infe", struct.pack(">HH", 1, 0) + (b"iovl" if overlay else b"grid") + b"\0", version=2)
    infe += b"".join(iso_full_box(b"infe", struct.pack(">HH", i, 0) + coding + b"\0", version=2) for i in cells)
    iref = iso_full_box(b"iref", iso_box(b"dimg", struct.pack(">HH", 1, len(cells)) + b"".join(
        struct.pack(">H", i) for i in cells)))
    properties = (iso_full_box(b"ispe", struct.pack(">II", tile, tile)) + config
                  + iso_full_box(b"ispe", struct.pack(">II", *(says or (width, height)))))
    associations = struct.pack(">HBB", 1, 1, 3) + b"".join(struct.pack(">HBBB", i, 2, 1, 0x82) for i in cells)

    def meta_box(at: int) -> bytes:
        places = [(1, at, len(canvas))] + [(i, at + len(canvas) + k * len(coded), len(coded)) for k, i in enumerate(cells)]
        return _heif_meta(infe, places, properties, associations, more=iref)

    return _heif_file(brand, meta_box, canvas + coded * len(cells))


# --- mutations ----------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One hostile edit of ``data``."""
    if not data:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    b = bytearray(data)
    n = len(b)
    op = rng.randrange(8)
    if op == 0:  # flip bits
        for _ in range(rng.randrange(1, 16)):
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncate
        del b[rng.randrange(n):]
    elif op == 2:  # insert random bytes
        at = rng.randrange(n)
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 256)))
    elif op == 3:  # repeat a slice
        a = rng.randrange(n)
        piece = b[a: a + rng.randrange(1, 512)]
        b[a:a] = piece * rng.randrange(2, 8)
    elif op == 4:  # zero a run
        a, k = rng.randrange(n), rng.randrange(1, 256)
        b[a: a + k] = bytes(len(b[a: a + k]))
    elif op == 5:  # overwrite a header field with an extreme value
        at = rng.randrange(min(n, 64))
        b[at: at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00"])
    elif op == 6:  # splice: the head of this file with random bytes after it
        b = b[: rng.randrange(n)] + bytes(rng.randrange(256) for _ in range(rng.randrange(16, 512)))
    else:  # interesting bytes (JPEG markers, PNG chunk names) somewhere in the middle
        at = rng.randrange(n)
        b[at:at] = rng.choice([b"\xff\xd8", b"\xff\xd9", b"\xff\xc0\x00\x11\x08\xff\xff\xff\xff", b"IEND", b"IDAT",
                               b"\x00" * 8, b"GIF89a"])
    return bytes(b)


# --- requests -----------------------------------------------------------------------------------


def _multipart(parts: list[tuple[str, bytes, str | None]], boundary: str) -> bytes:
    """A multipart body: (field, value, filename or None for a text field)."""
    out = []
    for name, value, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        ctype = "Content-Type: application/octet-stream\r\n" if filename is not None else ""
        out.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n{ctype}\r\n".encode() + value + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


def _query(rng: random.Random, extreme_ok: bool) -> str:
    """A query string of zero to four parameters, bad or extreme values included."""
    names = [n for n in PARAM_VALUES if n != "url"]
    pairs = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 4])):
        name = rng.choice(names + ["nonsense", "min_face"])
        values = PARAM_VALUES.get(name, ("1",))
        value = rng.choice(values)
        if not extreme_ok and name in ("min_face", "min_size", "scale_factor") and value in ("0", "1", "1.05", "0.001"):
            value = "0.025" if name == "min_face" else ("25" if name == "min_size" else "1.1")
        pairs.append(f"{quote(name)}={quote(value)}")
    return ("?" + "&".join(pairs)) if pairs else ""


def _payload(rng: random.Random, photos: Sequence[bytes], allow_bombs: bool) -> tuple[bytes, str]:
    """Image bytes and what they are: a photo, a mutated photo, a generated image, a bomb, or junk."""
    roll = rng.random()
    if allow_bombs and roll < 0.06:
        name, data = rng.choice(bombs())
        return data, f"bomb:{name}"
    if roll < 0.35:
        return rng.choice(photos), "photo"
    if roll < 0.75:
        return mutate(rng.choice(photos), rng), "mutated"
    if roll < 0.92:  # every format and mode, half of them damaged: each decoder's own errors
        generated = image(rng)
        return (mutate(generated, rng), "mutated") if rng.random() < 0.5 else (generated, "generated")
    junk = [b"", b"%PDF-1.4\n", b"PK\x03\x04" + b"\x00" * 40, b"<html></html>", b"\x00" * 100,
            "\u00e9\u4e2d".encode(), b"GIF89a"]
    return rng.choice(junk), "junk"


def requests(seed: int, count: int, paths: Sequence[str], photos: dict[str, bytes] | Sequence[bytes],
             allow_bombs: bool = True, extreme_params: bool = True) -> Iterator[Request]:
    """``count`` hostile requests spread over ``paths`` and every input form; the same seed, the same requests.

    ``extreme_params=False`` keeps the cascade parameters at cheap values (for a campaign
    that must run fast on big photos); bad values are still sent.
    """
    rng = random.Random(seed)
    pics = list(photos.values()) if isinstance(photos, dict) else list(photos)
    forms = ["multipart", "multipart", "multipart-text", "batch", "raw", "raw", "base64", "data-url", "json",
             "form", "malformed-multipart", "url", "get", "bad-method"]
    for i in range(count):
        path = rng.choice(paths)
        form = rng.choice(forms)
        data, what = _payload(rng, pics, allow_bombs)
        q = _query(rng, extreme_params)
        yield _build(rng, form, path + q, data, f"{form}/{what}", i)


def _build(rng: random.Random, form: str, path: str, data: bytes, kind: str, i: int) -> Request:
    boundary = f"b{i:06d}x"
    mp = f"multipart/form-data; boundary={boundary}"
    if form == "multipart":
        return Request("POST", path, _multipart([(rng.choice(FIELDS), data, "p.jpg")], boundary),
                       {"Content-Type": mp}, kind)
    if form == "multipart-text":  # base64 or a data URL in a text field, maybe with parameters beside it
        text = base64.b64encode(data)
        if rng.random() < 0.5:
            text = b"data:image/png;base64," + text
        parts = [(rng.choice(FIELDS), text, None)]
        if rng.random() < 0.5:
            parts.append(("min_neighbors", rng.choice([b"3", b"-1", b"\xff\xfe"]), None))
        return Request("POST", path, _multipart(parts, boundary), {"Content-Type": mp}, kind)
    if form == "batch":
        parts = [("image", data if rng.random() < 0.5 else mutate(data, rng), f"{k}.jpg")
                 for k in range(rng.choice([2, 3, 16, 17]))]
        return Request("POST", path, _multipart(parts, boundary), {"Content-Type": mp}, kind)
    if form == "raw":
        ctype = rng.choice([*MIME.values(), "image/x-anything", "application/octet-stream", None])
        return Request("POST", path, data, {"Content-Type": ctype} if ctype else {}, kind)
    if form == "base64":
        text = base64.b64encode(data)
        if rng.random() < 0.3:
            text = base64.urlsafe_b64encode(data).rstrip(b"=")
        if rng.random() < 0.2:
            text = b"\n".join(text[k: k + 76] for k in range(0, len(text), 76))
        if rng.random() < 0.2:
            text = mutate(text, rng)
        ctype = rng.choice(["text/plain", "application/x-www-form-urlencoded"])
        return Request("POST", path, text, {"Content-Type": ctype}, kind)
    if form == "data-url":
        head = rng.choice([b"data:image/png;base64,", b"data:;base64,", b"data:image/png,",
                           b"  DATA:image/jpeg;BASE64,"])
        return Request("POST", path, head + base64.b64encode(data), {"Content-Type": "text/plain"}, kind)
    if form == "json":
        choice = rng.randrange(7)
        if choice == 0:
            body = json.dumps({"image": base64.b64encode(data).decode()}).encode()
        elif choice == 1:
            body = b'{"image": "\\ud800"}'
        elif choice == 2:
            depth = rng.choice([100, 1000, 5000])
            body = b"[" * depth + b"]" * depth
        elif choice == 3:
            body = json.dumps({"image": rng.choice([1, None, [], {}, True, "", "=" * 10])}).encode()
        elif choice == 4:
            body = b'{"image": "' + mutate(base64.b64encode(data), rng) + b'"'
        elif choice == 5:
            body = json.dumps([base64.b64encode(data).decode()]).encode()
        else:
            body = b'{"image": "data:image/png;base64,' + base64.b64encode(data) + b'", "x": ' + b"9" * 5000 + b"}"
        return Request("POST", path, body, {"Content-Type": "application/json"}, kind)
    if form == "form":
        body = b"image=" + quote(base64.b64encode(data)).encode() + b"&min_size=" + rng.choice([b"25", b"%ff", b"-1"])
        return Request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}, kind)
    if form == "malformed-multipart":
        body = _multipart([("image", data, "p.jpg")], boundary)
        variant = rng.randrange(6)
        if variant == 0:
            body = body[: rng.randrange(len(body))]  # cut anywhere
        elif variant == 1:
            mp = "multipart/form-data"  # no boundary
        elif variant == 2:
            mp = f"multipart/form-data; boundary={'x' * 200}"
        elif variant == 3:
            body = body.replace(b"\r\n", b"\n")
        elif variant == 4:
            body = f"--{boundary}\r\n".encode() + b"Content-Disposition: form-data\r\n\r\n" + data + b"\r\n"
        else:
            body = mutate(body, rng)
        return Request("POST", path, body, {"Content-Type": mp}, kind)
    if form == "url":
        url = rng.choice(PARAM_VALUES["url"])
        sep = "&" if "?" in path else "?"
        return Request(rng.choice(["GET", "POST"]), f"{path}{sep}url={quote(url)}", b"", {}, kind)
    if form == "get":
        return Request("GET", path, b"", {"Accept": rng.choice(["*/*", "application/json", "image/png", "text/html"])},
                       kind)
    return Request(rng.choice(["PUT", "DELETE", "PATCH", "HEAD"]), path, data[:1000], {}, kind)


# --- algorithmic complexity ---------------------------------------------------------------------
# Inputs of size n for every parser on a request's path, each built to make that parser do the
# most work per byte (bench/scaling.py doubles n and checks the time at most follows).

MULTIPART = "multipart/form-data; boundary=hostile"


def newline_body(n: int) -> bytes:
    """16 base64 characters, ``n`` line breaks, one byte no base64 has: quadratic for a backtracking test."""
    return b"A" * 16 + b"\n" * n + b"!"


def base64_lines(n: int) -> bytes:
    """``n`` bytes of data as MIME base64 (76-character lines): the common case, at its full length."""
    return base64.encodebytes((bytes(range(256)) * (n // 256 + 1))[:n])


def data_url_parameters(n: int) -> bytes:
    """A data URL with about ``n`` bytes of ``;a=b`` parameters and no comma."""
    return b"data:image/png" + b";a=b" * (n // 4) + b"!"


def json_nested(n: int) -> bytes:
    """Arrays nested ``n`` deep."""
    return b"[" * n + b"]" * n


def json_values(n: int) -> bytes:
    """An array of about ``n`` bytes of empty objects (json.loads builds each: many times the body's size)."""
    return b"[" + b"{}," * (n // 3) + b"{}]"


def json_escapes(n: int) -> bytes:
    """A JSON image string of about ``n`` bytes of ``\\u`` escapes."""
    return b'{"image": "' + b"\\u0041" * (n // 6) + b'"}'


def _part_head(name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--hostile\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


def multipart_crlf(n: int) -> bytes:
    """One file part of about ``n`` bytes of line breaks (werkzeug before 3.0.1 was quadratic on it)."""
    return _part_head("image", "a.jpg") + b"\r\n" * (n // 2) + b"\r\n--hostile--\r\n"


def multipart_false_boundaries(n: int) -> bytes:
    """One file part of about ``n`` bytes of boundary delimiters that close no part (each ends in ``X``)."""
    unit = b"\r\n--hostileX"
    return _part_head("image", "a.jpg") + unit * (n // len(unit)) + b"\r\n--hostile--\r\n"


def multipart_long_head(n: int) -> bytes:
    """One image part whose Content-Disposition holds about ``n`` semicolons (werkzeug parses it whole)."""
    head = b'--hostile\r\nContent-Disposition: form-data; name="image"' + b";" * n + b'; filename="a.jpg"\r\n\r\n'
    return head + _small_jpeg() + b"\r\n--hostile--\r\n"


def multipart_parts(n: int) -> bytes:
    """``n`` small text parts (past the parts limit: refused, counted on the way)."""
    return b"".join(_part_head(f"f{i}") + b"v\r\n" for i in range(n)) + b"--hostile--\r\n"


def urlencoded_fields(n: int) -> bytes:
    """``n`` fields of a urlencoded form."""
    return b"&".join(b"a%d=1" % i for i in range(n))


def chunked_tiny_chunks(n: int) -> bytes:
    """A request whose body is ``n`` chunks of one byte each."""
    head = b"POST /detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + b"1\r\nA\r\n" * n + b"0\r\n\r\n"


def header_flood(n: int) -> bytes:
    """A request with ``n`` headers (gunicorn stops at its limit of 100)."""
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(n)) + b"\r\n"


@lru_cache(maxsize=1)
def _small_jpeg() -> bytes:
    return _save(Image.new("RGB", (16, 16), (90, 120, 150)), "JPEG")


def jpeg_com_flood(n: int) -> bytes:
    """A JPEG with ``n`` empty comment segments before its frame (Pillow reads each in Python)."""
    small = _small_jpeg()
    return small[:2] + b"\xff\xfe\x00\x02" * n + small[2:]


def jpeg_fill_bytes(n: int) -> bytes:
    """A JPEG with ``n`` 0xff fill bytes before its first segment (Pillow reads them one at a time)."""
    small = _small_jpeg()
    return small[:2] + b"\xff" * n + small[2:]


def jpeg_stray_bytes(n: int) -> bytes:
    """A JPEG with ``n`` bytes of garbage between its first two segments."""
    small = _small_jpeg()
    return small[:2] + b"\x00" * n + small[2:]


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each segment; a scan's segment runs to the end of its entropy-coded data."""
    pos, out = 2, []
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if marker == 0xDA:
            while True:  # to the next 0xff that is neither stuffing (ff00) nor a restart marker
                end = data.index(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        out.append((marker, pos, end))
        pos = end
    return out


@lru_cache(maxsize=4)
def progressive_jpeg(width: int, height: int) -> tuple[bytes, bytes]:
    """A flat progressive JPEG of ``width`` x ``height``, and one of its AC scans (segment and data)."""
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = buf.tobytes()
    for marker, start, end in _jpeg_segments(data):
        components = data[start + 4] if marker == 0xDA else 0
        if marker == 0xDA and data[start + 5 + 2 * components] > 0:  # Ss > 0: an AC scan
            return data, data[start:end]
    raise ValueError("no AC scan")


def jpeg_scan_bomb(n: int, width: int = 8000, height: int = 5000) -> bytes:
    """A progressive JPEG whose one AC scan is repeated ``n`` times: libjpeg passes over the image each time."""
    data, scan = progressive_jpeg(width, height)
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + scan * n + data[eoi:]


def jpeg_scan_bomb_small(n: int) -> bytes:
    """``jpeg_scan_bomb`` on a 2000x2000 picture, for timing the decoder within the scan limit."""
    return jpeg_scan_bomb(n, 2000, 2000)


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_photoshop_flood(segments: int) -> bytes:
    """A small JPEG with ``segments`` full Photoshop segments (APP13) of empty 12-byte resources."""
    small = _small_jpeg()
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", 0)
    payload = b"Photoshop 3.0\x00" + resource * ((65533 - 14) // 12)
    return small[:2] + _segment(0xED, payload) * segments + small[2:]


def _small_png(before: bytes = b"", after: bytes = b"", alpha: bool = False) -> bytes:
    """A 16x16 PNG (transparent, if ``alpha``) with the chunks ``before`` between its header and its image
    data, and the chunks ``after`` between its image data and its end."""
    small = _save(Image.new("RGBA", (16, 16), (90, 120, 150, 128)) if alpha else
                  Image.new("RGB", (16, 16), (90, 120, 150)), "PNG")
    header_end, end = 8 + 12 + 13, small.rindex(b"IEND") - 4
    return small[:header_end] + before + small[header_end:end] + after + small[end:]


def png_text_flood(n: int) -> bytes:
    """A PNG with ``n`` tEXt chunks before its pixels (Pillow reads each in Python)."""
    return _small_png(before=png_chunk(b"tEXt", b"k\x00v") * n)


def png_zipped_text(chunks: int, kind: bytes = b"zTXt", mib: int = 1) -> bytes:
    """A 16x16 PNG with ``chunks`` compressed text (``zTXt``/``iTXt``) or colour profile (``iCCP``) chunks
    before its pixels, each about ``mib`` MiB of zeros deflated to a kilobyte: Pillow decompresses them all."""
    zipped = zlib.compress(bytes((mib << 20) - 256), 9)
    head = {b"zTXt": b"\x00\x00", b"iTXt": b"\x00\x01\x00\x00\x00", b"iCCP": b"\x00\x00"}[kind]
    return _small_png(before=b"".join(png_chunk(kind, b"k%d" % i + head + zipped) for i in range(chunks)))


def png_trailing_flood(n: int, bad_crc: bool = False, alpha: bool = True) -> bytes:
    """A 16x16 PNG (transparent, if ``alpha``) with ``n`` private chunks after its image data (damaged, if ``bad_crc``)."""
    chunk = png_chunk(b"zzZz", b"a")
    if bad_crc:
        chunk = chunk[:-1] + bytes([chunk[-1] ^ 1])
    return _small_png(after=chunk * n, alpha=alpha)


def png_exif_flood(n: int, orientation: int = 6) -> bytes:
    """A transparent 16x16 PNG whose EXIF holds an orientation and ``n`` fractions (Pillow makes an object of each)."""
    exif = tiff_of({274: (3, 1, struct.pack("<H", orientation)), 282: (5, n, struct.pack("<II", 72, 1) * n)})
    return _small_png(before=png_chunk(b"eXIf", exif), alpha=True)


def png_misplaced_flood(n: int) -> bytes:
    """A 16x16 PNG with ``n`` gamma chunks after its image data, where they have no place: libpng says so for each."""
    return _small_png(after=png_chunk(b"gAMA", struct.pack(">I", 45455)) * n)


def png_split_idat(n: int) -> bytes:
    """A 64x64 PNG whose image data is cut into ``n`` IDAT chunks (real encoders cut every 8 KB or more)."""
    small = _save(Image.new("RGB", (64, 64), (90, 120, 150)), "PNG")
    start = small.index(b"IDAT") - 4
    length = struct.unpack_from(">I", small, start)[0]
    zipped = small[start + 8:start + 8 + length]
    pieces = [zipped[i * len(zipped) // n:(i + 1) * len(zipped) // n] for i in range(n)]
    return small[:start] + b"".join(png_chunk(b"IDAT", p) for p in pieces) + small[start + 12 + length:]


def png_inflate_surplus(megabytes: int, width: int = 64, height: int = 64, colour: int = 0) -> bytes:
    """A flat ``width`` x ``height`` 8-bit PNG (``colour``: its colour type) whose image data goes on, after its
    rows, with ``megabytes`` MB of deflated zeros (each megabyte about a kilobyte). The stream's checksum is
    that of the rows alone: a decoder that inflates on to the end fails there, having done the work."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    zipper = zlib.compressobj(9)
    zipped = zipper.compress(bytes(height * (1 + width * channels))) + zipper.flush(zlib.Z_FULL_FLUSH)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)  # a full flush byte-aligns and forgets: any copy may follow any
    block = raw.compress(bytes(1 << 20)) + raw.flush(zlib.Z_FULL_FLUSH)
    zipped += block * megabytes + zipper.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
            + png_chunk(b"IDAT", zipped) + png_chunk(b"IEND", b""))


def gif_block_flood(n: int, stray: int = 0) -> bytes:
    """A GIF whose comment before the first frame is ``n`` one-byte sub-blocks, after ``stray`` bytes that are
    no block (Pillow skips each and reads on)."""
    small = _save(Image.new("P", (4, 4)), "GIF")
    flags = small[10]
    start = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    comment = b"\x21\xfe" + b"\x01A" * n + b"\x00" if n else b""
    return small[:start] + b"\x00" * stray + comment + small[start:]


def webp_orientation_flood(n: int) -> bytes:
    """A small WebP whose EXIF orientation holds ``n`` fractions (Pillow makes an object of each when it reads it)."""
    exif = tiff_of({274: (5, n, struct.pack("<II", 1, 1) * n)})
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "WEBP", exif=b"Exif\x00\x00" + exif)
    return buf.getvalue()


def tiff_tag_flood(n: int) -> bytes:
    """A little-endian TIFF whose first directory has ``n`` (at most 65535) private tags, then a 1x1 image."""
    n = min(n, 65535)
    tags = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 0), (277, 3, 1, 1), (278, 3, 1, 1), (279, 4, 1, 1)]
    tags += [(32768 + i % 32000, 3, 1, 0) for i in range(max(0, n - len(tags)))]
    ifd_size = 2 + 12 * len(tags) + 4
    pixel_at = 8 + ifd_size
    entries = b"".join(struct.pack("<HHII", tag, kind, count, pixel_at if tag == 273 else value)
                       for tag, kind, count, value in sorted(tags))
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)) + entries + b"\x00" * 4 + b"\x80"


def tiff_of(tags: dict[int, tuple[int, int, bytes]], width: int = 8, height: int = 8, big: bool = False,
            strips: int = 1) -> bytes:
    """A little-endian gray TIFF (BigTIFF if ``big``) of ``strips`` strips, plus ``tags``: tag -> (type, count, data)."""
    value, entry_format = ("Q", "<HHQQ") if big else ("I", "<HHII")
    head = (b"II+\x00" + struct.pack("<HHQ", 8, 0, 0)) if big else (b"II*\x00" + struct.pack("<I", 0))
    rows = -(-height // strips)
    blobs = [bytes(width * height)]
    at = len(head)
    offsets = [at + i * rows * width for i in range(strips)]
    counts = [min(rows, height - i * rows) * width for i in range(strips)]
    word = struct.calcsize(value)
    every = {256: (4, 1, struct.pack("<I", width)), 257: (4, 1, struct.pack("<I", height)),
             258: (3, 1, struct.pack("<H", 8)), 259: (3, 1, struct.pack("<H", 1)), 262: (3, 1, struct.pack("<H", 1)),
             273: (4, strips, struct.pack(f"<{strips}I", *offsets)), 277: (3, 1, struct.pack("<H", 1)),
             278: (4, 1, struct.pack("<I", rows)), 279: (4, strips, struct.pack(f"<{strips}I", *counts)), **tags}
    at += len(blobs[0])
    entries = []
    for tag, (kind, count, data) in sorted(every.items()):
        if len(data) <= word:
            entries.append(struct.pack(entry_format, tag, kind, count, 0)[:-word] + data.ljust(word, b"\x00"))
        else:
            entries.append(struct.pack(entry_format, tag, kind, count, at))
            blobs.append(data)
            at += len(data)
    directory = struct.pack("<" + ("Q" if big else "H"), len(entries)) + b"".join(entries) + bytes(word)
    head = head[:-word] + struct.pack("<" + value, at)
    return head + b"".join(blobs) + directory


def tiff_tiled(gray: np.ndarray, tile: int) -> bytes:
    """A little-endian TIFF of the ``gray`` picture in deflated ``tile``-pixel square tiles (zeros past its edges)."""
    height, width = gray.shape
    across, down = -(-width // tile), -(-height // tile)
    padded = np.zeros((down * tile, across * tile), np.uint8)
    padded[:height, :width] = gray
    tiles = [zlib.compress(padded[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile].tobytes(), 9)
             for r in range(down) for c in range(across)]
    offsets, at = [], 8
    for t in tiles:
        offsets.append(at)
        at += len(t)
    arrays = struct.pack(f"<{len(tiles)}I", *offsets) + struct.pack(f"<{len(tiles)}I", *map(len, tiles))
    tags = {256: (4, 1, width), 257: (4, 1, height), 258: (3, 1, 8), 259: (3, 1, 8), 262: (3, 1, 1), 277: (3, 1, 1),
            322: (4, 1, tile), 323: (4, 1, tile),  # 259: deflate
            324: (4, len(tiles), offsets[0] if len(tiles) == 1 else at),
            325: (4, len(tiles), len(tiles[0]) if len(tiles) == 1 else at + 4 * len(tiles))}
    entries = b"".join(struct.pack("<HHI", tag, kind, n) + struct.pack("<H" if kind == 3 else "<I", v).ljust(4, b"\0")
                       for tag, (kind, n, v) in sorted(tags.items()))
    after = at + (len(arrays) if len(tiles) > 1 else 0)
    return (b"II*\x00" + struct.pack("<I", after) + b"".join(tiles) + (arrays if len(tiles) > 1 else b"")
            + struct.pack("<H", len(tags)) + entries + bytes(4))


def jpeg_tiff(stream: bytes, width: int, height: int, compression: int = 7, kinds: dict[int, int] | None = None,
              extra: Sequence[tuple[int, int, int, int]] = (), offsets: Sequence[int] = (8,)) -> bytes:
    """A little-endian gray TIFF whose strips (at ``offsets`` from the file's start, the first 8) are said to
    be JPEG (Compression 7), whatever ``stream``, put at 8, is. ``kinds``: another type for a tag;
    ``extra``: more entries (tag, type, count, value), after the others as a careless writer puts them."""
    padded = stream + b"\0" * (len(stream) % 2)  # the directory starts on a word
    after = 8 + len(padded)
    many = len(offsets) > 1
    tags = {256: (4, 1, width), 257: (4, 1, height), 258: (3, 1, 8), 259: (3, 1, compression), 262: (3, 1, 1),
            273: (4, len(offsets), after if many else offsets[0]), 277: (3, 1, 1), 278: (4, 1, height),
            279: (4, len(offsets), after + 4 * len(offsets) if many else len(stream))}
    arrays = struct.pack(f"<{len(offsets)}I", *offsets) + struct.pack(f"<{len(offsets)}I", *[len(stream)] * len(offsets))
    rows = [(tag, (kinds or {}).get(tag, kind), n, v) for tag, (kind, n, v) in sorted(tags.items())] + list(extra)
    entries = b"".join(struct.pack("<HHI", tag, kind, n) + struct.pack("<H" if kind in (3, 8) else "<I", v).ljust(4, b"\0")
                       for tag, kind, n, v in rows)
    body = padded + (arrays if many else b"")
    return b"II*\x00" + struct.pack("<I", 8 + len(body)) + body + struct.pack("<H", len(rows)) + entries + bytes(4)


def tiff_fraction_flood(n: int, big: bool = False) -> bytes:
    """A TIFF whose XResolution holds ``n`` fractions (Pillow makes an object of each on open)."""
    return tiff_of({282: (5, n, struct.pack("<II", 72, 1) * n)}, big=big)


def tiff_strip_flood(n: int) -> bytes:
    """An 8 x ``n`` TIFF of ``n`` one-row strips (Pillow makes a tile of each on open)."""
    return tiff_of({}, 8, n, strips=n)


def tiff_long_strips(n: int, width: int = 64) -> bytes:
    """A TIFF of ``n`` one-row strips, each said to be all of the file's pixels: libtiff logs an error a strip."""
    pixels = width * n  # zeros: as PackBits, runs of one literal byte
    return tiff_of({259: (3, 1, struct.pack("<H", 32773)), 273: (4, n, struct.pack("<I", 8) * n),
                    279: (4, n, struct.pack("<I", pixels) * n)}, width, n, strips=n)


def _bmp(width: int, height: int, bits: int, compression: int, pixels: bytes) -> bytes:
    """A bottom-up gray BMP of ``bits`` bits a pixel (4 or 8) with a 40-byte info header, then ``pixels``."""
    palette = b"".join(bytes((v, v, v, 0)) for v in range(0, 256, 256 >> bits))  # B, G, R, 0 a colour
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(pixels), 2835, 2835,
                       len(palette) // 4, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def bmp_run_length(image: np.ndarray) -> bytes:
    """A gray ``image`` (uint8, 2-D) as an 8-bit run-length BMP (BI_RLE8), as Windows writes them."""
    height, width = image.shape
    rows = []
    for row in image[::-1]:  # bottom-up
        starts = np.flatnonzero(np.diff(row, prepend=-1))
        for start, end in zip(starts, [*starts[1:], width]):
            for at in range(start, end, 255):
                rows.append(bytes((min(255, end - at), row[start])))
        rows.append(b"\x00\x00")  # end of line
    return _bmp(width, height, 8, 1, b"".join(rows) + b"\x00\x01")


def bmp_run_past_the_row(side: int, bits: int = 8) -> bytes:
    """A ``side`` x ``side`` run-length BMP whose first row's runs pass its end, then one pixel a row.

    OpenCV refuses it; Pillow clips the runs and pads every row in a Python loop, a step a pixel."""
    over = b"\xff\x05" * (side // 255 + 1) + b"\x00\x00"
    return _bmp(side, side, bits, 2 if bits == 4 else 1, over + b"\x01\x05\x00\x00" * (side - 1) + b"\x00\x01")


def gzip_of_zeros(mib: int, layers: int = 1) -> bytes:
    """``mib`` MiB of zeros gzipped (about 1,000 to 1), then gzipped again ``layers - 1`` times."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    piece = bytes(1 << 20)
    body = b"".join([c.compress(piece) for _ in range(mib)] + [c.flush()])
    for _ in range(layers - 1):
        body = gzip.compress(body, 9)
    return body


def complexity_requests() -> list[Request]:
    """Each complexity input at the size that once cost seconds to minutes, as one request to /detect."""
    octet = {"Content-Type": "application/octet-stream"}
    return [
        Request("POST", "/detect", newline_body(300_000), {}, "newline body"),
        Request("POST", "/detect", data_url_parameters(1_000_000), {"Content-Type": "text/plain"}, "data URL parameters"),
        Request("POST", "/detect", json_nested(100_000), {"Content-Type": "application/json"}, "nested JSON"),
        Request("POST", "/detect", json_values(13_000_000), {"Content-Type": "application/json"}, "JSON of empty objects"),
        Request("POST", "/detect", multipart_parts(1_500), {"Content-Type": MULTIPART}, "1,500 parts"),
        Request("POST", "/detect", multipart_crlf(8_000_000), {"Content-Type": MULTIPART}, "multipart line breaks"),
        Request("POST", "/detect", multipart_long_head(9_000_000), {"Content-Type": MULTIPART}, "a part's long header"),
        Request("POST", "/detect", jpeg_com_flood(1_500_000), octet, "JPEG comment markers"),
        Request("POST", "/detect", jpeg_fill_bytes(5_000_000), octet, "JPEG fill bytes"),
        Request("POST", "/detect", jpeg_scan_bomb(15_000), octet, "progressive scan bomb"),
        Request("POST", "/detect", jpeg_photoshop_flood(150), octet, "JPEG Photoshop resources"),
        Request("POST", "/detect", png_text_flood(400_000), octet, "PNG text chunks"),
        Request("POST", "/detect", png_trailing_flood(400_000, bad_crc=True), octet, "PNG chunks after the pixels"),
        Request("POST", "/detect", png_zipped_text(63), octet, "PNG compressed text"),
        Request("POST", "/detect", png_zipped_text(500, b"iCCP"), octet, "PNG colour profiles"),
        Request("POST", "/detect", gif_block_flood(2_000_000), octet, "GIF sub-blocks"),
        Request("POST", "/detect", tiff_tag_flood(65_535), octet, "TIFF tags"),
        Request("POST", "/detect", tiff_fraction_flood(1_100_000), octet, "TIFF fractions"),
        Request("POST", "/detect", tiff_strip_flood(500_000), octet, "TIFF strips"),
        Request("POST", "/detect", avif_track_flood(450, 10_000_000), octet, "AVIF tracks on one sample"),
        Request("POST", "/detect", bmp_run_past_the_row(2600), octet, "BMP runs past their row"),
        Request("POST", "/detect", png_inflate_surplus(9000), octet, "PNG data past its rows"),
        Request("POST", "/detect", tiff_tiled(np.zeros((64, 64), np.uint8), 8192), octet, "a TIFF's tile"),
        Request("POST", "/detect", heif_canvas(16, 16, 1024, says=(64, 64)), octet, "an AVIF grid's canvas"),
        Request("POST", "/detect", heif_canvas(16, 16, 1024, says=(64, 64), fmt="HEIF", overlay=True), octet,
                "a HEIC overlay's canvas"),
        Request("POST", "/v1/vision/face?min_confidence=abc", _small_jpeg(), {"Content-Type": "image/jpeg"},
                "min_confidence=abc"),
        Request("POST", "/detect?min_size=5&min_size=6", _small_jpeg(), {"Content-Type": "image/jpeg"},
                "a repeated parameter"),
        Request("POST", "/detect", b"not an image", octet, "Accept headers of blanks", accept_flood(95, 8_000)),
    ]


def accept_flood(headers: int, blanks: int) -> tuple[tuple[str, str], ...]:
    """``headers`` Accept lines, each a type, ``blanks`` tabs and a letter (gunicorn joins them into one value)."""
    return (("Accept", "a/b" + "\t" * blanks + "x"),) * headers


# The standard luminance Huffman tables (ITU T.81, K.3): a flat picture needs two of their codes.
_DC_BITS, _DC_VALUES = bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]), bytes(range(12))
_AC_BITS = bytes([0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D])
_AC_VALUES = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738"
    "393a434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5"
    "a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa")


def _flat_blocks(blocks: int) -> bytes:
    """Entropy-coded data of ``blocks`` flat blocks: each a DC difference of 0 (``00``) and an end of block
    (``1010``), padded with ones."""
    bits = "001010" * blocks
    bits += "1" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")  # 0x28 0xa2 0x8a repeated: never a 0xff


def component_scans_jpeg(width: int, height: int, components: int = 3, interleaved: bool = False) -> bytes:
    """A flat sequential (baseline) JPEG whose components are each in a scan of their own, unless
    ``interleaved``: legal, and libjpeg then keeps every coefficient of the image, as for a progressive one."""
    frame = struct.pack(">BHHB", 8, height, width, components) + b"".join(bytes([c + 1, 0x11, 0])
                                                                        for c in range(components))
    out = b"\xff\xd8" + _segment(0xDB, b"\x00" + bytes([1] * 64)) + _segment(0xC0, frame)
    out += _segment(0xC4, b"\x00" + _DC_BITS + _DC_VALUES + b"\x10" + _AC_BITS + _AC_VALUES)
    blocks = -(-width // 8) * -(-height // 8)
    if interleaved:
        selectors = b"".join(bytes([c + 1, 0]) for c in range(components))
        out += _segment(0xDA, bytes([components]) + selectors + b"\x00\x3f\x00") + _flat_blocks(blocks * components)
    else:
        for c in range(components):
            out += _segment(0xDA, bytes([1, c + 1, 0, 0, 0x3F, 0])) + _flat_blocks(blocks)
    return out + b"\xff\xd9"


def jpeg_hidden_scans(n: int, every: int = 8) -> bytes:
    """``jpeg_refinement_bomb(n)`` with a comment before every ``every``-th repeated scan that holds what reads as a
    scan header claiming 255 components: libjpeg skips the comment, a walk trusting that header skips scans."""
    data = jpeg_refinement_bomb(n)
    last = [(start, end) for marker, start, end in _jpeg_segments(data) if marker == 0xDA][-1]
    scan = data[last[0]:last[1]]
    first = data.index(scan)
    decoy = _segment(0xFE, b"\xff\xda\x00\x00\xff")
    return data[:first] + b"".join((decoy if i % every == 0 else b"") + scan for i in range(n + 1)) + b"\xff\xd9"


def duplicate_id_jpeg(n: int) -> bytes:
    """``jpeg_refinement_bomb(n)`` whose frame gives its third component the luma's id: libjpeg matches a scan's
    selector to the first, the luma (two thirds of the blocks at 4:2:0)."""
    data = jpeg_refinement_bomb(n)
    sof = data.index(b"\xff\xc2")
    third = sof + 10 + 3 * 2
    assert data[third] == 3, data[sof:sof + 19].hex()
    return data[:third] + b"\x01" + data[third + 1:]


def sequential_scan_repeats(n: int, width: int = 400, height: int = 300, band: tuple[int, int] = (0, 0)) -> bytes:
    """A flat sequential JPEG whose one interleaved scan is repeated to ``n`` scans, each naming ``band``:
    libjpeg decodes all 64 coefficients of every block in a sequential scan, whatever band it names."""
    data = component_scans_jpeg(width, height, interleaved=True)
    sos, eoi = data.index(b"\xff\xda"), data.rindex(b"\xff\xd9")
    scan = bytearray(data[sos:eoi])
    at = 5 + 2 * scan[4]
    scan[at], scan[at + 1] = band
    return data[:sos] + bytes(scan) * n + data[eoi:]


def opaque_animated_webp(picture: Image.Image, frames: int = 2) -> bytes:
    """``picture`` as a lossy WebP animation of ``frames`` frames whose header says nothing of transparency
    (VP8X flags: animation only, as a tool that wraps still frames writes): Pillow opens it as RGB."""
    buf = io.BytesIO()
    picture.convert("RGB").save(buf, "WEBP", quality=80, method=0)
    vp8 = buf.getvalue()[12:]
    assert vp8[:4] == b"VP8 ", vp8[:4]

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)

    w, h = (v.to_bytes(3, "little") for v in (picture.width - 1, picture.height - 1))
    frame = chunk(b"ANMF", b"\x00" * 6 + w + h + (100).to_bytes(3, "little") + b"\x00" + vp8)
    body = b"WEBP" + chunk(b"VP8X", b"\x02\x00\x00\x00" + w + h) + chunk(b"ANIM", struct.pack("<IH", 0, 0))
    body += frame * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def lossless_jpeg_header(width: int, height: int) -> bytes:
    """The start of a lossless (SOF3) gray JPEG: what libjpeg decodes only at full size."""
    return b"\xff\xd8" + _segment(0xC3, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")


def jpeg_refinement_bomb(n: int, width: int = 400, height: int = 300) -> bytes:
    """A flat progressive JPEG whose last scan, a refinement of the whole AC band (Ah > 0), is repeated
    ``n`` more times: libjpeg visits every coefficient of the image in each, however little data it holds."""
    data, _ = progressive_jpeg(width, height)
    last = [(start, end) for marker, start, end in _jpeg_segments(data) if marker == 0xDA][-1]
    header = data[last[0] + 4 + 1 + 2 * data[last[0] + 4]:]
    assert header[1] == 63 and header[2] >> 4 > 0, "the last scan is no AC refinement"
    eoi = data.rindex(b"\xff\xd9")
    return data[:eoi] + data[last[0]:last[1]] * n + data[eoi:]
