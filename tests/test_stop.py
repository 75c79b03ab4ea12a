"""A stop as systemd makes it on Elastic Beanstalk: SIGTERM to every process of the Procfile's unit
at once (the default ``KillMode=control-group``), not only to gunicorn's master. The requests in
flight, running in the CV process pool or waiting in its queue, are answered before the instance
exits; nothing is cut short because the pool got the signal too. A real gunicorn on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from bench import deploy
from testkit.net import multipart

pytestmark = pytest.mark.slow


def test_requests_in_flight_are_answered_when_every_process_of_the_unit_gets_sigterm() -> None:
    body, ctype = multipart(deploy.PHOTO.read_bytes())
    # One CV process and a queue deadline no shared machine reaches: some requests run, some wait.
    inst = deploy.Instance("stop", env={"WEB_CONCURRENCY": "1", "MYSITE_CV_PROCESSES": "1",
                                        "MYSITE_QUEUE_DEADLINE": "60", "MYSITE_CV_THREADS": "1"})
    answers: list[int | str] = []

    def detect() -> None:
        try:
            status, text, _ = deploy.http_request(inst.port, "POST", "/detect", body, {"Content-Type": ctype},
                                                  timeout=60)
            answers.append(status if status == 200 else f"{status} {text[:160]!r}")
        except OSError as exc:
            answers.append(f"no answer: {exc!r}")

    try:
        inst.start()
        assert inst.proc is not None
        clients = [threading.Thread(target=detect, daemon=True) for _ in range(4)]
        for t in clients:
            t.start()
        deadline = time.monotonic() + 30
        # Until one runs and the others wait their turn: all four in the server's hands (a connection the
        # worker has not yet accepted when the stop comes may be reset, as by any server that stops listening).
        while time.monotonic() < deadline:
            queue = deploy.json.loads(deploy.http_request(inst.port, "GET", "/healthz", timeout=5)[1])["queue"]
            if queue["busy"] >= 1 and queue["waiting"] >= 1 and \
                    queue["busy"] + queue["waiting"] + len(answers) >= len(clients):
                break
            time.sleep(0.01)
        else:
            pytest.fail(f"the requests never queued: {queue}")
        os.killpg(inst.proc.pid, signal.SIGTERM)  # master, worker, dispatcher and CV process alike
        for t in clients:
            t.join(timeout=90)
        assert inst.proc.wait(timeout=60) == 0
        assert answers == [200] * 4, answers
    finally:
        inst.close()


def test_while_it_drains_a_stopping_server_refuses_new_connections(tmp_path) -> None:
    from live_server import start_gunicorn

    with start_gunicorn({"MYSITE_UPLOAD_DEADLINE": "30"}, log_dir=tmp_path, workers=2) as live:
        port = int(live.url.rsplit(":", 1)[1])
        # A request in flight keeps the workers draining: its body is half sent.
        slow = socket.create_connection(("127.0.0.1", port), timeout=30)
        slow.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 2000\r\n\r\n"
                     + b"\xff" * 1000)
        time.sleep(0.5)  # taken by a worker
        os.kill(live.pid, signal.SIGTERM)
        time.sleep(1.0)  # the master and the workers have the signal
        try:
            late = socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            late = None  # what a load balancer can act on at once
        if late is not None:
            late.close()
        slow.sendall(b"\xff" * 1000)
        answer = slow.recv(4096)
        slow.close()
        assert late is None, "a connection was taken while the server drained (to be reset when it ends)"
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]


def test_a_reload_keeps_every_setting_the_app_was_loaded_with(tmp_path) -> None:
    # With the app loaded once in the master (preload_app), a SIGHUP's new workers serve that app, its pool
    # and its limits: they must not take a few changed settings from the file and leave the rest.
    from live_server import start_gunicorn

    env_file = tmp_path / "site.env"
    env_file.write_text("MYSITE_HEADER_DEADLINE=10\n")
    with start_gunicorn({"MYSITE_ENV_FILE": str(env_file), "MYSITE_CV_PROCESSES": "1"}, log_dir=tmp_path) as live:
        port = int(live.url.rsplit(":", 1)[1])
        workers = set(_children(live.pid))
        env_file.write_text("MYSITE_HEADER_DEADLINE=1\n")
        os.kill(live.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not (set(_children(live.pid)) - workers) or len(set(_children(live.pid)) & workers) > 1:
            assert time.monotonic() < deadline, "no new worker after the reload"  # the old one gone, the pool kept
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(2.5)  # past the file's new deadline, within the loaded one
            sock.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def _children(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    return [int(p) for p in open(path).read().split()] if os.path.exists(path) else []
