"""``python -m bench.part_heads``: what a multipart form's part headers cost a web worker, in-process.

werkzeug reads each part's header parameters a step of Python at a time, about twice a part (its
decoder's Content-Disposition, the part's charset), and ``body_share`` reads those of parts with a
filename once more. Each form here is ``POST /detect`` with text parts whose headers are filled to a
size (every byte counted: the line break after the delimiter, the lines, the blank line) with the
Content-Disposition parameters werkzeug reads slowest (``; a="\\``); ``--keys`` sets ``MYSITE_API_KEYS`` and
sends none, so the form is read for ``api_key`` before the 401. Prints the CPU time of one request
(the least of a few runs), with text parts and with file parts (a filename in each part's
Content-Disposition), and of ``body_share``'s scan of the file parts alone.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from mysite import create_app
from mysite.web import form_parts

T = TypeVar("T")
BOUNDARY = b"XyZbound"
CONTENT_TYPE = "multipart/form-data; boundary=" + BOUNDARY.decode()
# (parts, bytes of each part's headers): an attack under the old 16 KB limit for one part's headers, and
# forms at the limits now (one part's 4 KB, all parts' 64 KB, werkzeug's 1000 parts).
FORMS = [(850, 16_300), (16, 4096), (256, 256), (999, 0)]  # 0: the shortest headers


def form(parts: int, head: int, filename: bool = False) -> bytes:
    """``parts`` parts, each with ``head`` bytes of headers (at least its two lines), ending in the costliest
    parameters."""
    named = b'; filename="a.txt"' if filename else b""

    def one(i: int) -> bytes:
        lines = b'Content-Type: text/plain\r\nContent-Disposition: form-data; name="x%d"%s' % (i % 100, named)
        fill = max(head - len(lines) - 6, 0)
        return b"--" + BOUNDARY + b"\r\n" + lines + (b'; a="\\' * fill)[:fill] + b"\r\n\r\nx\r\n"

    return b"".join(one(i) for i in range(parts)) + b"--" + BOUNDARY + b"--\r\n"


def _scan(body: bytes) -> int:
    """``body_share``'s scan of ``body`` for its file parts."""
    return form_parts.file_bytes(io.BytesIO(body), "multipart/form-data", {"boundary": BOUNDARY.decode()}, len(body))


def least_cpu(run: Callable[[], T], reps: int = 5) -> tuple[float, T]:
    """The least CPU seconds of ``reps`` runs (one only, if it takes over a second), and the last result."""
    times: list[float] = []
    while True:
        start = time.process_time()
        result = run()
        times.append(time.process_time() - start)
        if len(times) >= reps or times[-1] > 1:
            return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.part_heads", description=__doc__.splitlines()[0])
    ap.add_argument("--keys", action="store_true", help="set MYSITE_API_KEYS and send no key")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    client = create_app({"MYSITE_LOG_LEVEL": "ERROR", **({"MYSITE_API_KEYS": "k" * 24} if args.keys else {})}
                        ).test_client()
    print(f"MAX_PART_HEAD {form_parts.MAX_PART_HEAD}, MAX_PART_HEADS {getattr(form_parts, 'MAX_PART_HEADS', None)}, "
          f"keys {args.keys}, load average {os.getloadavg()[0]:.2f}\n")
    print("| parts × bytes of headers | all headers | body | answer | request CPU ms: text / file parts "
          "| body_share's scan of the file parts, CPU ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for parts, head in FORMS:
        body = form(parts, head)
        heads = len(body) - parts * len(b"x\r\n--" + BOUNDARY) - len(b"--" + BOUNDARY + b"--\r\n")
        cpu, answer = least_cpu(partial(client.post, "/detect", data=body, content_type=CONTENT_TYPE))
        named = form(parts, head, filename=True)
        files, _ = least_cpu(partial(client.post, "/detect", data=named, content_type=CONTENT_TYPE))
        scan, _ = least_cpu(partial(_scan, named))
        print(f"| {parts} × {heads // parts} | {heads / 1024:.1f} KB | {len(body) / 1e6:.2f} MB | {answer.status_code} "
              f"| {cpu * 1000:.0f} / {files * 1000:.0f} | {scan * 1000:.1f} |")


if __name__ == "__main__":
    main()
