"""``python -m bench``: the book's face detection vs ours, in-process and over gunicorn, as tables.

Prints Markdown tables (paste them into docs/performance.md) of medians / p90 in ms, ratios,
faces found, recall against the book's full-resolution answer, throughput with 1 and
2 workers, cold start and peak RSS per worker. Benchmarks, not tests: nothing fails.
Then ``bench.detectors``: every /detect detector (Haar, YuNet, BlazeFace) side by side with
the book on photos with placed faces, and the peak RSS with every shipped model loaded.
Options: ``--quick`` (fewer repetitions), ``--clients N`` (concurrent clients, default 4),
``--no-http`` (in-process only), ``--no-detectors`` (skip bench.detectors).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass

import cv2
import numpy as np

from bench import detectors
from bench.measure import Timing, interleaved, ratio, recall, timed
from bench.server import ROOT, Server, load, multipart, request
from mysite import create_app
from mysite.vision.decode import read_header
from mysite.web.state import current_endpoints
from testkit import book, compose

DATA = ROOT / "tests" / "data"
BIG = 100  # px: on the 12 MP photo, recall counts the book's faces at least this wide


@dataclass
class Photo:
    name: str
    data: bytes
    reps: int
    known: list[list[int]] | None = None  # faces placed by compose.py


@dataclass
class Row:
    photo: Photo
    megapixels: float
    book: Timing
    ours: Timing
    book_boxes: list[list[int]]
    our_boxes: list[list[int]]
    http: Timing | None = None


def photos(quick: bool) -> list[Photo]:
    k = 2 if quick else 1
    data, known = compose.build_jpeg()
    return [
        Photo("group_17_faces.jpg", (DATA / "group_17_faces.jpg").read_bytes(), 15 // k),
        Photo("cat.jpg", (DATA / "cat.jpg").read_bytes(), 9 // k),
        Photo("car.jpg", (DATA / "car.jpg").read_bytes(), 7 // k),
        Photo("composition_12mp.jpg", data, 5 // k + 1, known),
    ]


def in_process(items: list[Photo], srv: Server | None) -> list[Row]:
    """Book vs ours in this process (OpenCV's default threads for both), and ours over HTTP
    on ``port`` (one worker, same threads), timed in turn so machine load hits all three alike."""
    client = create_app({"MYSITE_URL_FETCH": "off", "MYSITE_LOG_LEVEL": "WARNING"}).test_client()
    rows = []
    for p in items:
        body, ctype = multipart(p.data)

        def ours() -> list[list[int]]:
            response = client.post("/detect", data=body, content_type=ctype)
            assert response.status_code == 200, response.json
            return [d["box"] for d in response.json["result"]]

        fns = {"book": lambda: [d["box"] for d in book.detect(p.data)], "ours": ours}
        if srv is not None:
            fns["http"] = lambda: _post_ok(srv.port, body, ctype)
        t = interleaved(fns, p.reps, {"http": srv.cpu_seconds} if srv else None)
        header = read_header(p.data)
        row = Row(p, header.width * header.height / 1e6, t["book"][0], t["ours"][0], t["book"][1], t["ours"][1],
                  t["http"][0] if srv is not None else None)
        rows.append(row)
        print(f"  {p.name}: book {row.book} ms, ours {row.ours} ms, HTTP {row.http} ms", file=sys.stderr)
    return rows


def recall_text(row: Row) -> str:
    """Recall of the book's faces (>= 100 px on the 12 MP photo), and exactness on the others."""
    if row.photo.known is None:
        if sorted(row.our_boxes) == sorted(row.book_boxes):
            return "100 % (identical boxes)"
        hit, n = recall(row.book_boxes, row.our_boxes)
        return f"{hit}/{n}" if n else "- (no faces)"
    big = [b for b in row.book_boxes if b[2] - b[0] >= BIG]
    hit, n = recall(big, row.our_boxes)
    placed = [b for b in row.photo.known if b[2] - b[0] >= BIG]
    k_hit, k_n = recall(placed, row.our_boxes)
    return f"{hit}/{n} = {100 * hit / n:.1f} % of book's >= {BIG} px; {k_hit}/{k_n} placed faces"


def server_runs(items: list[Photo], clients: int, quick: bool) -> dict[str, dict]:
    """Each gunicorn configuration: cold start, sequential latency, concurrent throughput, peak RSS.

    All configurations run side by side (an idle server costs nothing) and are measured in
    turn, round by round, so a change in the machine's other load hits them alike.
    """
    cpus = len(os.sched_getaffinity(0))
    configs = {
        "1 worker, OpenCV threads 2": (1, 2),
        "1 worker, OpenCV threads 1": (1, 1),
        "2 workers, OpenCV threads 1": (2, 1),
        "2 workers, OpenCV threads 2": (2, 2),
    }
    # What mysite/server/gunicorn_conf.py picks with no WEB_CONCURRENCY / MYSITE_CV_THREADS set.
    default = (max(2, cpus), cpus)
    configs = {(f"{k} (default here)" if v == default else k): v for k, v in configs.items()}
    heavy = [p for p in items if p.name in ("group_17_faces.jpg", "composition_12mp.jpg")]
    rounds = 3 if quick else 5
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        for label, (workers, threads) in configs.items():  # one at a time: cold starts do not overlap
            servers[label] = stack.enter_context(Server(workers, threads))
        out: dict[str, dict] = {label: {"cold_healthz": srv.cold_healthz_ms, "cold_detect": srv.cold_detect_ms,
                                        "sequential": {}, "throughput": {}} for label, srv in servers.items()}
        for p in items:
            body, ctype = multipart(p.data)
            fns = {label: (lambda srv=srv: _post_ok(srv.port, body, ctype)) for label, srv in servers.items()}
            for label, (t, _) in interleaved(fns, p.reps).items():
                out[label]["sequential"][p.name] = t
        for p in heavy:
            body, ctype = multipart(p.data)
            per_client = 2 if p.known else 4
            rps: dict[str, list[float]] = {label: [] for label in servers}
            busy: dict[str, list[float]] = {label: [] for label in servers}
            latencies: dict[str, list[float]] = {label: [] for label in servers}
            for _ in range(rounds):
                for label, srv in servers.items():
                    cpu0 = srv.cpu_seconds()
                    r, lat = load(srv.port, body, ctype, clients, per_client)
                    rps[label].append(r)
                    # CPUs the workers kept busy: what the machine's other load left them.
                    busy[label].append((srv.cpu_seconds() - cpu0) * r / (clients * per_client))
                    latencies[label] += lat
            for label in servers:
                out[label]["throughput"][p.name] = (float(np.median(rps[label])), Timing(tuple(latencies[label])),
                                                    float(np.median(busy[label])))
        for label, srv in servers.items():
            out[label]["rss_master"], out[label]["rss_workers"] = srv.peak_rss_mb()
            print(f"  server {label}: cold {srv.cold_healthz_ms:.0f}/{srv.cold_detect_ms:.0f} ms", file=sys.stderr)
    return out


def _post_ok(port: int, body: bytes, ctype: str) -> None:
    status, text = request(port, "POST", "/detect", body, ctype)
    if status != 200:
        raise RuntimeError(f"/detect answered {status}: {text[:200]!r}")


def app_load_ms() -> float:
    """Import + create_app (every default model loaded) in a fresh interpreter."""
    code = ("import time; t = time.perf_counter(); from mysite import create_app; "
            "create_app({'MYSITE_LOG_LEVEL': 'WARNING'}); print((time.perf_counter() - t) * 1000)")
    runs = [float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                 check=True, timeout=60).stdout.strip().splitlines()[-1]) for _ in range(3)]
    return sorted(runs)[1]


def other_endpoints(items: list[Photo]) -> list[tuple[str, str, Timing]]:
    """Every endpoint of the table, in-process, on the group photo and the 12 MP photo."""
    client = create_app({"MYSITE_URL_FETCH": "off", "MYSITE_LOG_LEVEL": "WARNING"}).test_client()
    out = []
    # An endpoint with a choice of model (/detect?detector=...) is timed with each.
    endpoints = current_endpoints(client.application)
    targets = [ep.path for ep in endpoints] + [
        f"{ep.path}?{ep.choice.param}={value}" for ep in endpoints if ep.choice for value in ep.choice.models
    ]
    for target in targets:
        for p in (items[0], items[-1]):
            body, ctype = multipart(p.data)
            t, status = timed(lambda: client.post(target, data=body, content_type=ctype).status_code, 3)
            out.append((target, p.name, t) if status == 200 else (target, f"{p.name} ({status})", t))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients for throughput")
    ap.add_argument("--no-http", action="store_true", help="in-process only")
    ap.add_argument("--no-detectors", action="store_true", help="skip the detectors side by side (bench.detectors)")
    args = ap.parse_args(argv)
    items = photos(args.quick)
    print(f"mysite bench: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads), Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    started = time.perf_counter()
    if args.no_http:
        rows, servers = in_process(items, None), {}
    else:
        with Server(1, cv2.getNumThreads()) as srv:
            rows = in_process(items, srv)
        servers = server_runs(items, args.clients, args.quick)
    print_tables(rows, servers, args.clients, app_load_ms(), other_endpoints(items))
    if not args.no_detectors:
        print()
        detectors.main([*(["--quick"] if args.quick else []), *(["--no-http"] if args.no_http else [])])
    print(f"\n(took {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f} at end)")


def print_tables(rows: list[Row], servers: dict, clients: int, load_ms: float,
                 endpoints: list[tuple[str, str, Timing]]) -> None:
    print("\n### /detect: the book's path vs ours (ms, median / p90)\n")
    print("Wall time, book, in-process and HTTP timed in turn. CPU: median CPU ms per request, every "
          "thread (the HTTP column counts the gunicorn worker's), which the machine's other load barely moves.\n")
    print("| photo | MP | book in-process | ours in-process | book ÷ ours | ours HTTP, 1 worker | "
          "HTTP ÷ in-process | book ÷ ours HTTP | faces book / ours | recall vs book |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cpu_rows = []
    for r in rows:
        http_cpu = r.http.cpu if r.http else float("nan")
        cpu_rows.append(f"| {r.photo.name} | {r.book.cpu:.0f} | {r.ours.cpu:.0f} | {http_cpu:.0f} | "
                        f"{ratio(r.book.cpu, r.ours.cpu):.1f} | {ratio(r.book.cpu, http_cpu):.1f} | "
                        f"{ratio(http_cpu, r.ours.cpu):.2f} |")
        http = f"{r.http}" if r.http else "-"
        h_ratio = f"{ratio(r.http.median, r.ours.median):.2f}" if r.http else "-"
        b_ratio = f"{ratio(r.book.median, r.http.median):.1f}" if r.http else "-"
        print(f"| {r.photo.name} | {r.megapixels:.1f} | {r.book} | {r.ours} | "
              f"{ratio(r.book.median, r.ours.median):.1f} | {http} | {h_ratio} | {b_ratio} | "
              f"{len(r.book_boxes)} / {len(r.our_boxes)} | {recall_text(r)} |")
    print("\n| photo | book CPU | ours CPU | HTTP worker CPU | book ÷ ours (CPU) | book ÷ HTTP (CPU) | "
          "HTTP ÷ in-process (CPU) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(cpu_rows))
    if not servers:
        return
    names = list(next(iter(servers.values()))["throughput"])
    print(f"\n### gunicorn (Procfile) on loopback: {clients} concurrent clients "
          "(req/s: median of rounds taken in turn across configurations)\n")
    print("| configuration | cold start: /healthz / /detect (ms) | peak RSS master / workers (MB) | "
          + " | ".join(f"{n}: req/s, latency median / p90, CPUs busy" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for label, s in servers.items():
        cells = " | ".join(f"{s['throughput'][n][0]:.2f}, {s['throughput'][n][1]}, {s['throughput'][n][2]:.2f}"
                           for n in names)
        workers = ", ".join(f"{x:.0f}" for x in s["rss_workers"])
        print(f"| {label} | {s['cold_healthz']:.0f} / {s['cold_detect']:.0f} | {s['rss_master']:.0f} / {workers} | "
              f"{cells} |")
    one = next((s for k, s in servers.items() if k.startswith("1 worker, OpenCV threads 1")), None)
    two = next((s for k, s in servers.items() if k.startswith("2 workers, OpenCV threads 1")), None)
    if one and two:
        print("\n2 workers ÷ 1 (OpenCV threads 1, throughput): " + ", ".join(
            f"{n} {ratio(two['throughput'][n][0], one['throughput'][n][0]):.2f}x" for n in names))
    print("\nSequential client, per configuration (ms, median / p90):\n")
    print("| configuration | " + " | ".join(r.photo.name for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for label, s in servers.items():
        print(f"| {label} | " + " | ".join(str(s["sequential"][r.photo.name]) for r in rows) + " |")
    print(f"\nImport + create_app (all default models) in a fresh interpreter: {load_ms:.0f} ms")
    print("\n### every endpoint, in-process (ms, median / p90)\n")
    print("| endpoint | photo | time |")
    print("|---|---|---|")
    for path, name, t in endpoints:
        print(f"| {path} | {name} | {t} |")


if __name__ == "__main__":
    main()
