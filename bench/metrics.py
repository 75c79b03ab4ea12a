"""``python -m bench.metrics``: what counting every request for ``/metrics`` costs.

Two measures, each ``MYSITE_METRICS=off`` (nothing counted, no route) against ``on``:

1. In-process CPU time per request (``time.process_time``, interleaved rep by rep), with
   prometheus-client's file-backed multiprocess values as under gunicorn: on ``/healthz``
   (the cheapest answer: the worst case) and on ``/detect`` with a photo (the site's work).
   Also the CPU time of one scrape (``GET /metrics`` adding up three processes' files).
2. Over HTTP: the Procfile's gunicorn with 2 workers (and its CV process pool), off and on in
   turns, clients sending ``/detect`` while (when on) a scraper reads ``/metrics`` every second
   (Prometheus' default is every 15 s); requests per second and the CPU seconds per request of
   every process under gunicorn's master (web workers, the pool's dispatcher and CV processes).

The goal: counting costs at most 2 % of throughput. CPU time per request is the steadier
figure on a shared machine; the throughput ratio is noisy there. Prints Markdown tables.
Options: ``--quick`` (fewer repetitions), ``--clients N`` (default 4), ``--no-http``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRAPES = 30  # scrapes in a row, to time one


def in_process(reps: int) -> list[tuple[str, float, float]]:
    """(what, CPU µs per request off, on) for /healthz and /detect; and the scrape's CPU µs."""
    from bench.server import multipart
    from mysite import create_app
    from mysite.server import metrics

    assert metrics.MULTIPROCESS, "PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported"
    # One OpenCV thread: its pool's idle threads would add their spinning to process_time.
    apps = {name: create_app({"MYSITE_LOG_LEVEL": "ERROR", "MYSITE_METRICS": name, "MYSITE_CV_THREADS": "1"})
            for name in ("off", "on")}
    photo = (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
    body, ctype = multipart(photo)

    def call(app: Any, path: str, method: str = "GET", data: bytes = b"", content_type: str = "") -> None:
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
                   "wsgi.url_scheme": "http", "wsgi.input": _Body(data), "CONTENT_LENGTH": str(len(data)),
                   "CONTENT_TYPE": content_type, "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}
        result = app.wsgi_app(environ, lambda status, headers, exc_info=None: None)
        for _ in result:
            pass
        result.close()

    rows = []
    for label, path, method, data, content_type, n in [
        ("GET /healthz", "/healthz", "GET", b"", "", 200),
        ("POST /detect (group photo, 640x482, 17 faces)", "/detect", "POST", body, ctype, 3),
    ]:
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for name in ("off", "on"):  # warm-up
            call(apps[name], path, method, data, content_type)
        for _ in range(reps):
            for name in ("off", "on"):
                c0 = time.process_time()
                for _ in range(n):
                    call(apps[name], path, method, data, content_type)
                cpu[name].append((time.process_time() - c0) / n * 1e6)
        rows.append((label, statistics.median(cpu["off"]), statistics.median(cpu["on"])))
    c0 = time.process_time()
    for _ in range(50):
        metrics.render()
    rows.append(("one scrape (render)", float("nan"), (time.process_time() - c0) / 50 * 1e6))
    return rows


class _Body:
    """A WSGI input stream over bytes."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else min(len(self._data), self._pos + size)
        chunk, self._pos = self._data[self._pos:end], end
        return chunk

    def readline(self, size: int = -1) -> bytes:
        end = self._data.find(b"\n", self._pos)
        end = len(self._data) if end < 0 else end + 1
        if size is not None and size >= 0:
            end = min(end, self._pos + size)
        chunk, self._pos = self._data[self._pos:end], end
        return chunk


def over_http(rounds: int, clients: int, per_client: int) -> dict[str, list[tuple[float, float]]]:
    """Per setting, each round's (requests/s, worker CPU ms per request), off and on in turns."""
    from bench.server import Server, load, multipart, request

    photo = (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
    body, ctype = multipart(photo)
    out: dict[str, list[tuple[float, float]]] = {"off": [], "on": [], "scrape": []}
    for _ in range(rounds):
        for name in ("off", "on"):
            with Server(workers=2, cv_threads=1, extra_env={"MYSITE_METRICS": name}) as server:
                load(server.port, body, ctype, clients, 2)  # warm both workers
                stop = threading.Event()
                scrapes: list[int] = []

                def scrape(port: int = server.port, stop: threading.Event = stop, seen: list[int] = scrapes) -> None:
                    while not stop.wait(1.0):
                        seen.append(request(port, "GET", "/metrics")[0])

                scraper = threading.Thread(target=scrape, daemon=True)
                if name == "on":
                    scraper.start()
                cpu0 = server.cpu_seconds()
                rate, _ = load(server.port, body, ctype, clients, per_client)
                cpu = server.cpu_seconds() - cpu0
                stop.set()
                if scraper.is_alive():
                    scraper.join(5)
                if name == "on" and (not scrapes or set(scrapes) != {200}):
                    raise RuntimeError(f"scrapes answered {scrapes}")
                out[name].append((rate, cpu / (clients * per_client) * 1000))
                if name == "on":  # what one scrape costs the worker that answers it, over HTTP
                    cpu0 = server.cpu_seconds()
                    for _ in range(SCRAPES):
                        request(server.port, "GET", "/metrics")
                    out["scrape"].append((float("nan"), (server.cpu_seconds() - cpu0) / SCRAPES * 1000))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args(argv)
    if "prometheus_client" in sys.modules:
        raise SystemExit("run as python -m bench.metrics: prometheus_client must not be imported yet")
    folder = tempfile.mkdtemp(prefix="bench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # file-backed values, as every gunicorn worker has them
    reps = 5 if args.quick else 15
    print(f"CPUs: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f} (a shared machine: "
          "CPU time is the steadier figure)\n")
    print("In-process, CPU time per request (median of interleaved rounds):\n")
    print("| request | off (µs) | on (µs) | on - off (µs) | cost |")
    print("|---|---:|---:|---:|---:|")
    rows = in_process(reps)
    for label, off, on in rows:
        if off != off:  # nan: the scrape row
            print(f"| {label} | | {on:.0f} | | |")
        else:
            print(f"| {label} | {off:.0f} | {on:.0f} | {on - off:+.0f} | {100 * (on - off) / off:+.1f} % |")
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]  # gunicorn makes its own below
    if not args.no_http:
        rounds, per_client = (2, 5) if args.quick else (5, 10)
        result = over_http(rounds, args.clients, per_client)
        print(f"\nOver HTTP: gunicorn, 2 workers x 1 OpenCV thread, {args.clients} clients x {per_client} "
              f"POST /detect (group photo, 17 faces), {rounds} rounds off/on in turns; on: a scrape every second\n")
        print("| round | off: requests/s | on: requests/s | off: CPU ms/request | on: CPU ms/request |")
        print("|---|---:|---:|---:|---:|")
        for i, (off, on) in enumerate(zip(result["off"], result["on"]), 1):
            print(f"| {i} | {off[0]:.2f} | {on[0]:.2f} | {off[1]:.1f} | {on[1]:.1f} |")
        # Each on run is compared with the off run just before it: the machine's load drifts between rounds.
        rate = statistics.median(on[0] / off[0] for off, on in zip(result["off"], result["on"]))
        cpu = statistics.median(on[1] / off[1] for off, on in zip(result["off"], result["on"]))
        spread = [c for _, c in result["off"]]
        print(f"\nthroughput on/off (median of rounds): {rate:.3f}; CPU per request on/off: {cpu:.3f}; "
              f"off rounds alone vary {min(spread):.1f}-{max(spread):.1f} ms CPU per request (goal: cost <= 2 %)")
        healthz_extra = rows[0][2] - rows[0][1]
        scrape_ms = statistics.median(c for _, c in result["scrape"])
        detect_ms = statistics.median(c for _, c in result["off"])
        rate_on = statistics.median(r for r, _ in result["on"])
        print(f"one scrape over HTTP: {scrape_ms:.1f} ms of CPU (every process's files: master, workers, dispatcher)")
        for interval in (1, 15):
            share = (healthz_extra / 1000 + scrape_ms / interval / rate_on) / detect_ms
            print(f"expected cost at {rate_on:.2f} requests/s with a scrape every {interval} s: {healthz_extra:.0f} µs "
                  f"per request counted + {scrape_ms:.1f} ms per scrape = {100 * share:.2f} % of a detection's CPU")
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
