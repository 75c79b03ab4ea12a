"""``python -m bench.memory``: memory per request against the Procfile's gunicorn on loopback.

Sends the requests that could once exhaust a worker (40 MP photos with the cascades' most expensive
parameters, a 156 KB RGBA PNG of 40 MP, a JPEG header of 632 bytes declaring 8000x5000, base64 PNG
answers, 16 images in one request) and a spread of legitimate large requests (12 MP and 40 MP photos
to every endpoint, the costliest parameters the budget accepts), one at a time, to one
CV process. For each: status, time, and the CV process's RSS before, at its peak (``VmHWM``,
reset before each request through ``/proc/PID/clear_refs``) and after the answer (what it
kept). Then the Procfile's defaults (two web workers, a CV process per CPU) serve the
costliest accepted request from two clients at once while the whole server's memory (PSS of
every process, so shared pages count once) is sampled. Prints Markdown tables for docs/reliability-security.md. Bounded: every request
has a 120 s timeout; the run takes about two minutes on 2 CPUs. Options: ``--quick`` (the
12 MP rows only).
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.server import Server, multipart, request
from testkit import compose
from testkit.hostile_inputs import jpeg_header, png

GOAL_PEAK_MB = 300
GOAL_KEPT_MB = 50
GOAL_SERVER_MB = 512


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: Callable[[], tuple[bytes, str]]  # built when sent, so only one large body lives at a time


def status_mb(pid: int, key: str) -> float:
    """A size from /proc/PID/status (VmRSS, VmHWM, ...), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    return status_mb(pid, "VmRSS")


def pss_mb(pid: int) -> float:
    """Proportional set size: a page shared by n processes counts 1/n in each."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> None:
    """Set VmHWM back to the current RSS (Linux: ``echo 5 > /proc/PID/clear_refs``)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Row:
    name: str
    status: int
    seconds: float
    start: float
    peak: float
    kept: float
    answer: int
    message: str


def send(server: Server, case: Case) -> Row:
    """One request to the single CV process, with its RSS before, at the peak and after (NaN when the
    request cost the process its life: past the deadline or the memory limit it is replaced)."""
    (pid,) = server.cv_pids()
    body, ctype = case.body()
    time.sleep(0.2)
    start = rss_mb(pid)
    reset_peak(pid)
    t = time.perf_counter()
    status, answer = request(server.port, "POST", case.path, body, ctype, timeout=120)
    seconds = time.perf_counter() - t
    del body
    time.sleep(0.3)  # the heap is trimmed once the answer is sent
    try:
        peak, end = status_mb(pid, "VmHWM"), rss_mb(pid)
    except OSError:
        peak = end = float("nan")
    message = ""
    if answer[:1] == b"{":
        message = answer[:200].decode("utf-8", "replace").strip()
    return Row(case.name, status, seconds, start, peak, end - start, len(answer), message)


def _jpeg(image: np.ndarray, quality: int = 92) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def photos() -> dict[str, Callable[[], bytes]]:
    """The photos, built on demand: the 12 MP composition, the same at 40 MP, 2.5 MP pieces."""
    def composition() -> np.ndarray:
        return compose.build()[0]

    return {
        "12mp": lambda: _jpeg(composition()),
        "40mp": lambda: _jpeg(cv2.resize(composition(), (8000, 5000), interpolation=cv2.INTER_CUBIC), 85),
        "2.5mp": lambda: _jpeg(cv2.resize(composition(), (1920, 1296), interpolation=cv2.INTER_AREA)),
    }


LABELS = {"12mp": "12 MP", "40mp": "40 MP"}
COSTLIEST = "?min_face=0&scale_factor=1.05&min_neighbors=0"  # every cascade parameter at its costliest
# (photo, endpoint, note): each endpoint at its defaults and at the costliest parameters in range.
SPREAD_12MP = [
    ("12mp", "/detect", " (defaults)"),
    ("12mp", "/catfacedetection", " (defaults)"),
    ("12mp", "/detect?min_size=25", " (the book's; full-size scan, in bands)"),
    ("12mp", "/detect" + COSTLIEST, ""),
    ("12mp", "/catfacedetection" + COSTLIEST, ""),
    ("12mp", "/catfacedetection?min_face=0.01&scale_factor=1.05&min_neighbors=0", ""),
    ("12mp", "/catfacedetection?min_face=0.01", " (the costliest work accepted here)"),
    ("12mp", "/detect?detector=dnn", ""),
    ("12mp", "/digits", ""),
    ("12mp", "/canny", ""),
    ("12mp", "/canny?format=png&output=base64", ""),
    ("12mp", "/detect?output=image", ""),
    ("12mp", "/detect?output=base64&format=png", ""),
]
SPREAD_40MP = [
    ("40mp", "/detect", " (defaults)"),
    ("40mp", "/catfacedetection", " (defaults)"),
    ("40mp", "/catfacedetection" + COSTLIEST, ""),
    ("40mp", "/detect" + COSTLIEST, ""),
    ("40mp", "/detect?min_size=25", " (the book's parameter)"),
    ("40mp", "/detect?min_face=0.01", " (smallest accepted here)"),
    ("40mp", "/detect?detector=dnn", ""),
    ("40mp", "/digits", ""),
    ("40mp", "/canny", ""),
    ("40mp", "/detect?output=image", ""),
    ("40mp", "/detect?output=base64&format=png", ""),
]


def cases(quick: bool) -> list[Case]:
    pics = photos()
    cache: dict[str, bytes] = {}

    def photo(name: str) -> bytes:
        if name not in cache:
            cache.clear()  # one large photo at a time in this process
            cache[name] = pics[name]()
        return cache[name]

    def mp(name: str) -> Callable[[], tuple[bytes, str]]:
        return lambda: multipart(photo(name))

    def raw(data: Callable[[], bytes], ctype: str) -> Callable[[], tuple[bytes, str]]:
        return lambda: (data(), ctype)

    def batch(n: int) -> Callable[[], tuple[bytes, str]]:
        def build() -> tuple[bytes, str]:
            one, ctype = multipart(photo("2.5mp"))
            boundary = ctype.split("boundary=")[1]
            part = one[: one.rindex(f"--{boundary}--".encode())]
            return part * n + f"--{boundary}--\r\n".encode(), ctype
        return build

    def upload(photo_name: str, path: str, note: str = "") -> Case:
        return Case(f"{LABELS[photo_name]} {path}{note}", path, mp(photo_name))

    out = [upload(name, path, note) for name, path, note in SPREAD_12MP] + [
        Case("16 x 2.5 MP /detect in one request", "/detect", batch(16)),
        Case("16 x 2.5 MP /detect?min_face=0 in one request", "/detect?min_face=0", batch(16)),
    ]
    if quick:
        return out
    return out + [upload(name, path, note) for name, path, note in SPREAD_40MP] + [
        Case("40 MP base64 body /detect", "/detect", lambda: (base64.b64encode(photo("40mp")), "text/plain")),
        Case("156 KB RGBA PNG of 40 MP /detect", "/detect", raw(lambda: png(8000, 5000, 6), "image/png")),
        Case("156 KB RGBA PNG of 40 MP /digits", "/digits", raw(lambda: png(8000, 5000, 6), "image/png")),
        Case("632-byte JPEG header of 8000x5000 /digits", "/digits",
             raw(lambda: jpeg_header(8000, 5000), "image/jpeg")),
        Case("632-byte JPEG header of 8000x5000 /detect", "/detect",
             raw(lambda: jpeg_header(8000, 5000), "image/jpeg")),
    ]


def peak_pss_while(server: Server, clients: list[Callable[[], None]]) -> float:
    """Run ``clients`` at once, a thread each; the peak PSS (MB) of the whole server meanwhile: the
    master and every process under it, sampled every 20 ms."""
    assert server.proc is not None
    master, peak, done = server.proc.pid, 0.0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, sum(pss_mb(p) for p in [master, *server.worker_pids()]))
            except OSError:  # a process ended between the listing and the reading
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=c) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    return peak


def whole_server(costliest: Case) -> tuple[float, list[int]]:
    """Two workers, two clients sending ``costliest`` three times each: peak PSS of the whole server (MB)."""
    body, ctype = costliest.body()
    statuses: list[int] = []
    with Server(workers=2, cv_threads=-1) as server:

        def client() -> None:
            for _ in range(3):
                statuses.append(request(server.port, "POST", costliest.path, body, ctype, timeout=120)[0])

        peak = peak_pss_while(server, [client, client])
    return peak, statuses


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 12 MP rows only")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"mysite bench.memory: {platform.machine()}, {os.cpu_count()} CPUs, OpenCV {cv2.__version__}, "
          f"load average {load:.2f} at start\n")
    rows: list[Row] = []
    started = time.perf_counter()
    with Server(workers=1, cv_threads=-1, extra_env={"MYSITE_CV_PROCESSES": "1"}) as server:
        (pid,) = server.cv_pids()
        idle = rss_mb(pid)
        for case in cases(args.quick):
            rows.append(send(server, case))
            r = rows[-1]
            print(f"  {r.name}: {r.status} in {r.seconds:.1f} s, RSS {r.start:.0f} -> peak {r.peak:.0f}, "
                  f"kept {r.kept:+.0f} MB", flush=True)
    print(f"\nCV process RSS when idle after start-up: {idle:.0f} MB. One web worker, one CV process, requests one "
          "at a time; a peak of nan: the request cost the process its life (deadline or memory limit).\n")
    print("| request | status | time (s) | CV process RSS start / peak / kept (MB) | answer |")
    print("|---|---|---|---|---|")
    for r in rows:
        what = r.message if r.status >= 400 else f"{r.answer} bytes"
        print(f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.start:.0f} / {r.peak:.0f} / {r.kept:+.0f} | "
              f"{what.replace('|', '/')} |")
    accepted = [r for r in rows if r.status == 200]
    worst_peak = max(accepted, key=lambda r: r.peak if r.peak == r.peak else 0.0)
    worst_kept = max(rows, key=lambda r: r.kept if r.kept == r.kept else 0.0)
    print(f"\nAccepted requests: peak worker RSS at most {worst_peak.peak:.0f} MB ({worst_peak.name}; goal "
          f"<= {GOAL_PEAK_MB}); kept at most {worst_kept.kept:+.0f} MB ({worst_kept.name}; goal <= {GOAL_KEPT_MB}).")
    print(f"Refused before any work: {sum(r.status in (413, 422) for r in rows)} of {len(rows)}; "
          f"5xx: {sum(r.status >= 500 for r in rows)}.")
    costliest = next(c for c in cases(args.quick) if c.name == worst_peak.name)
    peak, statuses = whole_server(costliest)
    print(f"Whole server (master, 2 web workers, the pool: PSS), two clients sending '{costliest.name}' at once: peak "
          f"{peak:.0f} MB (goal <= {GOAL_SERVER_MB}); statuses {sorted(set(statuses))}.")
    print(f"\nRun time {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f} at the end.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
