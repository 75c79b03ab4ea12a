"""``python -m bench.deploy``: scale-out and failover rehearsed on loopback, and the cold start.

Two instances of the Procfile's gunicorn behind nginx (Debian's package, with the app's own
nginx settings: ``python -m mysite.server.proxy_conf --standalone``) standing in for Elastic
Beanstalk's Application Load Balancer, and shaped like it: a request an instance drops is never
sent again to the other (``proxy_next_upstream off``; ``--retry`` restores nginx's retry), and
targets leave and join by the health check ``.ebextensions`` configures (path, interval,
timeout, thresholds: ``testkit/ebconfig.py``), run here by a thread that rewrites nginx's
upstreams. Under a steady load of clients (20 by default) it (a) kills one instance's process
group with SIGKILL and starts it again 0.1 s later, as systemd restarts the Procfile's unit;
(b) kills one and leaves it dead until the health check takes it out, then starts it again;
(c) deploys both one after the other as a rolling deploy does (deregistered and drained, within
the deregistration delay; SIGTERM to every process of the unit, as systemd stops it; started,
registered, in once the check passes); (d) sends SIGHUP to each gunicorn master. The balancer
keeps idle connections to an instance as long as the ALB (``IdleTimeout``), each gunicorn as long
as the instance's nginx would (``00_application.conf``). Each scenario counts answers that are not 200: *lost* (no answer, or nginx's
502/504: the balancer's errors) and *busy* (the app's own 503, its queue full), and how long the
lost ones went on. It checks nginx's own answers are JSON (413 over the body limit; 502 with
every instance down), and measures the cold start: process start to the first 200 on
``/healthz``, with every shipped model, beside the machine's load and the CPU time it took.

Only 127.0.0.1 is contacted; every wait has a deadline; every process is stopped by the id this
module started. ``--quick`` (3 clients, health-check times x 0.2, about 60 s) is what the test
runs; the full run takes a few minutes. ``--only c --rounds 6`` repeats one scenario; ``--trace
DIR`` keeps nginx's access log (the instance, connect and header times of every request), every
nginx and gunicorn log, the balancer's events and each failure with its time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.server import HOST, ROOT, _hwm, free_port, multipart, procfile_command
from mysite import settings as settings_mod
from mysite.server import proxy_conf, timeouts
from testkit.ebconfig import PROCESS, HealthCheck, eb_options
from testkit.net import exchange

PHOTO = ROOT / "tests" / "data" / "group_17_faces.jpg"
NGINX_ERRORS: list[str] = []  # the last lines of the last nginx's error log, for a failure's report
TRACE_DIR: Path | None = None  # when set, every nginx's and gunicorn's logs are copied here (--trace)
# One line per request through the stand-in: when it ended, its answer, the instance and how nginx
# reached it (a connect time of 0.000 on a request that failed at once: a kept-alive connection).
ACCESS_FORMAT = ("log_format trace '$msec $status $request_method $uri up=$upstream_addr upstatus=$upstream_status "
                 "connect=$upstream_connect_time header=$upstream_header_time total=$request_time "
                 "pid=$pid conn=$connection';")
CUT = "cut short"  # an answer whose head came and whose body did not: its instance was killed while sending it
CLIENT_TIMEOUT = 60.0  # a client waiting longer counts the request as "slow", not lost
SUPERVISOR_DELAY = 0.1  # systemd's RestartSec default: the Procfile's unit is started again this much later
APPLICATION_CONF = ROOT / ".platform" / "nginx" / "conf.d" / "elasticbeanstalk" / "00_application.conf"


def balancer_idle_s() -> int:
    """How long the ALB keeps an idle connection to an instance for reuse: its ``IdleTimeout``."""
    return int(eb_options()["aws:elbv2:loadbalancer"]["IdleTimeout"])


def instance_keepalive_s() -> int:
    """How long an instance keeps an idle connection from the ALB open: its nginx's ``keepalive_timeout``."""
    found = re.search(r"^\s*keepalive_timeout\s+(\d+)s?;", APPLICATION_CONF.read_text(), re.M)
    assert found, f"{APPLICATION_CONF} sets no keepalive_timeout"
    return int(found.group(1))


def deregistration_delay_s() -> float:
    """The longest the ALB waits for a deregistered target's requests before it stops it anyway."""
    return float(eb_options()[PROCESS]["DeregistrationDelay"])


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, bytes, dict[str, str]]:
    """One request to the loopback port: status, body, headers (lower-case names)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def descendants(pid: int) -> list[int]:
    """Children, their children and so on (the process pool's CV processes are the dispatcher's)."""
    out, todo = [], [pid]
    while todo and len(out) < 1000:
        found = children(todo.pop())
        out += found
        todo += found
    return out


@dataclass
class Instance:
    """One Procfile gunicorn on a loopback port; started, stopped and signalled by its own pid."""

    name: str
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log: Path | None = None
    held: socket.socket | None = None  # the listening socket, when the supervisor holds it across restarts

    def hold_socket(self) -> None:
        """Listen on the port here, as a systemd socket unit does, and hand the socket to every start
        (``LISTEN_FDS``): while gunicorn restarts, connections wait in its backlog instead of being refused."""
        assert self.proc is None or self.proc.poll() is not None, "stop the instance first"
        self.held = socket.socket()
        self.held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.held.bind((HOST, self.port))
        self.held.listen(2048)

    def start(self, deadline_s: float = 60.0) -> tuple[float, float]:
        """Start and wait for the first 200 on /healthz; (milliseconds, CPU seconds of master + workers)."""
        # gunicorn stands for the whole instance here, nginx included: it keeps the balancer's idle
        # connections as long as the instance's nginx does on Elastic Beanstalk.
        env = {**os.environ, "GUNICORN_CMD_ARGS": f"--bind {HOST}:{self.port} --keep-alive {instance_keepalive_s()}",
               "MYSITE_URL_FETCH": "off",
               "MYSITE_LOG_LEVEL": "WARNING", **self.env}
        command, fds = procfile_command(), ()
        if self.held is not None:  # systemd's protocol: the socket as fd 3, LISTEN_PID the server's own pid
            fds = (self.held.fileno(),)
            command = ["/bin/sh", "-c", f'export LISTEN_PID=$$; exec "$@" 3<&{fds[0]}', "sh", *command]
            env["LISTEN_FDS"] = "1"
        self._keep()
        self.log = Path(tempfile.mkstemp(prefix=f"mysite-{self.name}-", suffix=".log")[1])
        started = time.perf_counter()
        with self.log.open("ab") as out:
            # Its own process group: a crash is simulated on the whole group, as systemd, which runs the
            # Procfile on Elastic Beanstalk, kills what is left of a unit whose main process died.
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out,
                                         start_new_session=True, pass_fds=fds)
        while time.perf_counter() - started < deadline_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                if http_request(self.port, "GET", "/healthz", timeout=5)[0] == 200:
                    ms = (time.perf_counter() - started) * 1000
                    pids = [self.proc.pid, *children(self.proc.pid)]
                    return ms, sum(cpu_seconds(p) for p in pids if Path(f"/proc/{p}").exists())
            except OSError:
                pass
            time.sleep(0.002)
        raise TimeoutError(f"{self.name}: no 200 on /healthz within {deadline_s} s: {self.tail()}")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0, group: bool = False) -> None:
        """``sig`` to the master, or with ``group`` (and always for SIGKILL) to every process at once,
        as systemd stops the Procfile's unit (``KillMode=control-group``, its default)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if group or sig == signal.SIGKILL:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log and self.log.exists() else ""

    def _keep(self) -> None:
        """The last run's log, copied to ``TRACE_DIR`` (when tracing) before it is replaced or removed."""
        if TRACE_DIR is not None and self.log is not None and self.log.exists():
            shutil.copy(self.log, TRACE_DIR / f"gunicorn-{self.name}-{self.port}-{self.log.stem}.log")

    def close(self) -> None:
        self.stop()
        if self.held is not None:
            self.held.close()
        self._keep()
        if self.log is not None:
            self.log.unlink(missing_ok=True)


@dataclass
class Balancer:
    """The running nginx as an ALB: targets registered or not, healthy or not by its own checks.

    A target gets requests while registered and healthy. The check (``HealthCheck``) runs in a
    thread: ``unhealthy`` failures in a row take a target out, ``healthy`` passes bring it in; a
    target registered anew starts out (as the ALB's "initial" state). Every change rewrites
    nginx's upstreams and reloads it gracefully (old workers finish their requests).
    """

    port: int
    proc: subprocess.Popen
    write_conf: Callable[[set[int]], None]
    targets: list[int]
    check: HealthCheck
    registered: set[int] = field(default_factory=set)
    healthy: set[int] = field(default_factory=set)
    events: list[tuple[float, str, int]] = field(default_factory=list)  # (time.time(), "in"/"out"/..., port)
    check_ms: list[float] = field(default_factory=list)  # every passing check's time to answer

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._streak: dict[int, int] = {}  # > 0: passes in a row, < 0: failures in a row
        self.registered = set(self.targets)
        self.healthy = set(self.targets)
        self._thread = threading.Thread(target=self._checks, daemon=True)
        self._thread.start()

    def _apply(self) -> None:
        self.write_conf({p for p in self.targets if p not in self.registered or p not in self.healthy})
        self.proc.send_signal(signal.SIGHUP)  # nginx re-reads its conf; old workers finish their requests

    def _checks(self) -> None:
        while not self._stop.wait(self.check.interval):
            for port in list(self.registered):
                t = time.perf_counter()
                try:
                    ok = http_request(port, "GET", self.check.path, timeout=self.check.timeout)[0] == 200
                except OSError:
                    ok = False
                if ok:
                    self.check_ms.append((time.perf_counter() - t) * 1000)
                self._seen(port, ok)

    def _seen(self, port: int, ok: bool) -> None:
        with self._lock:
            if port not in self.registered:
                return
            streak = self._streak.get(port, 0)
            streak = max(streak, 0) + 1 if ok else min(streak, 0) - 1
            self._streak[port] = streak
            if ok and port not in self.healthy and streak >= self.check.healthy:
                self.healthy.add(port)
                self.events.append((time.time(), "in", port))
                self._apply()
            elif not ok and port in self.healthy and -streak >= self.check.unhealthy:
                self.healthy.discard(port)
                self.events.append((time.time(), "out", port))
                self._apply()

    def deregister(self, port: int, delay_s: float) -> float:
        """No new request goes to ``port``; returns once those in flight are answered (the ALB's
        draining, at most ``delay_s``, its deregistration delay): the seconds it took.

        nginx's workers from before the reload are the only ones that may still talk to ``port``;
        each exits once its requests are answered, closing its idle connections. None left: the
        target has no request in flight and no connection open, and the ALB completes at once."""
        started = time.monotonic()
        with self._lock:
            before = set(children(self.proc.pid))
            self.registered.discard(port)
            self.healthy.discard(port)
            self._streak.pop(port, None)
            self.events.append((time.time(), "deregistered", port))
            self._apply()
        while time.monotonic() - started < delay_s:
            if not before & set(children(self.proc.pid)):
                break
            time.sleep(0.02)
        self.events.append((time.time(), "drained", port))
        return time.monotonic() - started

    def register(self, port: int) -> None:
        """Checked from now on; requests once ``healthy`` checks passed."""
        with self._lock:
            self.registered.add(port)
            self._streak.pop(port, None)
            self.events.append((time.time(), "registered", port))

    def wait_in(self, port: int, deadline_s: float = 120.0) -> float:
        """Seconds until ``port`` is healthy and gets requests."""
        t = time.monotonic()
        while port not in self.healthy:
            if time.monotonic() - t > deadline_s:
                raise TimeoutError(f"{port} did not pass {self.check.healthy} health checks in {deadline_s} s")
            time.sleep(0.02)
        return time.monotonic() - t

    def wait_out(self, port: int, deadline_s: float = 120.0) -> float:
        """Seconds until the health check took ``port`` out."""
        t = time.monotonic()
        while port in self.healthy:
            if time.monotonic() - t > deadline_s:
                raise TimeoutError(f"{port} was not taken out within {deadline_s} s")
            time.sleep(0.02)
        return time.monotonic() - t

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@contextmanager
def nginx(upstreams: list[int], timeout: int, check: HealthCheck | None = None,
          retry: bool = False) -> Iterator[Balancer]:
    """Debian's nginx on a free loopback port in front of ``upstreams``, ALB-shaped unless ``retry``."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        raise FileNotFoundError("nginx is not installed (apt-get install -y nginx)")
    prefix = Path(tempfile.mkdtemp(prefix="mysite-nginx-"))
    prefix.chmod(0o755)  # nginx's workers run as nobody when started by root
    port = free_port()
    settings = settings_mod.load(environ={"MYSITE_ENV_FILE": "/nonexistent/.env"})

    def write_conf(down: set[int]) -> None:
        servers = [f"{HOST}:{p}" + (" down" if p in down else "") for p in upstreams]
        conf = proxy_conf.standalone(settings, timeout, prefix, f"{HOST}:{port}", servers, retry_other=retry, workers=2,
                                     upstream_idle_s=balancer_idle_s())
        if TRACE_DIR is not None:
            conf = conf.replace("    access_log off;", f"    {ACCESS_FORMAT}\n    access_log {prefix / 'access.log'} trace;")
        (prefix / "nginx.conf").write_text(conf)

    write_conf(set())
    log = (prefix / "error.log").open("wb")  # a file, not a pipe nobody reads: nginx must never block on it
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr",
                             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=log)
    balancer = None
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(prefix / 'error.log').read_text(errors='replace')}")
            try:
                http.client.HTTPConnection(HOST, port, timeout=1).connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("nginx did not listen within 10 s") from None
                time.sleep(0.01)
        balancer = Balancer(port, proc, write_conf, upstreams, check or HealthCheck.configured())
        yield balancer
    finally:
        if balancer is not None:
            balancer.close()
        NGINX_ERRORS[:] = (prefix / "error.log").read_text(errors="replace").splitlines()[-20:]
        proc.send_signal(signal.SIGQUIT)  # graceful
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        if TRACE_DIR is not None:
            for name in ("error.log", "access.log"):
                if (prefix / name).exists():
                    shutil.copy(prefix / name, TRACE_DIR / f"nginx-{port}-{name}")
        shutil.rmtree(prefix, ignore_errors=True)


@dataclass
class Load:
    """Clients sending /detect (the group photo) and /healthz through nginx until stopped."""

    port: int
    clients: int
    max_requests: int = 100_000
    min_requests: int = 12  # a scenario lasts until this many answers (at most 60 s more)
    results: list[tuple[float, int, float, str]] = field(default_factory=list)  # (end, status or -1, ms, kind)
    failures: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, what) of every failure

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._body, ctype = multipart(PHOTO.read_bytes())
        self._headers = {"Content-Type": ctype}
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]

    @staticmethod
    def kind(status: int, body: bytes) -> str:
        """``ok``; ``busy``: the app's own 503 (its queue is full); ``lost``: no answer or the balancer's error."""
        if status == 200:
            return "ok"
        if status == 503:
            try:
                if json.loads(body).get("reason") == "busy":
                    return "busy"
            except (ValueError, AttributeError):
                pass
        return "lost"

    def _client(self, i: int) -> None:
        n = 0
        while not self._stop.is_set() and len(self.results) < self.max_requests:
            detect = (n + i) % 4 != 3  # three detections to one health check
            n += 1
            t = time.perf_counter()
            try:
                if detect:
                    status, body, _ = http_request(self.port, "POST", "/detect", self._body, self._headers,
                                                   timeout=CLIENT_TIMEOUT)
                else:
                    status, body, _ = http_request(self.port, "GET", "/healthz", timeout=CLIENT_TIMEOUT)
                kind = self.kind(status, body)
                problem = None if kind == "ok" else f"{status} at {time.time():.3f}: {body[:200]!r}"
            except TimeoutError as exc:  # the instance has it, but the machine is too slow to answer in time
                status, kind, problem = -1, "slow", f"no answer within {CLIENT_TIMEOUT:g} s at {time.time():.3f}: {exc!r}"
            except http.client.IncompleteRead as exc:  # a crash between the answer's head and its end
                status, kind, problem = -1, "lost", f"{CUT} at {time.time():.3f}: {exc!r}"
            except (OSError, http.client.HTTPException) as exc:
                status, kind, problem = -1, "lost", f"no answer at {time.time():.3f}: {exc!r}"
            ms = (time.perf_counter() - t) * 1000
            with self._lock:
                self.results.append((time.monotonic(), status, ms, kind))
                if problem:
                    self.failures.append(problem)
                    self.problems.append((kind, problem))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 60
        while len(self.results) < self.min_requests and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def summary(self, since: float | None = None) -> dict[str, float | int | str]:
        """Counts and latencies; ``lost_for_s``: first to last lost answer; ``lost_until_s``: ``since`` to the last."""
        ms = sorted(r[2] for r in self.results)
        lost = [r[0] for r in self.results if r[3] == "lost"]
        return {
            "requests": len(ms),
            "failed": len(self.failures),
            "lost": len(lost),
            "busy": sum(r[3] == "busy" for r in self.results),
            "slow": sum(r[3] == "slow" for r in self.results),
            "lost_for_s": round(max(lost) - min(lost), 2) if lost else 0.0,
            "lost_until_s": round(max(lost) - since, 2) if lost and since is not None else 0.0,
            "p50_ms": round(statistics.median(ms)) if ms else 0,
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))]) if ms else 0,
            "max_ms": round(ms[-1]) if ms else 0,
            "first_failure": self.failures[0] if self.failures else "",
            "cut": sum(p.startswith(CUT) for k, p in self.problems if k == "lost"),
            "first_uncut": next((p for k, p in self.problems if k == "lost" and not p.startswith(CUT)), ""),
            **{f"first_{kind}": next((p for k, p in self.problems if k == kind), "") for kind in ("lost", "busy", "slow")},
        }


@dataclass
class Rehearsal:
    """The two instances, the balancer, and the scenarios."""

    quick: bool
    clients: int
    instances: list[Instance] = field(default_factory=list)
    balancer: Balancer | None = None
    restarts_ms: list[float] = field(default_factory=list)
    drain_s: list[float] = field(default_factory=list)  # each deregistration's draining
    marks: dict[str, float] = field(default_factory=dict)  # what happened when, for the summary

    @property
    def pause(self) -> float:
        return 1.0 if self.quick else 3.0

    @property
    def lb(self) -> Balancer:
        assert self.balancer is not None
        return self.balancer

    def deploy(self, inst: Instance) -> None:
        """One batch of a rolling deploy, as Elastic Beanstalk does it: deregistered and drained (its
        requests in flight answered, within the deregistration delay), stopped as systemd stops the
        unit (SIGTERM to every process), started, registered, in once the check passes."""
        self.drain_s.append(self.lb.deregister(inst.port, deregistration_delay_s()))
        self.lb.events.append((time.time(), "SIGTERM", inst.port))
        inst.stop(signal.SIGTERM, group=True)
        self.lb.events.append((time.time(), "exited", inst.port))
        self.restarts_ms.append(inst.start()[0])
        self.lb.register(inst.port)
        self.lb.wait_in(inst.port)

    def scenario_kill_restart(self) -> None:
        a = self.instances[0]
        time.sleep(self.pause)
        self.marks["event"] = time.monotonic()
        a.stop(signal.SIGKILL)  # a crash: no goodbye, the requests in flight are dropped
        time.sleep(SUPERVISOR_DELAY)
        self.restarts_ms.append(a.start()[0])
        self.marks["serving_s"] = time.monotonic() - self.marks["event"]
        self.lb.wait_in(a.port)  # in case the check took it out meanwhile
        time.sleep(self.pause)

    def hold_socket(self, inst: Instance) -> None:
        """Out of the balancer, stopped, started again on a socket held across restarts, back in."""
        self.lb.deregister(inst.port, deregistration_delay_s())
        inst.stop(signal.SIGTERM, group=True)
        inst.hold_socket()
        inst.start()
        self.lb.register(inst.port)
        self.lb.wait_in(inst.port)

    def scenario_dead(self) -> None:
        a = self.instances[0]
        time.sleep(self.pause)
        self.marks["event"] = time.monotonic()
        a.stop(signal.SIGKILL)
        self.marks["out_s"] = self.lb.wait_out(a.port)
        time.sleep(self.pause)  # served by the other alone
        self.restarts_ms.append(a.start()[0])
        self.marks["back_in_s"] = self.lb.wait_in(a.port)
        time.sleep(self.pause)

    def scenario_rolling(self) -> None:
        time.sleep(self.pause)
        for inst in self.instances:  # one batch at a time
            self.deploy(inst)
            time.sleep(self.pause)

    def scenario_hup(self) -> None:
        for _ in range(1 if self.quick else 3):
            for inst in self.instances:
                time.sleep(self.pause)
                inst.send(signal.SIGHUP)
        time.sleep(self.pause * 2)

    def run(self, name: str, action: Callable[[], None]) -> dict[str, float | int | str]:
        self.marks = {}
        with Load(self.lb.port, self.clients) as load:
            action()
        marks = {k: round(v, 2) for k, v in self.marks.items() if k != "event"}
        if TRACE_DIR is not None:
            with (TRACE_DIR / "failures.txt").open("a") as out:
                out.write(f"## {name}\n" + "".join(f"{kind}: {what}\n" for kind, what in load.problems))
        return {"scenario": name, **load.summary(self.marks.get("event")), **marks}


def announced(port: int, length: int) -> tuple[int, bytes, dict[str, str]]:
    """The answer to a POST that announces ``length`` bytes and sends none: servers that refuse by
    Content-Length answer at once (a client still sending would see its connection closed)."""
    raw = exchange(port, f"POST /detect HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: image/jpeg\r\n"
                         f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), body, headers


def nginx_answers(port: int, settings: settings_mod.Settings) -> dict[str, object]:
    """nginx's own 413 (a body just over the app's limit) must be the app's JSON shape."""
    try:
        status, body, headers = announced(port, settings.max_body_bytes + 1024 * 1024)
    except OSError as exc:
        return {"413": f"no answer: {exc!r}"}
    return {"413": status, "413_type": headers.get("content-type"), "413_json": _is_json(body)}


def _is_json(body: bytes) -> bool:
    try:
        return set(json.loads(body)) >= {"status", "message"}
    except ValueError:
        return False


def rehearse(quick: bool, clients: int, retry: bool = False, held_socket: bool = False, only: list[str] | None = None,
             rounds: int = 1) -> tuple[list[dict[str, float | int | str]], dict[str, object]]:
    """Every scenario once (or ``only`` these, ``rounds`` times each); the rows of the table and nginx's own answers."""
    settings = settings_mod.load(environ={"MYSITE_ENV_FILE": "/nonexistent/.env"})
    timeout = timeouts.request_timeout()
    check = HealthCheck.configured(scale=0.2 if quick else 1.0)

    rehearsal = Rehearsal(quick=quick, clients=clients)
    with ExitStack() as stack:
        for name in ("a", "b"):
            inst = Instance(name, env={"WEB_CONCURRENCY": "2", "MYSITE_CV_THREADS": "1"})
            stack.callback(inst.close)
            rehearsal.instances.append(inst)
            inst.start()
        rehearsal.balancer = stack.enter_context(nginx([i.port for i in rehearsal.instances], timeout, check, retry))
        scenarios: dict[str, tuple[str, Callable[[], None]]] = {
            "baseline": ("baseline", lambda: time.sleep(rehearsal.pause * 2)),
            "a": (f"(a) one instance killed (SIGKILL), started again {SUPERVISOR_DELAY} s later",
                  rehearsal.scenario_kill_restart),
            "b": ("(b) one instance killed and left dead until the health check takes it out", rehearsal.scenario_dead),
            "c": ("(c) rolling deploy: each instance deregistered, drained, stopped (SIGTERM), in when healthy",
                  rehearsal.scenario_rolling),
            "d": (f"(d) SIGHUP to each master, {1 if quick else 3} round(s)", rehearsal.scenario_hup),
        }
        rows = [rehearsal.run(scenarios[key][0], scenarios[key][1]) for key in only or list(scenarios)
                for _ in range(rounds if only else 1)]
        if held_socket:
            rehearsal.hold_socket(rehearsal.instances[0])
            rows.append(rehearsal.run("(e) as (a), the listening socket held by the supervisor across the restart",
                                      rehearsal.scenario_kill_restart))
        if TRACE_DIR is not None:
            (TRACE_DIR / "events.txt").write_text("".join(f"{t:.3f} {what} {port}\n" for t, what, port in rehearsal.lb.events))
        answers = nginx_answers(rehearsal.lb.port, settings)
        answers["health_check"] = {"interval_s": check.interval, "timeout_s": check.timeout,
                                   "healthy": check.healthy, "unhealthy": check.unhealthy,
                                   "passing_ms_p99": round(sorted(rehearsal.lb.check_ms)[
                                       int(0.99 * (len(rehearsal.lb.check_ms) - 1))]) if rehearsal.lb.check_ms else None,
                                   "passing_ms_max": round(max(rehearsal.lb.check_ms, default=0))}
        # What one instance holds after the load: the figure the instance type must fit.
        b = rehearsal.instances[1]
        assert b.proc is not None
        rss = [_hwm(b.proc.pid), *(_hwm(p) for p in descendants(b.proc.pid))]
        answers["instance_peak_rss_mb"] = {"master": round(rss[0]), "others": [round(x) for x in rss[1:]],
                                           "total": round(sum(rss))}
        for inst in rehearsal.instances:
            inst.stop()
            if inst.held is not None:  # a held socket would take the connection and never answer
                inst.held.close()
                inst.held = None
        status, body, headers = http_request(rehearsal.lb.port, "GET", "/healthz")
        answers.update({"all_down": status, "all_down_type": headers.get("content-type"),
                        "all_down_json": _is_json(body), "all_down_retry_after": headers.get("retry-after")})
        answers["restart_to_serving_ms"] = [round(ms) for ms in rehearsal.restarts_ms]
        answers["draining_s"] = [round(s, 2) for s in rehearsal.drain_s]
        answers["keepalive_s"] = {"balancer": balancer_idle_s(), "instance": instance_keepalive_s()}
    return rows, answers


def cold_start(runs: int) -> list[dict[str, float]]:
    """Process start to the first 200 on /healthz with the default (every shipped) model set."""
    out = []
    for i in range(runs):
        load1 = os.getloadavg()[0]
        inst = Instance(f"cold{i}")
        try:
            ms, cpu = inst.start()
        finally:
            inst.close()
        out.append({"ms": round(ms), "cpu_s": round(cpu, 2), "load1": round(load1, 2)})
        time.sleep(0.5)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.deploy", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="3 clients, shorter scenarios, health-check times x 0.2, one SIGHUP round (about 60 s)")
    ap.add_argument("--clients", type=int, default=None,
                    help="concurrent clients through nginx (default 20, with --quick 3)")
    ap.add_argument("--retry", action="store_true",
                    help="let nginx send a dropped request to the other instance (an ALB does not)")
    ap.add_argument("--held-socket", action="store_true",
                    help="add (e): (a) with the listening socket held across the restart (systemd socket activation)")
    ap.add_argument("--cold-runs", type=int, default=7, help="cold starts to measure (default 7)")
    ap.add_argument("--only", action="append", choices=["baseline", "a", "b", "c", "d"],
                    help="run only this scenario (repeatable), --rounds times")
    ap.add_argument("--rounds", type=int, default=1, help="rounds of each --only scenario (default 1)")
    ap.add_argument("--trace", type=Path, help="keep every nginx and gunicorn log here, and nginx's access log "
                    "(the instance and connection of each request), with the balancer's events")
    args = ap.parse_args(argv)
    if args.clients is None:
        args.clients = 3 if args.quick else 20
    global TRACE_DIR
    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
        TRACE_DIR = args.trace
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cold = cold_start(args.cold_runs)
    print("\n#### cold start: process start to the first 200 on /healthz (every shipped model)\n")
    print("| run | ms | CPU s (master + workers) | load (1 min) before |\n| --- | --- | --- | --- |")
    for i, c in enumerate(cold, 1):
        print(f"| {i} | {c['ms']} | {c['cpu_s']} | {c['load1']} |")
    print(f"\nmedian {statistics.median(c['ms'] for c in cold):.0f} ms")
    rows, answers = rehearse(args.quick, args.clients, args.retry, args.held_socket, args.only, max(1, args.rounds))
    shape = "nginx retrying on the other instance" if args.retry else "an ALB-shaped nginx (no retries)"
    print(f"\n#### two instances behind {shape}, {args.clients} clients (3 /detect : 1 /healthz)\n")
    print(f"| scenario | requests | lost (502/none) | busy (503) | no answer in {CLIENT_TIMEOUT:g} s | lost for s | p50 ms "
          "| p95 ms | max ms | when (s) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        when = ", ".join(f"{k} {r[k]}" for k in ("serving_s", "out_s", "back_in_s", "lost_until_s") if r.get(k))
        print(f"| {r['scenario']} | {r['requests']} | {r['lost']} | {r['busy']} | {r['slow']} | {r['lost_for_s']} "
              f"| {r['p50_ms']} "
              f"| {r['p95_ms']} | {r['max_ms']} | {when} |")
    for r in rows:
        for kind in ("lost", "busy", "slow"):
            if r[f"first_{kind}"]:
                print(f"first {kind} in {r['scenario']}: {r[f'first_{kind}']}")
    errors = [line for line in NGINX_ERRORS if "[warn]" not in line]
    if errors:
        print("nginx's error log ended with:\n" + "\n".join(errors))
    print(f"\nnginx's own answers: {json.dumps(answers)}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # Without a crash nothing may be lost; the crash scenarios' figures are the table's.
    return 1 if any(r["lost"] for r in rows if not r["scenario"].startswith(("(a)", "(b)", "(e)"))) else 0


if __name__ == "__main__":
    sys.exit(main())
