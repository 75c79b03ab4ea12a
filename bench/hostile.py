"""The hostile-traffic campaign against the Procfile's gunicorn on loopback, with a table of what held.

    python -m bench.hostile            # about 3 minutes on 2 CPUs
    python -m bench.hostile --quick    # about 40 s (the CI test runs it)

Phases, each bounded in requests and in time:

1. **inputs**: ``--requests`` (10,000) from ``testkit/hostile_inputs.py`` (mutated real photos,
   generated images of every format, pixel and decompression bombs, malformed multipart, deep
   JSON, bad and extreme parameters, refused ``?url=`` forms, wrong methods) over every image
   route, 4 clients at a time;
1b. **complexity**: each algorithmic-complexity input of ``hostile_inputs.complexity_requests()``
   (a body of line breaks, JPEG marker floods, a progressive scan bomb, PNG text chunks, GIF
   sub-blocks, TIFF tags, 1,500 parts, a part's 9 MB header, nested JSON, bad parameters, 95
   Accept lines of tabs) once, at the size that once cost seconds to minutes: each must be a 4xx
   within 2 s;
1c. **faces** (with dlib's face model, ``--face-model``, by default the shared folder's when it is
   there): ``--requests`` / 10 hostile inputs over the face routes (register, recognize, match;
   a store of its own that holds at most 20 faces), then each complexity input to each route;
2. **crowd**: ``--clients`` (50) clients posting the group photo to ``/detect`` for
   ``--seconds`` (60) while one prober asks ``/healthz`` every 0.2 s;
3. **slow uploads**: 4 clients sending a body at 30 B/s, while ``/detect`` and ``/healthz`` are asked;
4. **origin**: 2 ``?url=`` requests to a loopback origin (127.0.0.2, the only address the server
   is allowed to fetch from) that sends its headers, then a byte a second; then a redirect whose
   body is 1 GiB of gzipped zeros (the photo it leads to must be detected) and an answer gzipped
   twice (a 413), with worker memory sampled as in every phase;
5. **gunicorn's own limits**: a request line and a header over gunicorn's limits.

Then prints requests by status, 5xx, answers that are not JSON (or the image asked for),
connection resets, worker restarts (from gunicorn's log), max latency, worker RSS at start,
peak and end, and whether each goal of the reliability section holds. Only 127.0.0.0/8 is contacted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.memory import pss_mb, rss_mb
from bench.server import HOST, ROOT, Server, multipart
from testkit import hostile_inputs
from testkit.net import reply

ROUTES = ("/detect", "/catfacedetection", "/canny", "/catdetection", "/objectdetection", "/predict", "/digits",
          "/predict/", "/predictor", "/v1/vision/face", "/v1/vision/detection")
IMAGE_TYPES = ("image/jpeg", "image/png")
TEXT_ROUTES = ("/predict/", "/predictor")  # their seeds' clients read text by default
ORIGIN_HOST = "127.0.0.2"  # the dripping origin: the one address the server may fetch from
# The face routes, each able to reach the face model and the store (phase "faces", when the model is there).
FACE_ROUTES = ("/faces/hostile", "/recognize", "/v1/vision/face/recognize", "/v1/vision/face/match",
               "/v1/vision/face/register?userid=hostile")
FACE_MODEL = ROOT.parent / "shared" / "models" / "dlib-face" / "dlib_face_recognition_resnet_model_v1.dat"


@dataclass
class Tally:
    """What the server answered, across every phase."""

    statuses: Counter[int] = field(default_factory=Counter)
    not_json: list[str] = field(default_factory=list)
    resets: int = 0
    busy: int = 0  # 503s that say "busy" (the detection queue was full), not "model not loaded"
    max_ms: float = 0.0
    by_phase: dict[str, Counter[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, phase: str, status: int, ms: float, problem: str | None = None) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.by_phase.setdefault(phase, Counter())[status] += 1
            self.max_ms = max(self.max_ms, ms)
            if problem:
                self.not_json.append(problem)

    def add_busy(self) -> None:
        with self.lock:
            self.busy += 1

    def reset(self, phase: str) -> None:
        with self.lock:
            self.resets += 1
            self.by_phase.setdefault(phase, Counter())[-1] += 1


def send(port: int, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float = 120.0,
         repeated: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict[str, str], bytes, float]:
    """One request on its own connection (``repeated``: more header lines): status, headers, body, milliseconds."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        if repeated:  # http.client's request() takes each name once
            conn.putrequest(method, path)
            for name, value in [*headers.items(), *repeated, ("Content-Length", str(len(body)))]:
                conn.putheader(name, value)
            conn.endheaders(body or None)
        else:
            conn.request(method, path, body=body or None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data, (time.perf_counter() - start) * 1000
    finally:
        conn.close()


def judge(path: str, status: int, headers: dict[str, str], body: bytes, method: str = "GET") -> str | None:
    """None when the answer is of a form its client can read; else what is wrong with it."""
    ctype = headers.get("content-type", "").split(";")[0]
    if method == "HEAD" and not body:
        return None  # a HEAD answer has the headers of a GET and no body
    if ctype == "application/json":
        try:
            json.loads(body)
            return None
        except ValueError:
            return f"{status} {path}: body is not JSON"
    route = path.split("?")[0]
    text = ctype == "text/plain" and (route in TEXT_ROUTES or "output=base64" in path)  # base64 comes as text
    if status == 200 and (ctype in IMAGE_TYPES or text):
        return None
    return f"{status} {path}: {ctype or 'no content type'}"


def send_all(port: int, tally: Tally, phase: str, reqs: list[hostile_inputs.Request]) -> None:
    """Every request of ``reqs``, 4 at a time, each answer counted under ``phase``."""

    def one(r: hostile_inputs.Request) -> None:
        try:
            status, headers, body, ms = send(port, r.method, r.path, r.body, r.headers, repeated=r.repeated)
        except (TimeoutError, ConnectionError, http.client.RemoteDisconnected) as exc:
            tally.reset(phase)
            tally.not_json.append(f"{r.kind} {r.path[:80]}: {type(exc).__name__}")
            return
        tally.add(phase, status, ms, judge(r.path, status, headers, body, r.method))
        if status == 503 and b'"busy"' in body:
            tally.add_busy()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, reqs))


def phase_inputs(port: int, tally: Tally, count: int, seed: int) -> float:
    photos = hostile_inputs.photos_from(ROOT / "tests" / "data", max_side=320)
    reqs = list(hostile_inputs.requests(seed, count, ROUTES, photos))
    start = time.monotonic()
    send_all(port, tally, "inputs", reqs)
    return time.monotonic() - start


def phase_faces(port: int, tally: Tally, count: int, seed: int) -> None:
    """``count`` hostile requests over the face routes, then each complexity input sent to each of them."""
    photos = hostile_inputs.photos_from(ROOT / "tests" / "data", max_side=320)
    reqs = list(hostile_inputs.requests(seed, count, FACE_ROUTES, photos))
    reqs += [replace(r, path=r.path.replace("/detect", route, 1))
             for r in hostile_inputs.complexity_requests() for route in FACE_ROUTES if r.path.startswith("/detect")]
    send_all(port, tally, "faces", reqs)


def phase_complexity(port: int, tally: Tally) -> dict[str, float]:
    """Each algorithmic-complexity input at the size that once cost seconds to minutes: its 4xx and its time."""
    slowest, wrong = 0.0, 0
    for r in hostile_inputs.complexity_requests():
        try:
            status, headers, body, ms = send(port, r.method, r.path, r.body, r.headers, repeated=r.repeated)
        except (TimeoutError, ConnectionError, http.client.RemoteDisconnected) as exc:
            tally.reset("complexity")
            tally.not_json.append(f"{r.kind}: {type(exc).__name__}")
            wrong += 1
            continue
        tally.add("complexity", status, ms, judge(r.path, status, headers, body, r.method))
        slowest = max(slowest, ms / 1000)
        wrong += not 400 <= status < 500
    return {"complexity_max_s": slowest, "complexity_not_4xx": wrong}


def phase_crowd(port: int, tally: Tally, clients: int, seconds: float) -> dict[str, float]:
    body, ctype = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
    ends = time.monotonic() + seconds
    health: list[float] = []
    detect_ms: list[float] = []

    def client() -> None:
        while time.monotonic() < ends:
            try:
                status, headers, data, ms = send(port, "POST", "/detect", body, {"Content-Type": ctype})
            except (TimeoutError, ConnectionError, http.client.RemoteDisconnected):
                tally.reset("crowd")
                continue
            tally.add("crowd", status, ms, judge("/detect", status, headers, data))
            if status == 503:
                tally.add_busy()
            if status == 200:
                detect_ms.append(ms)
            elif status == 503:
                time.sleep(float(headers.get("retry-after", "1")))  # as a polite client would

    def prober() -> None:
        while time.monotonic() < ends:
            try:
                status, headers, data, ms = send(port, "GET", "/healthz", b"", {}, timeout=30)
                tally.add("healthz", status, ms, judge("/healthz", status, headers, data))
                health.append(ms)
            except (TimeoutError, ConnectionError, http.client.RemoteDisconnected):
                tally.reset("healthz")
            time.sleep(0.2)

    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=prober)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q = statistics.quantiles(health, n=20) if len(health) >= 2 else [float("nan")] * 19
    return {"healthz_n": len(health), "healthz_p50": statistics.median(health) if health else float("nan"),
            "healthz_p95": q[18], "healthz_max": max(health, default=float("nan")),
            "detect_per_s": len(detect_ms) / seconds}


def drip_body(port: int, rate: float, limit: float) -> tuple[int, float, str]:
    """A multipart POST to /detect whose body comes at ``rate`` bytes a second: status, seconds, body."""
    start = time.monotonic()
    total = 200_000
    with socket.create_connection((HOST, port), timeout=limit) as s:
        s.sendall(f"POST /detect HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: multipart/form-data; boundary=x"
                  f"\r\nContent-Length: {total}\r\n\r\n--x\r\nContent-Disposition: form-data; name=\"image\"; "
                  "filename=\"a.jpg\"\r\n\r\n".encode())
        s.setblocking(False)
        answer = b""
        while time.monotonic() - start < limit:
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            except BlockingIOError:
                pass
            if b"\r\n\r\n" in answer and (answer.rstrip().endswith(b"}") or b"</html>" in answer):
                break
            try:
                s.send(b"\xff" * max(1, int(rate / 10)))
            except OSError:
                pass
            time.sleep(0.1)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else -1
    return status, time.monotonic() - start, answer.decode("latin-1").split("\r\n\r\n", 1)[-1]


def phase_slow(port: int, tally: Tally, deadline: float) -> dict[str, float]:
    group, ctype = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(drip_body, port, 30.0, deadline + 30) for _ in range(4)]
        time.sleep(1.0)
        other = [send(port, "GET", "/healthz", b"", {}), send(port, "POST", "/detect", group, {"Content-Type": ctype})]
        held = []
        for f in slow:
            status, seconds, body = f.result()
            held.append(seconds)
            ok = status != -1 and body.lstrip().startswith("{")
            tally.add("slow uploads", status, seconds * 1000, None if ok else f"{status} slow upload: {body[:60]!r}")
    for status, headers, data, ms in other:
        tally.add("beside slow uploads", status, ms, judge("/detect", status, headers, data))
    return {"slow_held_max_s": max(held), "beside_ok": float(all(o[0] == 200 for o in other))}


class _Origin(BaseHTTPRequestHandler):
    """The one origin the server may fetch from: it drips, or sends bodies that decompress to gigabytes."""

    photo = bomb = twice = b""  # set by phase_origin

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/photo.jpg":
            reply(self, 200, {"Content-Type": "image/jpeg"}, self.photo)
        elif self.path == "/redirect-bomb":  # a redirect's body is not for reading
            reply(self, 302, {"Location": "/photo.jpg", "Content-Encoding": "gzip"}, self.bomb)
        elif self.path == "/twice.jpg":
            reply(self, 200, {"Content-Type": "image/jpeg", "Content-Encoding": "gzip, gzip"}, self.twice)
        else:
            self._drip()

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            for _ in range(120):  # bounded: two minutes at most
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def phase_origin(port: int, tally: Tally) -> dict[str, float]:
    """Two ``?url=`` fetches from a dripping origin at once, then a redirect and an answer that are gzip bombs."""
    _Origin.photo = (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
    _Origin.bomb = hostile_inputs.gzip_of_zeros(1024)  # 1 GiB of zeros in 1 MB
    _Origin.twice = hostile_inputs.gzip_of_zeros(1024, layers=2)  # the same in a few KB
    origin = ThreadingHTTPServer((ORIGIN_HOST, 0), _Origin)
    origin.daemon_threads = True
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    base = f"http://{ORIGIN_HOST}:{origin.server_address[1]}"
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: send(port, "GET", f"/detect?url={base}/slow.jpg", b"", {}), range(2)))
        bombs = [send(port, "GET", f"/detect?url={base}{path}", b"", {}) for path in ("/redirect-bomb", "/twice.jpg")]
    finally:
        origin.shutdown()
        origin.server_close()
    for status, headers, data, ms in results:
        tally.add("dripping origin", status, ms, judge("/detect", status, headers, data))
    for status, headers, data, ms in bombs:
        tally.add("gzip-bomb origin", status, ms, judge("/detect", status, headers, data))
    return {"drip_held_max_s": max(r[3] for r in results) / 1000}


def phase_limits(port: int, tally: Tally) -> list[str]:
    """gunicorn answers these itself, before the app: counted apart (their bodies are gunicorn's)."""
    seen = []
    for name, path, headers in (("request line over 4094 bytes", "/detect?x=" + "a" * 9000, {}),
                                ("header over 8190 bytes", "/healthz", {"X-Big": "b" * 9000})):
        try:
            status, h, data, ms = send(port, "GET", path, b"", headers)
            seen.append(f"{name}: {status} {h.get('content-type', '')}")
            tally.add("gunicorn limits", status, ms)
        except (ConnectionError, http.client.RemoteDisconnected):
            seen.append(f"{name}: connection closed")
    return seen


def warm_up(port: int) -> None:
    """Every route once per worker with a real photo: RSS at the start is that of a worker in service."""
    body, ctype = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
    for _ in range(4):
        for route in ROUTES:
            send(port, "POST", route, body, {"Content-Type": ctype})


class Sampler(threading.Thread):
    """Worker RSS every 0.2 s (sum over workers and the largest one), and the whole server's PSS."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.worker_max = 0.0
        self.server_pss_max = 0.0

    def sample(self) -> tuple[float, float]:
        workers = [rss_mb(pid) for pid in self.server.worker_pids()]
        pids = [self.server.proc.pid, *self.server.worker_pids()]  # type: ignore[union-attr]
        return max(workers, default=0.0), sum(pss_mb(pid) for pid in pids)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                worker, pss = self.sample()
            except (OSError, ValueError):
                continue  # a worker being replaced
            self.worker_max = max(self.worker_max, worker)
            self.server_pss_max = max(self.server_pss_max, pss)


def restarts(log: str, workers: int) -> int:
    """Workers booted beyond the first ones, or killed."""
    return max(0, log.count("Booting worker") - workers) + log.count("WORKER TIMEOUT") + log.count("SIGKILL")


@dataclass
class Campaign:
    """What one campaign saw: answers by phase, the crowd's and the slow clients' figures, memory, restarts."""

    args: argparse.Namespace
    deadline: float
    tally: Tally
    took: float
    crowd: dict[str, float]
    slow: dict[str, float]
    drip: dict[str, float]
    limits: list[str]
    restarted: int
    rss: tuple[float, float, float, float]  # worker start, worker peak, worker end, whole server's PSS peak

    def goals(self) -> tuple[list[tuple[str, str, bool]], bool]:
        return goals(self.tally, self.crowd, self.slow, self.drip, self.restarted, self.rss[1],
                     self.rss[2] - self.rss[0], self.rss[3], self.deadline, self.args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="1,000 requests, 20 clients for 10 s, 3 s deadlines")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--face-model", type=Path, default=FACE_MODEL if FACE_MODEL.is_file() else None,
                    help="dlib's face recognition model: with it, the face routes get a phase of their own "
                         "(default: the shared folder's, when it is there)")
    args = ap.parse_args(argv)
    if args.quick:
        args.requests, args.clients, args.seconds = 1000, 20, 10.0
    return args


def run(args: argparse.Namespace) -> Campaign:
    """The campaign against a fresh two-worker gunicorn on loopback."""
    deadline = 3.0 if args.quick else 20.0
    env = {"MYSITE_URL_FETCH": "on", "MYSITE_URL_ALLOW_NETWORKS": f"{ORIGIN_HOST}/32",
           "MYSITE_UPLOAD_DEADLINE": str(deadline), "MYSITE_URL_DEADLINE": str(deadline)}
    tally = Tally()
    store = tempfile.TemporaryDirectory(prefix="mysite-hostile-faces-")
    if args.face_model:  # a store of its own, small enough that registrations also meet a full one (507)
        env |= {"MYSITE_FACEID_MODEL": str(args.face_model), "MYSITE_FACES_MAX": "20",
                "MYSITE_FACES_DB": f"sqlite:///{store.name}/faces.sqlite3"}
    with store, Server(workers=2, cv_threads=-1, extra_env=env) as server:
        warm_up(server.port)
        sampler = Sampler(server)
        rss_start = sampler.sample()[0]
        sampler.start()
        took = phase_inputs(server.port, tally, args.requests, args.seed)
        complexity = phase_complexity(server.port, tally)
        if args.face_model:
            phase_faces(server.port, tally, args.requests // 10, args.seed)
        crowd = phase_crowd(server.port, tally, args.clients, args.seconds)
        slow = phase_slow(server.port, tally, deadline)
        drip = phase_origin(server.port, tally)
        limits = phase_limits(server.port, tally)
        time.sleep(1.0)
        sampler.stop.set()
        sampler.join()
        rss_end = sampler.sample()[0]
        log = server.log()
    return Campaign(args, deadline, tally, took, {**crowd, **complexity}, slow, drip, limits, restarts(log, 2),
                    (rss_start, sampler.worker_max, rss_end, sampler.server_pss_max))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"# python -m bench.hostile{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    c = run(args)
    report(c.tally, c.took, c.crowd, c.slow, c.drip, c.limits, c.restarted, c.rss, c.deadline, c.args)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0 if c.goals()[1] else 1


def goals(tally: Tally, crowd: dict[str, float], slow: dict[str, float], drip: dict[str, float], restarted: int,
          peak: float, kept: float, pss: float, deadline: float, args: argparse.Namespace
          ) -> tuple[list[tuple[str, str, bool]], bool]:
    app_5xx = sum(n for phase, c in tally.by_phase.items() if phase != "gunicorn limits"
                  for s, n in c.items() if s >= 500 and s != 503)
    total = sum(tally.statuses.values())
    rows = [
        (f"0 x 5xx (503 busy aside) and 0 worker kills over >= {args.requests:,} hostile requests",
         f"{app_5xx} x 5xx, {restarted} restarts, {total:,} answers", app_5xx == 0 and restarted == 0),
        ("every answer JSON (or the image asked for)", f"{len(tally.not_json)} not", not tally.not_json),
        ("no connection reset", f"{tally.resets}", tally.resets == 0),
        ("peak worker RSS <= 300 MB", f"{peak:.0f} MB", peak <= 300),
        ("<= 50 MB kept after the campaign (per request: python -m bench.memory)", f"{kept:+.0f} MB", kept <= 50),
        ("whole server (master + workers, PSS) <= 512 MB", f"{pss:.0f} MB", pss <= 512),
        (f"a slow upload holds a thread <= the deadline ({deadline:g} s) + 2 s",
         f"{slow['slow_held_max_s']:.1f} s", slow["slow_held_max_s"] <= deadline + 2),
        (f"a dripping ?url= origin holds a thread <= the deadline ({deadline:g} s) + 2 s",
         f"{drip['drip_held_max_s']:.1f} s", drip["drip_held_max_s"] <= deadline + 2),
        (f"/healthz p95 <= 1 s under {args.clients} /detect clients", f"{crowd['healthz_p95']:.0f} ms",
         crowd["healthz_p95"] <= 1000),
        ("each algorithmic-complexity input a 4xx within 2 s",
         f"{crowd['complexity_not_4xx']:.0f} not 4xx, slowest {crowd['complexity_max_s']:.2f} s",
         crowd["complexity_not_4xx"] == 0 and crowd["complexity_max_s"] <= 2),
    ]
    return rows, all(ok for _, _, ok in rows)


def report(tally: Tally, took: float, crowd: dict[str, float], slow: dict[str, float], drip: dict[str, float],
           limits: list[str], restarted: int, rss: tuple[float, float, float, float], deadline: float,
           args: argparse.Namespace) -> None:
    print(f"\n{args.requests:,} hostile inputs in {took:.0f} s; crowd of {args.clients} for {args.seconds:g} s: "
          f"{crowd['detect_per_s']:.1f} detections/s answered")
    print("\n| phase | answers by status (-1: connection reset) |\n|---|---|")
    for phase, counts in tally.by_phase.items():
        print(f"| {phase} | {', '.join(f'{s}: {n:,}' for s, n in sorted(counts.items()))} |")
    print(f"\n503 'busy' (the detection queue full; clients retry after Retry-After): {tally.busy:,}")
    print(f"\n/healthz during the crowd: {crowd['healthz_n']:.0f} probes, p50 {crowd['healthz_p50']:.0f} ms, "
          f"p95 {crowd['healthz_p95']:.0f} ms, max {crowd['healthz_max']:.0f} ms")
    print(f"slowest answer {tally.max_ms / 1000:.1f} s; worker RSS start {rss[0]:.0f} MB, peak {rss[1]:.0f} MB, "
          f"end {rss[2]:.0f} MB; whole server PSS peak {rss[3]:.0f} MB; worker restarts {restarted}")
    print("gunicorn's own answers (before the app): " + "; ".join(limits))
    for problem in tally.not_json[:10]:
        print(f"  not JSON: {problem}")
    rows, _ = goals(tally, crowd, slow, drip, restarted, rss[1], rss[2] - rss[0], rss[3], deadline, args)
    print("\n| goal | measured | met? |\n|---|---|---|")
    for name, measured, ok in rows:
        print(f"| {name} | {measured} | {'met' if ok else 'FAIL'} |")


if __name__ == "__main__":
    raise SystemExit(main())
