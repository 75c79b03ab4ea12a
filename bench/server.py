"""Run the Procfile's gunicorn on loopback and talk to it: cold start, requests, peak RSS.

Only 127.0.0.1 is ever contacted; every wait has a deadline; the server is stopped
by the process id this module started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The loopback plumbing is testkit.net's, shared with the tests; the benchmarks import it from here too.
from testkit.net import HOST, ROOT, free_port, multipart, procfile_argv, procfile_command, request  # noqa: F401


@dataclass
class Server:
    """One gunicorn started from the Procfile with some environment; use as a context manager."""

    workers: int
    cv_threads: int
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    cold_healthz_ms: float = float("nan")
    cold_detect_ms: float = float("nan")

    def __enter__(self) -> Server:
        self.port = free_port()
        env = {
            **os.environ,
            "GUNICORN_CMD_ARGS": f"--bind {HOST}:{self.port}",
            "WEB_CONCURRENCY": str(self.workers),
            "MYSITE_CV_THREADS": str(self.cv_threads),
            "MYSITE_URL_FETCH": "off",
            "MYSITE_LOG_LEVEL": "WARNING",
            **self.extra_env,
        }
        self._log = tempfile.TemporaryFile()
        started = time.perf_counter()
        self.proc = subprocess.Popen(procfile_command(), cwd=ROOT, env=env, stdout=self._log, stderr=self._log)
        self.cold_healthz_ms = self._wait_for(lambda: request(self.port, "GET", "/healthz", timeout=5)[0], started)
        probe, ctype = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
        self.cold_detect_ms = self._wait_for(
            lambda: request(self.port, "POST", "/detect", probe, ctype, timeout=30)[0], started)
        return self

    def _wait_for(self, probe, started: float, deadline_s: float = 30.0) -> float:  # type: ignore[no-untyped-def]
        """Milliseconds from ``started`` to the first 200 from ``probe``; polls every 5 ms."""
        while time.perf_counter() - started < deadline_s:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                if probe() == 200:
                    return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            time.sleep(0.005)
        raise TimeoutError(f"no 200 within {deadline_s} s: {self.log()[-2000:]}")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def worker_pids(self) -> list[int]:
        """Every process under the master: the web workers, the CV pool's dispatcher and its processes."""
        return sorted(self._family() - {self._pid()})

    def web_pids(self) -> list[int]:
        """The web workers: the master's children other than the CV pool's dispatcher (the one with children)."""
        parents = _parents()
        children = [pid for pid, parent in parents.items() if parent == self._pid()]
        return sorted(pid for pid in children if pid not in set(parents.values()))

    def cv_pids(self) -> list[int]:
        """The CV pool's processes (the dispatcher's children): where the detections run."""
        parents = _parents()
        children = {pid for pid, parent in parents.items() if parent == self._pid()}
        return sorted(pid for pid, parent in parents.items() if parent in children)

    def _pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _family(self) -> set[int]:
        parents = _parents()
        family, found = {self._pid()}, True
        while found:
            found = False
            for pid, parent in parents.items():
                if parent in family and pid not in family:
                    family.add(pid)
                    found = True
        return family

    def tree_cpu_seconds(self) -> float:
        """CPU time of the whole instance so far: the master and every process under it, each thread
        counted (``schedstat``, ns), and the processes that ended and were reaped (``cutime``, ``cstime``)."""
        family, reaped = self._family(), 0.0
        for pid in family:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                reaped += (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                continue  # a process that just ended
        return cpu_of(family) + reaped

    def peak_rss_mb(self) -> tuple[float, list[float]]:
        """Peak resident memory (VmHWM) of the master and of each worker, in MB."""
        assert self.proc is not None
        return _hwm(self.proc.pid), [_hwm(pid) for pid in self.worker_pids()]

    def cpu_seconds(self) -> float:
        """CPU time the workers have used so far, every thread counted (``schedstat``, ns)."""
        return cpu_of(set(self.worker_pids()))

    def cpu_split(self) -> tuple[float, float]:
        """CPU seconds so far of the web side (master and web workers) and of the CV pool (dispatcher and processes)."""
        parents = _parents()
        master = self._pid()
        children = {pid for pid, parent in parents.items() if parent == master}
        pool = {pid for pid, parent in parents.items() if parent in children}  # only the dispatcher has children
        pool |= {parents[pid] for pid in pool}
        return cpu_of({master} | (children - pool)), cpu_of(pool)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # a process that just ended
    return parents


def cpu_of(pids: set[int]) -> float:
    """CPU seconds of these processes, every thread counted (``schedstat``, ns)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    total += int((task / "schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue  # a thread that just ended
    return total / 1e9


def _hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(port: int, body: bytes, ctype: str, clients: int, per_client: int) -> tuple[float, list[float]]:
    """``clients`` threads each sending ``per_client`` requests; requests/s and every latency (ms)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_client):
            t = time.perf_counter()
            status, text = request(port, "POST", "/detect", body, ctype)
            ms = (time.perf_counter() - t) * 1000
            with lock:
                latencies.append(ms)
                if status != 200:
                    errors.append(f"{status}: {text[:200]!r}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return clients * per_client / wall, latencies
