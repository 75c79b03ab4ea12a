"""End to end: the Procfile's gunicorn command on a free loopback port, driven by the book's client
sequence (demo_request.py) with requests, plus ?url= against a loopback image server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from loopback import serve
from tests_helpers import BOOK_GROUP_BOXES

from testkit.net import free_port, procfile_argv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(port),
        # Loopback only: the Procfile binds 0.0.0.0 for the host's load balancer.
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "MYSITE_URL_ALLOW_NETWORKS": "127.0.0.0/8",
        "MYSITE_MAX_UPLOAD_MB": "1",
        "MYSITE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(procfile_argv(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"gunicorn did not start:\n{proc.stdout.read().decode(errors='replace')}")
        time.sleep(0.1)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_the_books_demo_request_sequence(server, group_jpg):
    # 1. a wrong route
    r = requests.get(f"{server}/process")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"message": "route not found", "status": "not found", "reason": "not_found"}
    # 2. GET without its url parameter
    r = requests.get(f"{server}/detect")
    assert r.status_code == 400 and r.json() == {"message": "Parameter url is not present", "status": "bad request",
                                                "reason": "missing_image"}
    # 3. POST the group photo
    payload = {"image": group_jpg}
    r = requests.post(f"{server}/detect", files=payload)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    boxes = sorted(d["box"] for d in r.json()["result"])
    assert len(boxes) == 17
    assert all(max(abs(a - b) for a, b in zip(mine, book)) <= 2 for mine, book in zip(boxes, BOOK_GROUP_BOXES))
    # 4. PUT is not supported
    r = requests.put(f"{server}/detect", files=payload)
    assert r.status_code == 405
    assert r.json() == {"message": "PUT method not supported for API", "status": "failure",
                        "reason": "method_not_allowed"}
    assert "POST" in r.headers["Allow"]


def test_get_with_url_from_a_loopback_image_server(server, group_jpg):
    with serve({"/test_face_processing.jpg": (200, {"Content-Type": "image/jpeg"}, group_jpg)}) as (images, seen):
        r = requests.get(f"{server}/detect", params={"url": f"{images}/test_face_processing.jpg"})
    assert r.status_code == 200 and len(r.json()["result"]) == 17
    assert len(seen) == 1


def test_cat_and_canny_over_http(server, cat_jpg, group_jpg):
    r = requests.post(f"{server}/catfacedetection", files={"image": cat_jpg})
    assert r.status_code == 200 and len(r.json()["result"]) == 1
    r = requests.post(f"{server}/canny", files={"image": group_jpg})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg" and r.content[:3] == b"\xff\xd8\xff"


def test_oversized_upload_gets_a_json_413_not_a_reset(server):
    r = requests.post(f"{server}/detect", files={"image": b"\xff\xd8\xff" + b"\0" * 3_000_000})
    assert r.status_code == 413 and r.json()["status"] == "too large"


def test_a_body_past_the_limit_is_not_invited_with_100_continue(server):
    # curl sends Expect: 100-continue for large bodies; an early 413 spares it sending them at all.
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n")
        first = sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 413 "), first[:200]


def test_a_body_within_the_limit_is_invited_with_100_continue(server, group_jpg):
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(group_jpg))
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(group_jpg)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_bad_input_does_not_hurt_the_workers(server, group_jpg):
    for body in (b"", b"garbage" * 1000, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, group_jpg[:3000]):
        r = requests.post(f"{server}/detect", data=body, headers={"Content-Type": "image/png"})
        assert r.status_code in (400, 415, 422) and set(r.json()) == {"status", "message", "reason"}
    assert requests.get(f"{server}/healthz").json()["status"] == "ok"
    r = requests.post(f"{server}/detect", files={"image": group_jpg})
    assert len(r.json()["result"]) == 17


def test_info_route_over_http(server):
    body = requests.get(f"{server}/").json()
    assert {"/detect", "/catfacedetection", "/canny", "/healthz", "/"} <= {r["path"] for r in body["routes"]}
