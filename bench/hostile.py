"""``python -m bench.hostile``: the hostile-traffic campaign against the Procfile's gunicorn on loopback.

Phases, one after the other, against one server (the Procfile's command, its default two
workers, ``?url=`` fetching on and allowed to reach 127.0.0.0/8 only, so a loopback origin
of ours can play a hostile peer):

1. hostile requests (``bench/hostile_inputs.py``: mutated photos, bombs, malformed multipart,
   bad and extreme parameters, deep JSON, every input form) across every route, plus every
   bomb to every image route and SSRF forms as ``?url=`` values (private, link-local, metadata,
   encoded and mapped addresses, userinfo and backslash tricks, redirects from our origin to
   such addresses); sent by a few client threads;
2. load: 50 clients sending ``/detect`` for 60 s while ``/healthz`` is probed twice a second;
3. slow clients: uploads sent at 5 bytes/s while ``/healthz`` is probed;
4. a dripping ``?url=`` origin: headers, then 1 byte/s, while ``/healthz`` is probed.

Then a table: requests by status, 5xx, answers that are neither JSON nor what was asked for
(an image, a page, a documented text route), connection resets, worker restarts and kills
(gunicorn's own log), max latency, worker RSS at start / peak / end (each worker and their sum;
the whole server's PSS), and whether each goal of issue 8 holds (PASS / FAIL).

Only 127.0.0.1 is contacted. Private, link-local and public addresses appear only as
``?url=`` values that the server must refuse before connecting; the server runs with every
proxy variable emptied, so it has no proxy to hand them to. Every loop is bounded by a count
and a clock: the full run takes about 3-4 minutes on 2 CPUs (at most about 6), ``--quick`` about 40 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from bench.hostile_inputs import Request, bombs, photos_from, requests
from bench.memory import pss_mb, rss_mb
from bench.server import HOST, ROOT, Server, multipart

DATA = ROOT / "tests" / "data"
SEED = 20261122
IMAGE_TYPES = {"image/jpeg", "image/png"}
PAGES = {"/", "/mnist"}  # HTML for browsers
TEXT_ROUTES = {"/predict/", "/predictor"}  # their seeds' clients read text/plain
IMAGE_ROUTES = ["/detect", "/catfacedetection", "/canny", "/digits", "/predict", "/objectdetection",
                "/v1/vision/face"]
DEADLINE_S = 30.0  # issue 8: a slow or dripping peer holds a worker at most this long (the default deadline)
GOAL_HOSTILE = 10_000
GOAL_HEALTHZ_P95_S = 1.0
GOAL_PEAK_MB = 300
GOAL_KEPT_MB = 50
GOAL_SERVER_MB = 512
NO_PROXY_ENV = {k: "" for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}


@dataclass(frozen=True)
class Plan:
    """How big each phase is; every phase is bounded by a count and a clock."""

    hostile: int = 10_500
    hostile_threads: int = 6
    hostile_seconds: float = 170.0
    load_clients: int = 50
    load_seconds: float = 60.0
    slow_clients: int = 4
    slow_seconds: float = 40.0  # longer than DEADLINE_S, so a deadline that holds is seen to fire
    drip_clients: int = 2
    drip_seconds: float = 40.0


QUICK = Plan(hostile=600, hostile_threads=4, hostile_seconds=40.0, load_clients=10, load_seconds=5.0,
             slow_clients=1, slow_seconds=6.0, drip_clients=1, drip_seconds=6.0)


# --- talking to the server ----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (see ``error``)
    mimetype: str = ""
    body: bytes = b""
    seconds: float = 0.0
    error: str = ""  # "reset", "timeout" or another OSError's name


def send(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
         timeout: float = 60.0) -> Answer:
    """One request on a fresh connection to the loopback server."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        mimetype = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        return Answer(resp.status, mimetype, data, time.perf_counter() - started)
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected, http.client.IncompleteRead):
        return Answer(0, seconds=time.perf_counter() - started, error="reset")
    except TimeoutError:
        return Answer(0, seconds=time.perf_counter() - started, error="timeout")
    except OSError as exc:
        return Answer(0, seconds=time.perf_counter() - started, error=type(exc).__name__)
    finally:
        conn.close()


def model_missing(method: str, path: str, a: Answer, unserved: frozenset[str] = frozenset()) -> bool:
    """A model the operator has not installed: its documented JSON 503 (HEAD's has no body to say so)."""
    return a.status == 503 and (b"is not loaded" in a.body or (method == "HEAD" and path.split("?")[0] in unserved))


def problem(method: str, path: str, a: Answer, unserved: frozenset[str] = frozenset()) -> str | None:
    """What is wrong with one answer (a 5xx, not JSON, an error without a message), or None."""
    route = path.split("?")[0]
    if a.status == 0:
        return None  # counted as a reset or timeout
    if model_missing(method, path, a, unserved):
        return None  # counted apart
    if a.status >= 500:
        return f"{a.status}"
    if a.status == 200 and (a.mimetype in IMAGE_TYPES or (a.mimetype == "text/plain" and "output=base64" in path.lower())):
        return None  # the image asked for
    if a.status == 200 and a.mimetype == "text/plain" and route in TEXT_ROUTES:
        return None
    if a.mimetype == "text/html" and route in PAGES:
        return None
    if method == "HEAD":
        return None
    if a.mimetype != "application/json":
        return "not JSON"
    try:
        doc = json.loads(a.body)
    except ValueError:
        return "not JSON"
    if a.status >= 400 and not (isinstance(doc, dict) and (doc.get("message") or doc.get("error"))):
        return "error without a message"
    return None


@dataclass
class Tally:
    """Every answer of a phase: statuses, what went wrong, the slowest."""

    statuses: Counter[str] = field(default_factory=Counter)
    problems: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    model_missing: int = 0
    ssrf: Counter[str] = field(default_factory=Counter)  # statuses of the SSRF forms alone
    max_latency: float = 0.0
    slowest: str = ""
    unserved: frozenset[str] = frozenset()  # routes whose model is not installed on this server
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, a: Answer, kind: str = "") -> None:
        why = problem(method, path, a, self.unserved)
        with self.lock:
            self.statuses[str(a.status) if a.status else a.error] += 1
            if kind == "ssrf":
                self.ssrf[str(a.status) if a.status else a.error] += 1
            if model_missing(method, path, a, self.unserved):
                self.model_missing += 1
            if why:
                self.problems[why] += 1
                if len(self.examples) < 12:
                    self.examples.append(f"{why}: {method} {path[:100]} [{kind}] -> {a.body[:120]!r}")
            if a.seconds > self.max_latency:
                self.max_latency, self.slowest = a.seconds, f"{method} {path[:80]} [{kind}]"

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def five_xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.isdigit() and int(s) >= 500) - self.model_missing


# --- a loopback origin for ?url= ----------------------------------------------------------------


class Origin:
    """An HTTP server on 127.0.0.1 playing the far end of ``?url=``: a photo, redirects, a drip."""

    def __init__(self, photo: bytes, drip_seconds: float) -> None:
        self.asked: list[str] = []
        self.stop = threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                origin.asked.append(self.path)
                if self.path == "/photo.jpg":
                    self._answer(200, photo, "image/jpeg")
                elif self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/loop":
                    self.send_response(302)
                    self.send_header("Location", "/loop")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/drip":
                    self._drip()
                else:
                    self._answer(404, b"no", "text/plain")

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self) -> None:
                """Headers at once, then one byte a second until the fetcher hangs up or the phase ends."""
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(photo)))
                self.end_headers()
                self.wfile.flush()
                ends = time.monotonic() + drip_seconds
                for i in range(len(photo)):
                    if origin.stop.is_set() or time.monotonic() > ends:
                        break
                    try:
                        self.wfile.write(photo[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return  # the fetcher gave up: what a deadline looks like from here
                    origin.stop.wait(1.0)
                self.close_connection = True

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Origin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def ssrf_forms(origin: Origin) -> list[str]:
    """URLs the server must refuse without connecting anywhere but our loopback origin.

    Addresses that are private, link-local or metadata endpoints appear only here, as values;
    hostnames are under ``.invalid`` so they cannot resolve.
    """
    meta = "169.254.169.254"
    return [
        f"http://{meta}/latest/meta-data/", f"http://[::ffff:{meta}]/", "http://2852039166/", "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/", "http://10.0.0.1/", "http://192.168.0.1/", "http://172.16.0.1/",
        "http://100.64.0.1/", "http://0.0.0.0/", "http://[::]/", "http://[fd00::1]/", "http://[fe80::1]/",
        "http://[::1]/", f"http://{meta}\\@metadata.invalid/", f"http://user:pass@{meta}/",
        f"http://metadata.invalid@{meta}/", "http://metadata.google.internal.invalid/", "file:///etc/passwd",
        "gopher://127.0.0.1:1/_x", "dict://127.0.0.1:1/", "ftp://127.0.0.1/x", "javascript:alert(1)", "//x.invalid/",
        "http://" + "a" * 3000 + ".invalid/", "http://[::ffff:10.0.0.1]/", "http://[2002:a9fe:a9fe::]/",
        origin.url(f"/redirect?to=http://{meta}/latest/meta-data/"), origin.url("/redirect?to=http://10.0.0.1/"),
        origin.url("/redirect?to=file:///etc/passwd"), origin.url("/loop"),
    ]


# --- the server's memory and log ----------------------------------------------------------------


class Background:
    """A loop in its own thread for the length of a ``with`` block: ``_run`` returns once ``done`` is set."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


class Sampler(Background):
    """Every worker's RSS and the whole server's PSS, sampled four times a second."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.peak_rss: dict[int, float] = {}
        self.peak_sum = 0.0
        self.peak_pss = 0.0

    def snapshot(self) -> dict[int, float]:
        out = {}
        for pid in self.server.worker_pids():
            try:
                out[pid] = rss_mb(pid)
            except OSError:
                continue  # a worker that just exited
        return out

    def _run(self) -> None:
        assert self.server.proc is not None
        while not self.done.wait(0.25):
            rss = self.snapshot()
            for pid, mb in rss.items():
                self.peak_rss[pid] = max(self.peak_rss.get(pid, 0.0), mb)
            self.peak_sum = max(self.peak_sum, sum(rss.values()))
            try:
                pss = pss_mb(self.server.proc.pid) + sum(pss_mb(p) for p in rss)
                self.peak_pss = max(self.peak_pss, pss)
            except OSError:
                pass


@dataclass(frozen=True)
class WorkerEvents:
    booted: int
    exited: int
    timeouts: int
    sigkills: int
    lines: tuple[str, ...]


def worker_events(log: str) -> WorkerEvents:
    """What gunicorn's log says about its workers: boots, exits, timeouts, SIGKILLs."""
    lines = tuple(l for l in log.splitlines()
                  if re.search(r"Booting worker|Worker exiting|WORKER TIMEOUT|SIGKILL|was terminated", l))
    return WorkerEvents(
        booted=sum("Booting worker" in l for l in lines), exited=sum("Worker exiting" in l for l in lines),
        timeouts=sum("WORKER TIMEOUT" in l for l in lines), sigkills=sum("SIGKILL" in l for l in lines),
        lines=lines)


# --- phases -------------------------------------------------------------------------------------


def _bounded(items: Iterator[tuple[str, str, bytes, dict[str, str], str]], port: int, tally: Tally, threads: int,
             seconds: float, timeout: float = 60.0) -> int:
    """Send ``items`` from ``threads`` clients until they run out or ``seconds`` pass; how many were sent."""
    ends = time.monotonic() + seconds
    lock = threading.Lock()
    sent = 0

    def client() -> None:
        nonlocal sent
        while time.monotonic() < ends:
            with lock:
                item = next(items, None)
            if item is None:
                return
            method, path, body, headers, kind = item
            tally.add(method, path, send(port, method, path, body, headers, timeout), kind)
            with lock:
                sent += 1

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(client) for _ in range(threads)]:
            f.result()
    return sent


def hostile_items(plan: Plan, origin: Origin, routes: list[str]) -> Iterator[tuple[str, str, bytes, dict[str, str], str]]:
    """Every bomb to every image route, the SSRF forms to each ``?url=`` route, then generated requests."""
    for route in IMAGE_ROUTES:
        for name, data in bombs():
            yield "POST", route, data, {"Content-Type": "application/octet-stream"}, f"bomb/{name}"
            body, ctype = multipart(data)
            yield "POST", route, body, {"Content-Type": ctype}, f"bomb-multipart/{name}"
    for route in ("/detect", "/canny", "/catfacedetection"):
        for url in ssrf_forms(origin):
            for method in ("GET", "POST"):
                yield method, f"{route}?url={quote(url, safe='')}", b"", {}, "ssrf"
    photos = photos_from(DATA, max_side=160)
    for r in requests(SEED, plan.hostile, routes, photos):
        yield r.method, r.path, r.body, r.headers, r.kind


def unserved_routes(port: int, routes: list[str], photo: bytes) -> frozenset[str]:
    """The routes that answer a photo with "model is not loaded" (weights the operator fetches, not shipped)."""
    body, ctype = multipart(photo)
    return frozenset(r for r in routes
                     if model_missing("POST", r, send(port, "POST", r, body, {"Content-Type": ctype}, timeout=60)))


def phase_hostile(port: int, plan: Plan, origin: Origin, routes: list[str], photo: bytes) -> tuple[Tally, int, float]:
    tally = Tally(unserved=unserved_routes(port, routes, photo))
    started = time.monotonic()
    sent = _bounded(hostile_items(plan, origin, routes), port, tally, plan.hostile_threads, plan.hostile_seconds)
    return tally, sent, time.monotonic() - started


class Prober(Background):
    """``GET /healthz`` twice a second in its own thread; the latencies (s) and failures."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        super().__init__()
        self.port, self.timeout = port, timeout
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()

    def _run(self) -> None:
        while not self.done.is_set():
            a = send(self.port, "GET", "/healthz", timeout=self.timeout)
            self.latencies.append(a.seconds)
            if a.status != 200:
                self.failures[str(a.status) if a.status else a.error] += 1
            self.done.wait(0.5)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]

    def summary(self) -> str:
        fails = ", ".join(f"{n} x {s}" for s, n in sorted(self.failures.items())) or "none"
        return (f"/healthz p50 {self.percentile(50):.2f} s, p95 {self.percentile(95):.2f} s, "
                f"max {max(self.latencies, default=float('nan')):.2f} s over {len(self.latencies)} probes "
                f"(timeout {self.timeout:.0f} s; failed: {fails})")


def phase_load(port: int, plan: Plan, photo: bytes) -> tuple[Tally, Prober]:
    """``load_clients`` clients sending ``/detect`` back to back for ``load_seconds``, /healthz probed."""
    body, ctype = multipart(photo)
    tally = Tally()
    items = ("POST", "/detect", body, {"Content-Type": ctype}, "load")
    ends = time.monotonic() + plan.load_seconds

    def forever() -> Iterator[tuple[str, str, bytes, dict[str, str], str]]:
        while time.monotonic() < ends:
            yield items

    with Prober(port) as prober:
        _bounded(forever(), port, tally, plan.load_clients, plan.load_seconds + 1, timeout=120)
    return tally, prober


@dataclass
class Held:
    """One slow peer: how long the server kept it, and how it ended."""

    seconds: float
    status: int
    json_ok: bool
    how: str


def slow_upload(port: int, photo: bytes, rate_bps: float, cap_s: float) -> Held:
    """POST /detect with a full Content-Length, then the body at ``rate_bps`` until the server answers or ``cap_s``."""
    body, ctype = multipart(photo)
    head = (f"POST /detect HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(head)
        s.settimeout(1 / rate_bps)
        answer = b""
        for i in range(len(body)):
            if time.monotonic() - started > cap_s:
                return Held(time.monotonic() - started, 0, False, f"still held after {cap_s:.0f} s (we hung up)")
            try:
                s.sendall(body[i:i + 1])
            except OSError:
                break  # the server closed: read what it said
            try:
                answer = s.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
            else:  # closed without a word
                return Held(time.monotonic() - started, 0, False, "closed without an answer")
        s.settimeout(5)
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    seconds = time.monotonic() - started
    head_, _, payload = answer.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d{3})", head_)
    status = int(m.group(1)) if m else 0
    json_ok = b"application/json" in head_.lower()
    return Held(seconds, status, json_ok, f"answered {status}" if status else "reset or closed")


def phase_slow(port: int, plan: Plan, photo: bytes) -> tuple[list[Held], Prober]:
    with Prober(port) as prober, ThreadPoolExecutor(plan.slow_clients) as pool:
        held = list(pool.map(lambda _: slow_upload(port, photo, 5.0, plan.slow_seconds), range(plan.slow_clients)))
    return held, prober


def phase_drip(port: int, plan: Plan, origin: Origin) -> tuple[list[Held], Answer, Prober]:
    """First one honest ``?url=`` fetch from our origin (the allow-list works), then the drips, in parallel."""
    honest = send(port, "GET", "/detect?url=" + quote(origin.url("/photo.jpg"), safe=""), timeout=60)

    def drip(_: int) -> Held:
        a = send(port, "GET", "/detect?url=" + quote(origin.url("/drip"), safe=""), timeout=plan.drip_seconds + 60)
        return Held(a.seconds, a.status, a.mimetype == "application/json", f"answered {a.status}" if a.status else a.error)

    with Prober(port) as prober, ThreadPoolExecutor(plan.drip_clients) as pool:
        held = list(pool.map(drip, range(plan.drip_clients)))
    return held, honest, prober


# --- the campaign -------------------------------------------------------------------------------


@dataclass
class Result:
    plan: Plan
    hostile: Tally
    hostile_sent: int
    hostile_seconds: float
    load: Tally
    load_probe: Prober
    slow: list[Held]
    slow_probe: Prober
    drip: list[Held]
    drip_honest: Answer
    drip_probe: Prober
    rss_start: dict[int, float]
    rss_peak: dict[int, float]
    rss_end: dict[int, float]
    peak_sum: float
    peak_pss: float
    events: WorkerEvents
    initial_workers: int
    load_avg: tuple[tuple[float, float, float], tuple[float, float, float]]
    seconds: float

    @property
    def tallies(self) -> list[Tally]:
        return [self.hostile, self.load]

    @property
    def restarts(self) -> int:
        return max(0, self.events.booted - self.initial_workers)

    @property
    def kills(self) -> int:
        return self.events.timeouts + self.events.sigkills

    @property
    def five_xx(self) -> int:
        return sum(t.five_xx for t in self.tallies) + sum(h.status >= 500 for h in self.slow + self.drip)

    @property
    def non_json(self) -> int:
        bad_peers = sum(1 for h in self.slow + self.drip if h.status and not h.json_ok)
        return sum(t.problems["not JSON"] for t in self.tallies) + bad_peers

    def _peers_goal(self, what: str, held: list[Held], cap_s: float) -> tuple[str, bool | None, str]:
        """A slow peer holds a worker at most the deadline and never gets it killed; None if we hung up too soon to see."""
        longest = max((h.seconds for h in held), default=0.0)
        unanswered = sum(1 for h in held if not h.status)
        if self.kills or longest > DEADLINE_S + 2:
            verdict: bool | None = False
        else:  # a run that hangs up before the deadline cannot see it fire
            verdict = not unanswered if cap_s > DEADLINE_S else None
        return (f"{what} holds a worker <= {DEADLINE_S:.0f} s and never gets it killed", verdict,
                f"longest held {longest:.1f} s; {unanswered} of {len(held)} not answered before we hung up "
                f"after {cap_s:.0f} s; worker kills {self.kills}")

    def goals(self) -> list[tuple[str, bool | None, str]]:
        """(goal, holds — None when this run is too short to judge it, the figure behind it)."""
        kept = max((self.rss_end.get(p, 0.0) - self.rss_start[p] for p in self.rss_start), default=0.0)
        peak = max(self.rss_peak.values(), default=0.0)
        problems = sum(sum(t.problems.values()) for t in self.tallies)
        clean = self.five_xx == 0 and self.kills == 0 and self.non_json == 0 and problems == 0
        return [
            (f"0 x 5xx and 0 worker kills over >= {GOAL_HOSTILE:,} hostile requests, every answer JSON",
             (None if clean else False) if self.hostile.total < GOAL_HOSTILE else clean,
             f"{self.hostile.total:,} hostile requests; 5xx {self.five_xx}, kills {self.kills}, "
             f"non-JSON {self.non_json}, other problems {problems - self.non_json}"),
            (f"peak worker RSS <= {GOAL_PEAK_MB} MB, kept <= {GOAL_KEPT_MB} MB, server <= {GOAL_SERVER_MB} MB",
             peak <= GOAL_PEAK_MB and kept <= GOAL_KEPT_MB and self.peak_pss <= GOAL_SERVER_MB,
             f"peak worker {peak:.0f} MB, kept {kept:+.0f} MB (workers that lived through), server PSS "
             f"{self.peak_pss:.0f} MB (sampled under concurrent traffic: an upper bound on one request's cost)"),
            self._peers_goal("a slow upload (5 B/s)", self.slow, self.plan.slow_seconds),
            self._peers_goal("a dripping ?url= origin (1 B/s)", self.drip, self.plan.drip_seconds),
            (f"/healthz p95 <= {GOAL_HEALTHZ_P95_S:.0f} s under {self.plan.load_clients} concurrent /detect clients",
             self.load_probe.percentile(95) <= GOAL_HEALTHZ_P95_S and not self.load_probe.failures,
             self.load_probe.summary()),
            ("every SSRF form (as a ?url= value) refused with a JSON 4xx",
             sum(self.hostile.ssrf.values()) > 0
             and all(s.isdigit() and 400 <= int(s) < 500 for s in self.hostile.ssrf),
             f"{sum(self.hostile.ssrf.values())} SSRF requests: "
             + ", ".join(f"{s}: {n}" for s, n in sorted(self.hostile.ssrf.items()))),
        ]


def run(plan: Plan, log: Callable[[str], None] = lambda s: None, server_log: Path | None = None) -> Result:
    """The whole campaign against a fresh Procfile server; nothing raised for a goal that fails."""
    from mysite import create_app

    app = create_app({"MYSITE_LOG_LEVEL": "CRITICAL", "MYSITE_URL_FETCH": "off"})
    routes = sorted({r.rule for r in app.url_map.iter_rules() if "<" not in r.rule and not r.rule.startswith("/static")})
    routes.append("/no-such-route")
    del app
    photo = (DATA / "group_17_faces.jpg").read_bytes()
    load_before = os.getloadavg()
    started = time.monotonic()
    env = {**NO_PROXY_ENV, "MYSITE_URL_FETCH": "on", "MYSITE_URL_ALLOW_NETWORKS": "127.0.0.0/8"}
    with Origin(photo, plan.drip_seconds) as origin, Server(workers=2, cv_threads=-1, extra_env=env) as server:
        initial = len(server.worker_pids())
        sampler = Sampler(server)
        time.sleep(0.5)
        rss_start = sampler.snapshot()
        with sampler:
            log(f"hostile: {plan.hostile:,} generated requests + bombs + SSRF forms, {plan.hostile_threads} clients")
            hostile, sent, hostile_s = phase_hostile(server.port, plan, origin, routes, photo)
            log(f"  {sent:,} sent in {hostile_s:.0f} s; statuses {dict(hostile.statuses)}; "
                f"routes without their model: {sorted(hostile.unserved)}")
            log(f"load: {plan.load_clients} clients x /detect for {plan.load_seconds:.0f} s")
            load, load_probe = phase_load(server.port, plan, photo)
            log(f"  {load.total:,} answered; {load_probe.summary()}")
            log(f"slow clients: {plan.slow_clients} uploads at 5 B/s, for at most {plan.slow_seconds:.0f} s")
            slow, slow_probe = phase_slow(server.port, plan, photo)
            log(f"  {[h.how for h in slow]}; {slow_probe.summary()}")
            log(f"dripping ?url= origin: {plan.drip_clients} fetches, 1 B/s for at most {plan.drip_seconds:.0f} s")
            drip, honest, drip_probe = phase_drip(server.port, plan, origin)
            log(f"  honest fetch {honest.status}; drips {[(h.how, round(h.seconds, 1)) for h in drip]}")
            time.sleep(2)  # let the last answers' memory go back
            rss_end = sampler.snapshot()
        text = server.log()
        if server_log is not None:
            server_log.write_text(text)  # gunicorn's log with the app's: the traceback behind any 5xx
        events = worker_events(text)
    return Result(plan, hostile, sent, hostile_s, load, load_probe, slow, slow_probe, drip, honest, drip_probe,
                  rss_start, sampler.peak_rss, rss_end, sampler.peak_sum, sampler.peak_pss, events,
                  initial, (load_before, os.getloadavg()), time.monotonic() - started)


def report(r: Result) -> str:
    """The table, in Markdown."""
    out = []
    load_a, load_b = r.load_avg
    out.append(f"mysite bench.hostile: {platform.machine()}, {os.cpu_count()} CPUs, load average "
               f"{load_a[0]:.2f} / {load_a[1]:.2f} / {load_a[2]:.2f} at start, {load_b[0]:.2f} at the end; "
               f"run time {r.seconds:.0f} s\n")
    out.append("| phase | requests | by status | 5xx | not JSON | resets | timeouts | max latency |")
    out.append("|---|---|---|---|---|---|---|---|")
    for name, t in (("hostile", r.hostile), ("load", r.load)):
        by = ", ".join(f"{s}: {n}" for s, n in sorted(t.statuses.items()))
        out.append(f"| {name} | {t.total:,} | {by} | {t.five_xx} | {t.problems['not JSON']} | "
                   f"{t.statuses['reset']} | {t.statuses['timeout']} | {t.max_latency:.1f} s |")
    for name, held in (("slow uploads (5 B/s)", r.slow), ("dripping ?url= (1 B/s)", r.drip)):
        by = ", ".join(f"{h.how} after {h.seconds:.1f} s" + ("" if h.json_ok or not h.status else " (not JSON)")
                       for h in held)
        out.append(f"| {name} | {len(held)} | {by} | {sum(h.status >= 500 for h in held)} | "
                   f"{sum(1 for h in held if h.status and not h.json_ok)} | - | - | "
                   f"{max((h.seconds for h in held), default=0):.1f} s |")
    if any(t.model_missing for t in r.tallies):
        out.append(f"\n503 \"model is not loaded\" (a model the operator did not install; JSON, not counted as a "
                   f"5xx): {sum(t.model_missing for t in r.tallies)}, on {', '.join(sorted(r.hostile.unserved))}.")
    out.append(f"\nHonest ?url= fetch from the loopback origin: {r.drip_honest.status or r.drip_honest.error}.")
    out.append(f"Hostile phase: {r.hostile_sent:,} requests in {r.hostile_seconds:.0f} s; slowest: {r.hostile.slowest}.")
    out.append(f"/healthz during load: {r.load_probe.summary()}.")
    out.append(f"/healthz during slow uploads: {r.slow_probe.summary()}.")
    out.append(f"/healthz during drips: {r.drip_probe.summary()}.")
    out.append(f"\nWorkers (gunicorn's log): {r.initial_workers} at start, {r.events.booted} booted in all "
               f"({r.restarts} restarts), {r.events.exited} 'Worker exiting', {r.events.timeouts} WORKER TIMEOUT, "
               f"{r.events.sigkills} SIGKILL.")
    for line in r.events.lines[:10]:
        if "Booting worker" not in line:
            out.append(f"    {line.strip()}")
    out.append("\n| worker RSS (MB) | start | peak | end |")
    out.append("|---|---|---|---|")
    for pid in sorted(set(r.rss_start) | set(r.rss_peak)):
        out.append(f"| pid {pid} | {_mb(r.rss_start.get(pid))} | {_mb(r.rss_peak.get(pid))} | {_mb(r.rss_end.get(pid))} |")
    out.append(f"| sum of workers | {sum(r.rss_start.values()):.0f} | {r.peak_sum:.0f} | {sum(r.rss_end.values()):.0f} |")
    out.append(f"| whole server (PSS) | | {r.peak_pss:.0f} | |")
    if any(t.examples for t in r.tallies):
        out.append("\nFirst problems:")
        out.extend(f"    {e}" for t in r.tallies for e in t.examples[:6])
    out.append("\n| goal (issue 8) | holds | measured |")
    out.append("|---|---|---|")
    for goal, ok, figure in r.goals():
        verdict = "PASS" if ok else "FAIL" if ok is not None else "not judged (run too short)"
        out.append(f"| {goal} | {verdict} | {figure} |")
    return "\n".join(out)


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short campaign (about 40 s): 600 requests, 10 clients for 5 s")
    ap.add_argument("--log", type=Path, metavar="PATH", help="write gunicorn's log (and the app's) to PATH")
    ap.add_argument("--strict", action="store_true", help="exit with 1 when a goal fails")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    result = run(plan, log=lambda s: print(s, flush=True), server_log=args.log)
    print()
    print(report(result))
    return 1 if args.strict and any(ok is False for _, ok, _ in result.goals()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
