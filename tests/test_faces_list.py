"""The list of registered names (``GET /faces``, DeepStack's ``/v1/vision/face/list``) on a full store of the
longest names: what an answer costs the web worker must not grow with the store, nor with clients that do not read.

No face model needed: listing reads the database only.
"""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from pathlib import Path

import pytest
import requests
from live_server import start_gunicorn
from werkzeug.test import EnvironBuilder, run_wsgi_app

from mysite.faces.store import EMBEDDING_BYTES, MAX_NAME, FaceStore, faces

FULL = 10_000  # MYSITE_FACES_MAX's default
MB = 2**20


def _fill(url: str, count: int = FULL) -> list[str]:
    """``count`` people of one face each, their names as long as a name may be, in astral characters (four bytes
    each in UTF-8, twelve as JSON escapes): the longest list the default store can give."""
    names = ["\U0001F600" * (MAX_NAME - 10) + f"{i:010d}" for i in range(count)]
    with FaceStore(url).engine().begin() as conn:
        conn.execute(faces.insert(), [{"userid": n, "embedding": bytes(EMBEDDING_BYTES), "created": 0.0}
                                      for n in names])
    return names


def _answer_to_file(app, path: str, method: str, out: Path) -> tuple[str, dict[str, str], int]:
    """The answer's status and headers; its body written to ``out`` as it comes; the most Python held meanwhile."""
    environ = EnvironBuilder(path=path, method=method).get_environ()
    tracemalloc.start()
    try:
        pieces, status, headers = run_wsgi_app(app, environ)
        with out.open("wb") as f:
            for piece in pieces:
                f.write(piece)
        if hasattr(pieces, "close"):
            pieces.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return status, dict(headers), peak


@pytest.mark.parametrize(("path", "method"), [("/faces", "GET"), ("/v1/vision/face/list", "POST")])
def test_a_list_of_the_longest_names_is_utf8_and_holds_a_page_not_the_store(make_app, tmp_path, path, method):
    url = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    names = _fill(url)
    app = make_app({"MYSITE_FACES_DB": url})
    _answer_to_file(app, path, method, tmp_path / "first.json")  # the first request sets up the engine
    status, headers, peak = _answer_to_file(app, path, method, tmp_path / "answer.json")
    body = (tmp_path / "answer.json").read_bytes()
    assert status == "200 OK" and headers["Content-Type"] == "application/json"
    listed = json.loads(body)["faces"]
    assert listed == (names if path != "/faces" else [{"name": n, "count": 1} for n in names])
    # As UTF-8: about 8 MB; written as escapes, the same names were 23 MB, built whole, three copies at once.
    assert b"\\ud83d" not in body and len(body) < 9 * MB
    assert peak < 4 * MB, peak / MB


def _rss(pid: int) -> int:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) * 1024


def _web_workers(master: int) -> list[int]:
    """gunicorn's web workers: the master's children with no children of their own (not the CV dispatcher)."""
    def children(pid: int) -> list[int]:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [p for p in children(master) if not children(p)]


@pytest.mark.slow
def test_clients_that_never_read_a_long_list_hold_little_of_a_web_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    _fill(url)
    with start_gunicorn({"MYSITE_FACES_DB": url}, log_dir=tmp_path) as server:
        port = int(server.url.rsplit(":", 1)[1])
        (worker,) = _web_workers(server.pid)
        assert len(requests.get(server.url + "/faces", timeout=30).json()["faces"]) == FULL  # read whole, it holds
        before = _rss(worker)
        held = []
        try:
            for _ in range(16):  # each a thread of the worker, its answer stopped at what the socket buffers take
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.sendall(b"GET /faces HTTP/1.1\r\nHost: x\r\n\r\n")
                held.append(s)
            most = before
            for _ in range(30):  # 3 s: whole answers of escaped names were all made within 2
                most = max(most, _rss(worker))
                time.sleep(0.1)
            assert held[0].recv(64).startswith(b"HTTP/1.1 200 ")
        finally:
            for s in held:
                s.close()
    # Whole answers took the worker from about 100 MB to 670; a page each is a few MB for the sixteen.
    assert most - before < 150 * MB, (before / MB, most / MB)
