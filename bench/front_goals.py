"""The hostile requests in front of the CV work, against the Procfile's gunicorn on loopback: each one's answer.

    python -m bench.front_goals

Measures, with 2 workers as the Procfile starts them: the newline body (16 ``A``, 300,000
line breaks, ``!``) and its time; eight 7.5 MB JPEGs of 1.5 million comment markers at
once, and eight 6 MB PNGs of 400,000 text chunks, with the workers' peak RSS (each set on
a fresh server); a progressive scan bomb (8000x5000, one AC scan repeated to 1 MB); a
flat 6000x6000 GIF; a chunked body with the chunk size ``zz``; ``?url=http://192.0.0.8/``
through a loopback proxy that records every connection; ``min_confidence=abc`` on
/v1/vision/face; a form of 1,500 parts. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image

from bench.server import HOST, Server, request
from testkit import hostile_inputs as hi
from testkit.net import exchange

WORKERS = 2


def _timed(port: int, path: str, body: bytes, ctype: str | None) -> tuple[int, float, dict]:
    start = time.perf_counter()
    status, raw = request(port, "POST", path, body, ctype, timeout=600)
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {}
    return status, time.perf_counter() - start, answer


def _at_once(port: int, body: bytes, n: int = 8) -> tuple[list[int], float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(lambda _: _timed(port, "/detect", body, "application/octet-stream")[0], range(n)))
    return statuses, time.perf_counter() - start


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append(self.path)
        self.send_response(502)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    argparse.ArgumentParser(prog="python -m bench.front_goals", description=__doc__.split("\n\n")[0]).parse_args()
    rows: list[tuple[str, str, bool]] = []
    flood_jpeg = hi.jpeg_com_flood(1_500_000)
    flood_png = hi.png_text_flood(400_000)
    gif = io.BytesIO()
    Image.new("P", (6000, 6000), 3).save(gif, "GIF")
    proxy = ThreadingHTTPServer((HOST, 0), _Recorder)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = {"MYSITE_URL_FETCH": "on", "http_proxy": f"http://{HOST}:{proxy.server_port}", "NO_PROXY": ""}
    os.environ.pop("no_proxy", None)

    with Server(WORKERS, -1, env) as srv:
        status, took, _ = _timed(srv.port, "/detect", hi.newline_body(300_000), None)
        rows.append(("newline body: a 4xx in < 0.5 s", f"{status} in {took:.3f} s", 400 <= status < 500 and took < 0.5))
        statuses, took = _at_once(srv.port, flood_jpeg)
        peak = max(srv.peak_rss_mb()[1])
        rows.append(("8 JPEG marker floods (7.5 MB) at once: <= 300 MB in any process",
                     f"{sorted(set(statuses))} in {took:.2f} s; worker peak {peak:.0f} MB",
                     peak <= 300 and all(s == 422 for s in statuses)))
    with Server(WORKERS, -1, env) as srv:
        statuses, took = _at_once(srv.port, flood_png)
        peak = max(srv.peak_rss_mb()[1])
        rows.append(("8 PNG text-chunk floods (6 MB) at once", f"{sorted(set(statuses))} in {took:.2f} s; "
                     f"worker peak {peak:.0f} MB", peak <= 300 and all(s == 422 for s in statuses)))
        bomb = hi.jpeg_scan_bomb(15_000)
        status, took, _ = _timed(srv.port, "/detect", bomb, "image/jpeg")
        rows.append((f"scan bomb ({len(bomb) / 1e6:.1f} MB, 15,000 scans)", f"{status} in {took:.3f} s", status == 422))
        status, took, _ = _timed(srv.port, "/detect", gif.getvalue(), "image/gif")
        peak = max(srv.peak_rss_mb()[1])
        rows.append(("flat 6000x6000 GIF: refused from its header", f"{status} in {took:.3f} s; worker peak {peak:.0f} MB",
                     status == 413 and peak < 300))
        answer = exchange(srv.port, b"POST /detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                b"Connection: close\r\n\r\nzz\r\nAAAA\r\n0\r\n\r\n")
        line = answer.split(b"\r\n", 1)[0].decode()
        rows.append(("chunk size zz: a 400", line, line.startswith("HTTP/1.1 400") and b"Traceback" not in
                     srv.log().encode()))
        status, raw = request(srv.port, "GET", "/detect?url=http://192.0.0.8/x.jpg")
        reason = json.loads(raw).get("reason")
        rows.append(("?url=http://192.0.0.8/: 400 url_refused, no connection to the proxy",
                     f"{status} {reason}; proxy saw {len(_Recorder.seen)} requests",
                     status == 400 and reason == "url_refused" and not _Recorder.seen))
        photo = (Path(__file__).resolve().parent.parent / "tests" / "data" / "group_17_faces.jpg").read_bytes()
        status, _, answer = _timed(srv.port, "/v1/vision/face?min_confidence=abc", photo, "image/jpeg")
        rows.append(("/v1/vision/face?min_confidence=abc: a 400", f"{status} {answer.get('reason')}", status == 400))
        status, _, answer = _timed(srv.port, "/detect", hi.multipart_parts(1500), hi.MULTIPART)
        rows.append(("1,500-part form: a 413 naming parts", f"{status}: {answer.get('message')}",
                     status == 413 and "parts" in str(answer.get("message"))))
    proxy.shutdown()
    print("| goal | measured | met? |")
    print("|---|---|---|")
    for goal, measured, ok in rows:
        print(f"| {goal} | {measured} | {'yes' if ok else 'FAIL'} |")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
