"""Hostile clients against the Procfile's gunicorn with nothing in front (as ``deploy/dev.sh serve`` runs it).

Before: 200 connections dripping a header byte a second held every thread (``/healthz``
answered 7 of 19 probes for a minute); clients that never read a large answer held their
threads and its memory; a chunked body with the chunk size ``zz`` was a 500 with a
traceback in the log; a body of 16 ``A``, 300,000 line breaks and ``!`` held the worker
for minutes. Each now has its deadline or its quick 4xx. About 30 s.
"""

from __future__ import annotations

import json
import socket
import time

import cv2
import numpy as np
import pytest
import requests
from live_server import start_gunicorn

from testkit.hostile_inputs import newline_body
from testkit.net import exchange, port_of

pytestmark = pytest.mark.slow


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").split(":")
    return host, int(port)


def test_a_chunked_body_with_a_bad_chunk_size_is_a_json_400(tmp_path):
    raw = (b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\nzz\r\nAAAA\r\n0\r\n\r\n")
    with start_gunicorn(log_dir=tmp_path) as server:
        answer = exchange(port_of(server.url), raw, timeout=20, half_close=True)
        log = server.log.read_text()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert json.loads(body)["reason"] == "bad_request"
    assert "Traceback" not in log, log[-3000:]


def test_the_newline_body_is_a_quick_4xx_and_the_worker_keeps_serving(tmp_path):
    with start_gunicorn(log_dir=tmp_path) as server:
        # The quadratic test took minutes on this body: the timeout is a bound, far above its cost now.
        r = requests.post(server.url + "/detect", data=newline_body(300_000), timeout=20)
        health = requests.get(server.url + "/healthz", timeout=5)
    assert 400 <= r.status_code < 500 and r.json()["reason"] == "unsupported_media", r.text[:300]
    assert health.status_code == 200


def test_connections_dripping_their_headers_are_cut_off_and_healthz_answers(tmp_path):
    env = {"MYSITE_HEADER_DEADLINE": "2", "MYSITE_THREADS": "4"}
    with start_gunicorn(env, log_dir=tmp_path) as server:
        drippers = []
        try:
            for _ in range(12):  # three times the threads
                s = socket.create_connection(_address(server.url), timeout=5)
                s.sendall(b"GET /healthz HTTP/1.1\r\n")
                drippers.append(s)
            start = time.monotonic()
            answered = cut = 0
            while time.monotonic() - start < 6:  # bounded: a byte a second from each, for 6 s
                for s in drippers:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        cut += 1
                time.sleep(1)
            for _ in range(3):
                try:
                    answered += requests.get(server.url + "/healthz", timeout=5).status_code == 200
                except requests.RequestException:
                    pass
        finally:
            for s in drippers:
                s.close()
    assert answered == 3
    assert cut > 0  # the server closed dripping connections (a send to a closed peer fails)


def _large_answer_request(host: str) -> bytes:
    """/detect?output=image&format=png of a noisy 3000x2000 picture: an answer of about 18 MB."""
    noise = np.random.default_rng(0).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", noise)
    body = buf.tobytes()
    return (f"POST /detect?output=image&format=png HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_clients_that_never_read_their_answer_do_not_hold_the_threads(tmp_path):
    env = {"MYSITE_SEND_TIMEOUT": "2", "MYSITE_THREADS": "2", "MYSITE_QUEUE": "4", "MYSITE_MAX_UPLOAD_MB": "40"}
    with start_gunicorn(env, log_dir=tmp_path) as server:
        request = _large_answer_request("x")
        sleepers = []
        try:
            for _ in range(4):  # twice the threads; each asks for megabytes and reads none of them
                s = socket.create_connection(_address(server.url), timeout=30)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(request)
                sleepers.append(s)
            time.sleep(12)  # the answers are made one at a time, block in the sending, and pass their send timeout
            health = requests.get(server.url + "/healthz", timeout=10)
        finally:
            for s in sleepers:
                s.close()
        log = server.log.read_text()
    assert health.status_code == 200
    assert "did not read its answer in time" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
