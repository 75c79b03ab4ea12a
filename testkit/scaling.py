"""Does any parser on a request's path cost more than linear time? Doubling each hostile input, in-process.

Every case generates an algorithmic-complexity input of size n (testkit/hostile_inputs.py,
``complexity``) and runs the one function that parses it, as the site runs it: the base64
and data-URL tests, the JSON body, the multipart and urlencoded parsers, gunicorn's request
and chunked-body parser, the image header reader (JPEG markers, PNG chunks, GIF blocks,
TIFF tags, strips and numbers, progressive scans), OpenCV's progressive decode, and the layout
of a drawn answer's labels over thousands of boxes. Each is timed in CPU time
(``time.process_time``: other processes on a shared machine do not count), the minimum of a
few repeats, at n and 2n; the ratio must be at most ``MAX_RATIO``. A parser that refuses an
input early may cost next to nothing at both sizes: below ``FLOOR`` seconds at 2n it passes
whatever the ratio, its cost being bounded, not growing.

    python -m bench.scaling            # every case, a markdown table
    python -m bench.scaling --case jpeg-com-flood
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testkit import hostile_inputs as hi

MAX_RATIO = 2.5
FLOOR = 0.005  # seconds: below this at 2n, the cost is bounded (an early refusal), not growing
REPEATS = 5


def _quiet(fn: Callable[[], Any]) -> None:
    """Run ``fn``; the site's typed errors (a 400, 413, 415 or 422) are an answer too."""
    from mysite.errors import ApiError

    try:
        fn()
    except ApiError:
        pass


def _decode_text(body: bytes) -> None:
    from mysite.web.inputs import decode_text

    _quiet(lambda: decode_text(body, "body", passthrough=True))


def _json_body(body: bytes) -> None:
    from mysite.web.inputs import _json_image

    _quiet(lambda: _json_image(body))


def _form(content_type: str) -> Callable[[bytes], None]:
    def parse(body: bytes) -> None:
        from werkzeug.test import EnvironBuilder

        from mysite.web.inputs import MemoryRequest

        env = EnvironBuilder(method="POST", input_stream=io.BytesIO(body), content_type=content_type,
                             content_length=len(body)).get_environ()
        req = MemoryRequest(env)
        req.max_content_length = 64 * 1024 * 1024
        _quiet(lambda: (req.form, req.files))

    return parse


def _gunicorn_request(raw: bytes) -> None:
    from gunicorn.config import Config
    from gunicorn.http.errors import ParseException
    from gunicorn.http.parser import RequestParser

    try:
        # In the pieces a socket gives (gunicorn reads 8 KB at a time), not as one buffer.
        pieces = (raw[i:i + 8192] for i in range(0, len(raw), 8192))
        req = next(iter(RequestParser(Config(), pieces, ("127.0.0.1", 1))))
        while req.body.read(64 * 1024):
            pass
    except (ParseException, StopIteration):
        pass


def _read_header(data: bytes) -> None:
    from mysite.vision.decode import read_header

    _quiet(lambda: read_header(data, 40_000_000))


def _decode_image(data: bytes) -> None:
    from mysite.vision.decode import decode_image

    _quiet(lambda: decode_image(data, max_pixels=40_000_000))


def _decode(data: bytes) -> None:
    import cv2
    import numpy as np

    cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)


def _boxes(n: int) -> bytes:
    """``n`` labelled 24 px boxes piled 2 px apart on a 3200x2400 picture, as JSON: what YuNet answers at
    ``min_confidence=0&nms=1``."""
    return json.dumps([[x, y, x + 24, y + 24] for i in range(n) for x, y in [(i * 2 % 3000, i * 2 // 3000 * 30)]]).encode()


def _layout(data: bytes) -> None:
    from mysite.vision import layout

    boxes = json.loads(data)
    layout.place_labels(boxes, [(60, 14)] * len(boxes), 3200, 2400, 3)


def _candidates(n: int) -> bytes:
    """n YuNet rows (box, landmarks, score) spread over a 12 MP photo: what ``min_confidence=0`` gives."""
    import numpy as np

    rng = np.random.default_rng(n)
    rows = rng.uniform(0, 4000, (n, 15)).astype(np.float32)
    rows[:, 2:4] = rng.uniform(10, 40, (n, 2))
    rows[:, 14] = rng.uniform(0, 1, n)
    return rows.tobytes()


def _best(data: bytes) -> None:
    import numpy as np

    from mysite.vision.yunet import best

    best(np.frombuffer(data, np.float32).reshape(-1, 15), 0.0, 1.0, passes=True)


def _raw_hits(n: int) -> bytes:
    """n raw cascade hits as a photo tiled with small faces gives them: about 30 a face, 40 px apart."""
    import numpy as np

    rng = np.random.default_rng(n)
    faces = n // 30
    columns = max(1, int((faces * 4 / 3) ** 0.5))
    centre = np.column_stack([np.arange(faces) % columns, np.arange(faces) // columns]) * 40 + 20
    which = rng.integers(0, faces, n)
    side = rng.integers(20, 45, n)
    corner = centre[which] - side[:, None] // 2 + rng.integers(-4, 5, (n, 2))
    return np.column_stack([corner, side, side]).astype(np.int32).tobytes()


def _group(data: bytes) -> None:
    import numpy as np

    from mysite.vision.cascade import group_rectangles

    group_rectangles(np.frombuffer(data, np.int32).reshape(-1, 4), 3)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], bytes]  # the hostile input of size n
    parse: Callable[[bytes], None]  # the site's parser for it
    n: int  # the smaller size (the larger is 2n)


CASES: tuple[Case, ...] = (
    Case("base64-newlines", hi.newline_body, _decode_text, 400_000),
    Case("base64-valid-lines", hi.base64_lines, _decode_text, 4_000_000),
    Case("data-url-parameters", hi.data_url_parameters, _decode_text, 200_000),
    Case("json-nested", hi.json_nested, _json_body, 400),
    Case("json-escapes", hi.json_escapes, _json_body, 500_000),
    Case("multipart-crlf", hi.multipart_crlf, _form(hi.MULTIPART), 4_000_000),
    Case("multipart-false-boundaries", hi.multipart_false_boundaries, _form(hi.MULTIPART), 4_000_000),
    Case("multipart-parts", hi.multipart_parts, _form(hi.MULTIPART), 450),
    Case("multipart-part-flood", hi.multipart_parts, _form(hi.MULTIPART), 20_000),
    Case("urlencoded-fields", hi.urlencoded_fields, _form("application/x-www-form-urlencoded"), 20_000),
    Case("chunked-tiny-chunks", hi.chunked_tiny_chunks, _gunicorn_request, 50_000),
    Case("header-flood", hi.header_flood, _gunicorn_request, 1_000),
    Case("jpeg-com-flood", hi.jpeg_com_flood, _read_header, 400_000),
    Case("jpeg-fill-bytes", hi.jpeg_fill_bytes, _read_header, 1_000_000),
    Case("jpeg-stray-bytes", hi.jpeg_stray_bytes, _read_header, 2_000_000),
    Case("jpeg-scan-count", hi.jpeg_scan_bomb, _read_header, 50_000),
    Case("png-text-flood", hi.png_text_flood, _read_header, 200_000),
    Case("png-trailing-chunks", hi.png_trailing_flood, _read_header, 5_000),
    Case("png-inflate-surplus", hi.png_inflate_surplus, _decode_image, 64),
    Case("gif-block-flood", hi.gif_block_flood, _read_header, 1_000_000),
    Case("tiff-tag-flood", hi.tiff_tag_flood, _read_header, 30_000),
    Case("tiff-strips", hi.tiff_strip_flood, _read_header, 10_000),
    Case("tiff-fraction-flood", hi.tiff_fraction_flood, _read_header, 500_000),
    Case("jpeg-progressive-scans", hi.jpeg_scan_bomb_small, _decode, 100),
    Case("label-layout", _boxes, _layout, 4_000),
    Case("yunet-candidates", _candidates, _best, 20_000),
    Case("haar-grouping", _raw_hits, _group, 25_000),
)


def _cpu(parse: Callable[[bytes], None], data: bytes) -> float:
    start = time.process_time()
    parse(data)
    return time.process_time() - start


@dataclass(frozen=True)
class Result:
    name: str
    n: int
    small: float
    large: float

    @property
    def ratio(self) -> float:
        return self.large / self.small if self.small > 0 else float("inf")

    @property
    def ok(self) -> bool:
        return self.large < FLOOR or self.ratio <= MAX_RATIO


def measure(case: Case, repeats: int = REPEATS) -> Result:
    """The least CPU time of ``repeats`` runs at n and at 2n, the two sizes taking turns.

    Both are run once first (imports, caches, and the allocator's first growth to the larger
    size, which would otherwise be charged to 2n alone).
    """
    small, large = case.make(case.n), case.make(2 * case.n)
    case.parse(small)
    case.parse(large)
    best_small = best_large = float("inf")
    for _ in range(repeats):
        best_small = min(best_small, _cpu(case.parse, small))
        best_large = min(best_large, _cpu(case.parse, large))
    return Result(case.name, case.n, best_small, best_large)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--case", action="append", help="run only this case (repeatable)")
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args(argv)
    cases = [c for c in CASES if not args.case or c.name in args.case]
    print("| input | n | CPU at n (ms) | CPU at 2n (ms) | ratio | met? |")
    print("|---|---|---|---|---|---|")
    failed = 0
    for case in cases:
        r = measure(case, args.repeats)
        failed += not r.ok
        print(f"| {r.name} | {r.n:,} | {r.small * 1000:.2f} | {r.large * 1000:.2f} | {r.ratio:.2f} | "
              f"{'yes' if r.ok else 'FAIL'} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
