"""``python -m bench.crowd``: a crowd of closed-loop clients against one Procfile instance.

Each client posts the 12 MP composition (``testkit/compose.py``) to ``/detect`` again as soon as
it has its answer, and never retries a 503 (as a load balancer and DeepStack's clients do not).
A prober reads ``/healthz`` every quarter second throughout. Printed per crowd: answers by
status, throughput against the instance's capacity (CPUs / the photo's single-threaded
in-process time, measured before and after that crowd), latency, and /healthz's p95. Loopback
only; every loop ends by its clock.

Options: ``--clients 16 64`` (crowds, run in turn), ``--seconds 60``, ``--detector haar``,
``--queue-deadline`` (seconds), ``--client-address`` (the clients' loopback address), ``--spread`` (an
address of its own for each client),
``--behind-nginx`` (every request through nginx in front, as the Docker image and Elastic Beanstalk run it),
``--sustained`` (seconds: before each crowd, one process per CPU runs the photo in-process side by
side for that long, and the crowd is also given against that rate: the machine's speed with every
CPU busy, which drifts over a minute). The last column, CPU per answer of the web side (master and
web workers) and of the CV side (dispatcher and CV processes), is the figure a busy machine distorts
least: compare the CV side with the in-process CPU time printed first.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import threading
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any

import cv2

from bench.deploy import nginx
from bench.server import Server, multipart, request
from mysite import create_app
from mysite.params import parse
from mysite.pipeline import AnswerFormat, Job, run_job
from mysite.web.endpoints import FACE_DETECTORS
from mysite.web.state import app_state
from testkit import compose


def _photo_job(data: bytes, detector: str) -> tuple[Any, Job]:
    """The registry and the pool's job for the photo, as the site builds them."""
    app = create_app({"MYSITE_URL_FETCH": "off"})
    state = app_state(app)
    registry, settings = state.registry, state.settings
    model = FACE_DETECTORS.model({"detector": detector}, settings)
    job = Job(model, "boxes", AnswerFormat("json", "jpeg"), parse(registry.get(model).params, {}), frozenset(),
              (data,), False, "face", settings.max_pixels, state.budget, settings.max_answer_bytes)
    return registry, job


def in_process_samples(data: bytes, detector: str, reps: int = 7, seconds: float = 0.0) -> list[float]:
    """Wall times of the photo's CV work (the pool's job) on one OpenCV thread, in this process: ``reps``
    runs, or as many as start within ``seconds`` when that is given."""
    registry, job = _photo_job(data, detector)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        run_job(registry, job)
        times: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end if seconds else len(times) < reps:
            t = time.perf_counter()
            run_job(registry, job)
            times.append(time.perf_counter() - t)
    finally:
        cv2.setNumThreads(threads)
    return times


def _side_by_side(data: bytes, detector: str, seconds: float, out: multiprocessing.Queue[list[float]]) -> None:
    """One of the sustained run's processes."""
    out.put(in_process_samples(data, detector, seconds=seconds))


def sustained_samples(data: bytes, detector: str, seconds: float, processes: int) -> list[float]:
    """Times of the photo's CV work with ``processes`` processes running it side by side for ``seconds``."""
    ctx = multiprocessing.get_context("spawn")  # a fork would inherit OpenCV's thread pool mid-state
    out: multiprocessing.Queue[list[float]] = ctx.Queue()
    procs = [ctx.Process(target=_side_by_side, args=(data, detector, seconds, out)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    times = [t for _ in procs for t in out.get(timeout=seconds + 120)]
    for proc in procs:
        proc.join(timeout=30)
    return times


def crowd(port: int, body: bytes, ctype: str, path: str, clients: int, seconds: float,
          source: str | None = None, spread: bool = False) -> dict[str, object]:
    """``clients`` closed loops for ``seconds``; statuses, latencies, and /healthz probe times. ``spread``: each
    client sends from a loopback address of its own (127.0.0.10 on), as many users do."""
    statuses: Counter[int | str] = Counter()
    latencies: list[float] = []
    health: list[float] = []
    health_codes: Counter[int | str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(address: str | None) -> None:
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                status: int | str = request(port, "POST", path, body, ctype, timeout=120, source=address)[0]
            except OSError as exc:
                status = type(exc).__name__
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - t)

    def prober() -> None:
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                code: int | str = request(port, "GET", "/healthz", timeout=10)[0]
            except OSError as exc:
                code = type(exc).__name__
            health.append(time.perf_counter() - t)
            health_codes[code] += 1
            time.sleep(0.25)

    addresses = [f"127.0.0.{10 + i}" if spread else source for i in range(clients)]
    threads = [threading.Thread(target=client, args=(a,)) for a in addresses] + [threading.Thread(target=prober)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - started
    return {"statuses": statuses, "latencies": sorted(latencies), "health": sorted(health),
            "health_codes": health_codes, "wall": wall}


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.crowd", description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--detector", default="haar")
    ap.add_argument("--cv-threads", type=int, default=-1, help="OpenCV's threads per CV process (-1: OpenCV's)")
    ap.add_argument("--threads", type=int, default=0, help="web threads per worker (0: the Procfile's)")
    ap.add_argument("--queue-deadline", type=float, default=0,
                    help="MYSITE_QUEUE_DEADLINE (0: the default); a long one keeps a busy machine's figures "
                         "of CPU per answer free of refused uploads")
    ap.add_argument("--client-address", default=None,
                    help="loopback address the crowd's clients send from, e.g. 127.0.0.9: one client to the server, "
                         "which gets its share of the threads (MYSITE_CLIENT_THREADS); default 127.0.0.1, a trusted proxy")
    ap.add_argument("--spread", action="store_true",
                    help="each client sends from a loopback address of its own (127.0.0.10 on): many users, "
                         "each with a share of the threads, where one address is one client to the server")
    ap.add_argument("--behind-nginx", action="store_true", help="every request through nginx in front")
    ap.add_argument("--sustained", type=float, default=0,
                    help="seconds of the photo in-process, one process per CPU side by side, before each crowd (0: off)")
    args = ap.parse_args()
    data, _ = compose.build_jpeg()
    cpus = len(os.sched_getaffinity(0))
    print(f"12 MP composition, detector={args.detector}; {cpus} CPUs; load average {os.getloadavg()[0]:.2f}. Capacity: "
          f"{cpus} / the photo's in-process time on one OpenCV thread, the median of 7 runs before and 7 after "
          "each crowd (the machine's speed drifts)\n")
    print("| clients | answers | 200 | 503 | other | req/s | in-process ms (before / after) | of capacity "
          "| p50 / p95 s | /healthz p95 s (codes) | CPU ms per answer: web / CV |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    body, ctype = multipart(data)
    for clients in args.clients:
        env = {"MYSITE_THREADS": str(args.threads)} if args.threads else {}
        if args.queue_deadline:
            env["MYSITE_QUEUE_DEADLINE"] = f"{args.queue_deadline:g}"
        sustained = sustained_samples(data, args.detector, args.sustained, cpus) if args.sustained else []
        before = in_process_samples(data, args.detector)
        with ExitStack() as stack:
            server = stack.enter_context(Server(workers=2, cv_threads=args.cv_threads, extra_env=env))
            port = stack.enter_context(nginx([server.port], 120)).port if args.behind_nginx else server.port
            web0, cv0 = server.cpu_split()
            r = crowd(port, body, ctype, f"/detect?detector={args.detector}", clients, args.seconds,
                      args.client_address, args.spread)
            web1, cv1 = server.cpu_split()
        after = in_process_samples(data, args.detector)
        capacity = cpus / statistics.median(before + after)
        statuses: Counter[int | str] = r["statuses"]  # type: ignore[assignment]
        ok = statuses.get(200, 0)
        rate = ok / float(r["wall"])  # type: ignore[arg-type]
        lat: list[float] = r["latencies"]  # type: ignore[assignment]
        health: list[float] = r["health"]  # type: ignore[assignment]
        other = sum(n for s, n in statuses.items() if s not in (200, 503))
        codes = dict(r["health_codes"])  # type: ignore[call-overload]
        print(f"| {clients} | {sum(statuses.values())} | {ok} | {statuses.get(503, 0)} | {other} | {rate:.2f} | "
              f"{statistics.median(before) * 1000:.0f} / {statistics.median(after) * 1000:.0f} | "
              f"{rate / capacity:.0%} | {_pct(lat, 0.5):.2f} / {_pct(lat, 0.95):.2f} | "
              f"{_pct(health, 0.95):.2f} ({codes}) | "
              f"{(web1 - web0) * 1000 / max(1, ok):.1f} / {(cv1 - cv0) * 1000 / max(1, ok):.0f} |", flush=True)
        if sustained:
            median = statistics.median(sustained)
            print(f"  sustained in-process ({len(sustained)} runs, {cpus} processes for {args.sustained:g} s): median "
                  f"{median * 1000:.0f} ms; the crowd was {rate / (cpus / median):.0%} of that rate", flush=True)


if __name__ == "__main__":
    main()
