"""``python -m bench.pythonanywhere``: PythonAnywhere's reloads rehearsed with uWSGI on loopback.

Set up as docs/deploy-pythonanywhere.md's steps say, word for word where a machine can follow them:
the project cloned to ``~/mysite`` (``git clone`` of this repository's HEAD, in a temporary
home), the WSGI file ``/var/www/<user>_pythonanywhere_com_wsgi.py`` being
``deploy/pythonanywhere_wsgi.py`` unchanged, and ``~/mysite/.env`` being the guide's example
pasted as is. uWSGI runs as PythonAnywhere runs a web app: one process, no threads, the WSGI
file as ``--touch-reload`` (the Web tab's *Reload* button), behind ``--http-socket``. Under a
steady load it reloads N times and reports failed requests (any answer but 200, or none) and
the time from each touch to the first answer of the reloaded app; it checks the ``.env`` was
honoured (its upload limit).

uWSGI is not a runtime dependency: if it is missing, this installs ``bench/requirements.txt``
into the running virtualenv (pip builds it, about 90 s). Only 127.0.0.1 is contacted; every
wait has a deadline; uWSGI is stopped by the process id this module started. About 30 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.deploy import announced, http_request
from bench.server import HOST, ROOT, free_port, multipart

USER = "rehearsal"
GUIDE = ROOT / "docs" / "deploy-pythonanywhere.md"


def readme_env_example() -> str:
    """The ``.env`` example of the PythonAnywhere guide's steps, exactly as a reader would paste it."""
    text = GUIDE.read_text(encoding="utf-8")
    after = text[text.index("`~/mysite/.env`"):]
    block = re.search(r"```sh\n(.*?)```", after, re.S)
    assert block is not None, "the PythonAnywhere guide's .env example is missing"
    return "\n".join(line.strip() for line in block.group(1).splitlines()) + "\n"


def uwsgi_binary() -> str:
    """uWSGI beside this interpreter, installed from bench/requirements.txt if missing."""
    found = Path(sys.executable).parent / "uwsgi"
    if not found.exists():
        print("uWSGI is missing: pip install -r bench/requirements.txt (builds it, about 90 s)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r", str(ROOT / "bench" / "requirements.txt")],
                       check=True, timeout=900)
    return str(found)


@dataclass
class Site:
    """A PythonAnywhere-like layout in a temporary folder, and uWSGI serving it."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def home(self) -> Path:
        return self.root / "home" / USER

    @property
    def wsgi_file(self) -> Path:
        return self.root / "var" / "www" / f"{USER}_pythonanywhere_com_wsgi.py"

    @property
    def log(self) -> Path:
        return self.root / "uwsgi.log"

    def set_up(self) -> None:
        """The guide's steps 1, 5 and 6 (step 2's virtualenv is this interpreter's)."""
        self.home.mkdir(parents=True)
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(self.home / "mysite")], check=True, timeout=120,
                       env={**os.environ, "HOME": str(self.home)})
        self.wsgi_file.parent.mkdir(parents=True)
        shutil.copy(ROOT / "deploy" / "pythonanywhere_wsgi.py", self.wsgi_file)
        (self.home / "mysite" / ".env").write_text(readme_env_example(), encoding="utf-8")

    def start(self, deadline_s: float = 60.0) -> float:
        """uWSGI as PythonAnywhere runs a web app; milliseconds to the first 200 on /healthz."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSITE_", "UWSGI_"))}
        env["HOME"] = str(self.home)
        argv = [uwsgi_binary(), "--master", "--processes", "1", "--http-socket", f"{HOST}:{self.port}",
                "--wsgi-file", str(self.wsgi_file), "--callable", "application", "--virtualenv", sys.prefix,
                "--touch-reload", str(self.wsgi_file), "--need-app", "--die-on-term", "--single-interpreter",
                "--logto", str(self.log)]
        started = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=self.wsgi_file.parent, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while time.perf_counter() - started < deadline_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uWSGI exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                if http_request(self.port, "GET", "/healthz", timeout=5)[0] == 200:
                    return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            time.sleep(0.005)
        raise TimeoutError(f"uWSGI: no 200 on /healthz within {deadline_s} s: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def apps_ready(self) -> int:
        """How many times uWSGI has loaded the app so far (its log says so each time)."""
        return self.log_text().count("WSGI app 0 (mountpoint='') ready")

    def reload(self, deadline_s: float = 60.0) -> float:
        """Touch the WSGI file (the Reload button); milliseconds to the reloaded app's first 200."""
        before = self.apps_ready()
        touched = time.perf_counter()
        self.wsgi_file.touch()
        while time.perf_counter() - touched < deadline_s:
            if self.apps_ready() > before:
                if http_request(self.port, "GET", "/healthz", timeout=30)[0] == 200:
                    return (time.perf_counter() - touched) * 1000
            time.sleep(0.005)
        raise TimeoutError(f"no reload within {deadline_s} s: {self.log_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # --die-on-term: stop, not reload
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def run_load(port: int, clients: int, stop: threading.Event, out: list[tuple[int, float]],
             failures: list[str]) -> list[threading.Thread]:
    """Clients alternating /detect (the group photo) and /healthz until ``stop``."""
    body, ctype = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
    lock = threading.Lock()

    def client(i: int) -> None:
        n = i
        while not stop.is_set() and len(out) < 10_000:
            n += 1
            t = time.perf_counter()
            try:
                if n % 2:
                    status, text, _ = http_request(port, "POST", "/detect", body, {"Content-Type": ctype}, timeout=60)
                else:
                    status, text, _ = http_request(port, "GET", "/healthz", timeout=60)
                problem = None if status == 200 else f"{status}: {text[:200]!r}"
            except OSError as exc:
                status, problem = -1, f"no answer: {exc!r}"
            with lock:
                out.append((status, (time.perf_counter() - t) * 1000))
                if problem:
                    failures.append(problem)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    return threads


def rehearse(reloads: int, clients: int) -> dict[str, object]:
    """Start, reload ``reloads`` times under load, check the .env; the figures."""
    root = Path(tempfile.mkdtemp(prefix="mysite-pa-"))
    site = Site(root)
    try:
        site.set_up()
        cold_ms = site.start()
        # The .env's upload limit is honoured: a body over it gets the app's JSON 413.
        limit = re.search(r"^MYSITE_MAX_UPLOAD_MB=(\S+)$", readme_env_example(), re.M)
        env_413 = None
        if limit:
            too_big = int(float(limit.group(1)) * 1024 * 1024 * 4 // 3) + 128 * 1024
            env_413 = announced(site.port, too_big)[0]
        health_body = http_request(site.port, "GET", "/healthz")[1].decode()
        stop, results, failures = threading.Event(), [], []
        threads = run_load(site.port, clients, stop, results, failures)
        reload_ms = []
        try:
            time.sleep(1.0)
            for _ in range(reloads):
                reload_ms.append(site.reload())
                time.sleep(1.0)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        ms = sorted(r[1] for r in results)
        return {
            "cold_start_ms": round(cold_ms),
            "healthz": health_body.strip(),
            "env_limit_413": env_413,
            "requests": len(results),
            "failed": len(failures),
            "first_failure": failures[0] if failures else "",
            "p50_ms": round(statistics.median(ms)) if ms else 0,
            "max_ms": round(ms[-1]) if ms else 0,
            "touch_to_serving_ms": [round(x) for x in reload_ms],
            "errors_in_log": [line for line in site.log_text().splitlines() if "Traceback" in line or " ERROR " in line][:5],
        }
    finally:
        site.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pythonanywhere", description=__doc__.splitlines()[0])
    ap.add_argument("--reloads", type=int, default=5, help="touch-reloads under load (default 5)")
    ap.add_argument("--clients", type=int, default=2, help="concurrent clients (default 2)")
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    r = rehearse(args.reloads, args.clients)
    print(f"\nuWSGI, one process, no threads, touch-reload; the guide's .env pasted as is; {args.clients} clients\n")
    print("| cold start ms | requests | failed | p50 ms | max ms | touch to serving, ms (each reload) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| {r['cold_start_ms']} | {r['requests']} | {r['failed']} | {r['p50_ms']} | {r['max_ms']} | "
          f"{', '.join(map(str, r['touch_to_serving_ms']))} |")
    print(f"\n/healthz: {r['healthz']}; .env's upload limit honoured (413 over it): {r['env_limit_413'] == 413}")
    if r["first_failure"]:
        print(f"first failure: {r['first_failure']}")
    if r["errors_in_log"]:
        print(f"errors in uWSGI's log: {r['errors_in_log']}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if r["failed"] or r["env_limit_413"] != 413 else 0


if __name__ == "__main__":
    sys.exit(main())
