"""Start the site under gunicorn, exactly as the Procfile does, on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from testkit.net import free_port  # noqa: F401 - the one helper, re-exported for the tests

PROJECT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LiveServer:
    url: str  # e.g. http://127.0.0.1:40123
    log: Path
    pid: int = 0  # the server's main process


@contextmanager
def start_gunicorn(env: Mapping[str, str] | None = None, log_dir: Path | None = None,
                   workers: int = 1, config: str = "mysite.server.gunicorn_conf") -> Iterator[LiveServer]:
    """Run ``gunicorn --config python:mysite.server.gunicorn_conf wsgi:application`` until the block ends
    (``config``: another settings module, one that imports that one's)."""
    port = free_port()
    log_dir = log_dir or PROJECT / "test-artifacts"
    log_dir.mkdir(exist_ok=True)
    log = log_dir / "gunicorn.log"
    full_env = {
        **os.environ,
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers {workers}",
        "MYSITE_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(gunicorn), "--config", f"python:{config}", "wsgi:application"],
            cwd=PROJECT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", log, proc.pid)
    try:
        wait_until(lambda: requests.get(server.url + "/healthz", timeout=1).status_code == 200, proc, "gunicorn",
                   detail=log.read_text)
        yield server
    finally:
        stop(proc)


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0,
               detail: Callable[[], str] = str) -> None:
    """Poll ``ready()`` until it is true; fail early when ``proc`` dies, with ``detail()`` (e.g. its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}\n{detail()}")
        try:
            if ready():
                return
        except (requests.ConnectionError, ValueError, KeyError):
            pass  # not listening yet, or not answering sense yet
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not get ready within {timeout} s\n{detail()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask a child process to end; kill it if it will not."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
