"""``python -m bench.metrics``: what counting every request for ``/metrics`` costs.

Two measures, each ``MYSITE_METRICS=off`` (nothing counted, no route) against ``on``:

1. In-process CPU time per request (``time.process_time``, interleaved rep by rep), with
   prometheus-client's file-backed multiprocess values as under gunicorn: on ``/healthz``
   (the cheapest answer: the worst case) and on ``/detect`` with a photo (the site's work).
   Also the CPU time of one scrape (``GET /metrics`` adding up three processes' files).
2. Over HTTP: two instances of the Procfile's gunicorn (2 workers, the CV process pool) side by
   side, off and on (a scraper reads the on one's ``/metrics`` every second; Prometheus' default
   is every 15 s). Each round loads both at the same time with the same clients sending
   ``/detect``, so the machine's other work falls on both alike; per round, the CPU time per request of the whole instance
   (master, workers, dispatcher, CV processes: /proc) and requests per second. Printed: the on/off
   ratios' median and range over the rounds, on a small photo and on the group photo.

The goal: counting costs at most 2 % of throughput. On a CPU-bound site throughput is the inverse
of CPU time per request, and CPU time is the figure that survives a shared machine; requests per
second are printed too, with the range of the off rounds alone to judge them by. Prints Markdown.
Options: ``--quick`` (4 rounds of 4 s, not 10 of 8 s), ``--clients N`` (default 4), ``--no-http``.
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


# What each round sends, over HTTP: a small photo (the metrics are the largest share of a cheap request)
# and the group photo (the site's usual work).
WORKLOADS = [("POST /detect, one face (64x48)", "static"), ("POST /detect, group photo (640x482, 17 faces)", "group")]


def over_http(rounds: int, clients: int, seconds: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per workload and setting, each round's (requests/s, CPU ms per request of the whole instance).

    Two instances run side by side for the whole run, one with MYSITE_METRICS=off and one on (scraped
    every second throughout). In each round both get the same load at the same time, for the same
    ``seconds``: whatever else the machine is doing then falls on both alike, so each round's on/off
    ratio is a fair pair even when the machine's load drifts between rounds.
    """
    from bench.server import Server, load, multipart, request

    photos = {"static": (ROOT / "mysite" / "web" / "static" / "example-face.jpg").read_bytes(),
              "group": (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()}
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with Server(workers=2, cv_threads=1, extra_env={"MYSITE_METRICS": "off"}) as off, \
            Server(workers=2, cv_threads=1, extra_env={"MYSITE_METRICS": "on"}) as on:
        servers = {"off": off, "on": on}
        stop = threading.Event()
        scrapes: list[int] = []

        def scrape() -> None:
            while not stop.wait(1.0):
                scrapes.append(request(on.port, "GET", "/metrics")[0])

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        try:
            for label, photo in WORKLOADS:
                body, ctype = multipart(photos[photo])
                for server in servers.values():
                    load(server.port, body, ctype, clients, 2)  # warm every worker and CV process
                runs: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
                for _ in range(rounds):
                    cpu0 = {name: server.tree_cpu_seconds() for name, server in servers.items()}
                    done: dict[str, tuple[int, float]] = {}
                    loads = [threading.Thread(target=_load_into, args=(done, name, server.port, body, ctype, clients,
                                                                      seconds)) for name, server in servers.items()]
                    for t in loads:
                        t.start()
                    for t in loads:
                        t.join()
                    for name, server in servers.items():
                        count, wall = done[name]
                        cpu = server.tree_cpu_seconds() - cpu0[name]
                        runs[name].append((count / wall, cpu / count * 1000))
                out[label] = runs
            cpu0 = on.tree_cpu_seconds()
            for _ in range(SCRAPES):
                request(on.port, "GET", "/metrics")
            out["scrape"] = {"on": [(float("nan"), (on.tree_cpu_seconds() - cpu0) / SCRAPES * 1000)]}
        finally:
            stop.set()
            scraper.join(5)
    if not scrapes or set(scrapes) != {200}:
        raise RuntimeError(f"scrapes answered {scrapes}")
    return out


def _load_into(into: dict[str, tuple[int, float]], name: str, *args: Any) -> None:
    into[name] = _load_for(*args)


def _load_for(port: int, body: bytes, ctype: str, clients: int, seconds: float) -> tuple[int, float]:
    """``clients`` threads sending ``POST /detect`` until ``seconds`` have passed (each finishes the request
    it is in): how many were answered, and the wall time until the last one was."""
    from bench.server import request

    deadline = time.perf_counter() + seconds
    counts = [0] * clients
    errors: list[str] = []

    def client(i: int) -> None:
        for _ in range(100_000):  # bounded; the deadline ends it long before
            if time.perf_counter() >= deadline:
                return
            status, text = request(port, "POST", "/detect", body, ctype)
            if status != 200:
                errors.append(f"{status}: {text[:200]!r}")
                return
            counts[i] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return sum(counts), time.perf_counter() - started


def _spread(values: list[float]) -> str:
    """Median and range, as one cell."""
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


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
        rounds, seconds = (4, 4.0) if args.quick else (10, 8.0)
        result = over_http(rounds, args.clients, seconds)
        scrape_ms = result.pop("scrape")["on"][0][1]
        print(f"\nOver HTTP: two instances side by side (gunicorn, 2 workers x 1 OpenCV thread, the CV pool), "
              f"MYSITE_METRICS=off and on (scraped every second); {args.clients} clients on each at the same "
              f"time, {rounds} rounds of {seconds:g} s. CPU: every process of the instance "
              "(master, workers, dispatcher, CV processes; /proc schedstat).\n")
        print("| request | CPU ms/request off | on/off CPU per request: median (range) | on/off requests/s: "
              "median (range) | off alone: requests/s range |")
        print("|---|---:|---:|---:|---:|")
        for label, runs in result.items():
            pairs = list(zip(runs["off"], runs["on"]))
            cpu_ratio = [on[1] / off[1] for off, on in pairs]
            rate_ratio = [on[0] / off[0] for off, on in pairs]
            rates = [r for r, _ in runs["off"]]
            print(f"| {label} | {statistics.median(c for _, c in runs['off']):.2f} | {_spread(cpu_ratio)} "
                  f"| {_spread(rate_ratio)} | {min(rates):.1f}-{max(rates):.1f} |")
        print(f"\none scrape over HTTP: {scrape_ms:.1f} ms of CPU (the instance's files: master, workers, dispatcher)")
        print("goal: on/off CPU per request <= 1.02 (on a CPU-bound site throughput is 1 / CPU per request)\n")
        counting_ms = (rows[0][2] - rows[0][1]) / 1000
        cpus = os.cpu_count() or 1
        print("What the measured ratio holds, from the parts measured alone: counting (in-process, GET /healthz "
              f"on - off: {counting_ms * 1000:.0f} µs per request) and scraping ({scrape_ms:.1f} ms a scrape, at "
              "the rate each instance reached here, and at capacity: every CPU busy)\n")
        print("| request | counting | scrapes every 1 s, at this run's rate | every 1 s, at capacity "
              "| every 15 s, at capacity |")
        print("|---|---:|---:|---:|---:|")
        for label, runs in result.items():
            cpu_ms = statistics.median(c for _, c in runs["off"])
            rate = statistics.median(r for r, _ in runs["on"])
            capacity = cpus * 1000 / cpu_ms  # requests/s with every CPU busy
            print(f"| {label} | {100 * counting_ms / cpu_ms:.2f} % | {100 * scrape_ms / rate / cpu_ms:.2f} % "
                  f"| {100 * scrape_ms / capacity / cpu_ms:.2f} % | {100 * scrape_ms / 15 / capacity / cpu_ms:.3f} % |")
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
