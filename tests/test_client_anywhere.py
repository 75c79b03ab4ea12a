"""The client as a user runs it: the installed command, on a Python without OpenCV, against servers
that are there, busy, dropping connections or not there at all."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import cv2
import numpy as np
import pytest
from live_server import free_port
from loopback import reply, serve

from mysite.client import Client, ConnectFailed
from mysite.client.cli import main

DATA = Path(__file__).with_name("data")
GROUP = DATA / "group_17_faces.jpg"
SCRIPT = Path(sys.executable).with_name("mysite-client")  # the console script pip wrote for pyproject's entry

# Run the command as a Python with requests and Pillow but neither OpenCV, numpy nor Flask would:
# an import of any of them fails as if it were not installed.
WITHOUT_CV = ("import sys\n"
              "for name in ('cv2', 'numpy', 'flask', 'werkzeug'):\n"
              "    sys.modules[name] = None\n"
              "from mysite.client.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")


def _command(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _without_cv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_CV, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def _yellow(pixel: np.ndarray) -> bool:
    b, g, r = (int(v) for v in pixel)
    return b < 110 and g > 170 and r > 170


def test_the_installed_command_runs_from_any_folder(live_server, tmp_path) -> None:
    assert SCRIPT.is_file(), "pip install of the project writes the mysite-client command"
    helped = _command("--help", cwd=tmp_path)
    assert helped.returncode == 0 and "--server" in helped.stdout
    done = _command("--server", live_server.url, "detect", str(GROUP), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["result"]) == 17


def test_draw_needs_pillow_only(live_server, tmp_path) -> None:
    out = tmp_path / "faces.png"
    done = _without_cv("--server", live_server.url, "detect", str(GROUP), "--draw", str(out),
                       "-p", "detector=yunet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"wrote {out}\n"
    faces = json.loads(done.stdout)["result"]
    assert len(faces) >= 15 and all("landmarks" in f for f in faces)
    picture = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert picture.shape == (482, 640, 3)
    for x1, y1, x2, y2 in (f["box"] for f in faces):
        assert _yellow(picture[(y1 + y2) // 2, x1]), f"no box drawn at {[x1, y1, x2, y2]}"


def test_a_picture_answer_is_saved_with_pillow_only(live_server, tmp_path) -> None:
    out = tmp_path / "edges.png"
    done = _without_cv("--server", live_server.url, "canny", str(GROUP), "--draw", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    edges = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert edges.ndim == 2 and set(np.unique(edges)) <= {0, 255} and edges.any()
    jpeg = tmp_path / "edges.jpg"  # a JPEG asked of a PNG answer is converted, not misnamed
    assert _without_cv("--server", live_server.url, "canny", str(GROUP), "--draw", str(jpeg),
                       "-p", "format=png", cwd=tmp_path).returncode == 0
    assert jpeg.read_bytes()[:3] == b"\xff\xd8\xff"


def test_an_address_nobody_listens_on_fails_at_once_in_one_line(tmp_path) -> None:
    started = time.monotonic()
    done = _command("--server", f"http://127.0.0.1:{free_port()}", "detect", str(GROUP), cwd=tmp_path)
    assert time.monotonic() - started <= 3.0
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "could not connect" in done.stderr and "refused" in done.stderr


@contextmanager
def _black_hole() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connect there gets no answer, as to a dropped packet."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # the queue holds backlog + 1; past it the kernel drops the handshake
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for s in [*fillers, listener]:
            s.close()


@pytest.mark.slow
def test_an_address_that_never_answers_fails_within_3_seconds_in_one_line(tmp_path) -> None:
    with _black_hole() as port:
        started = time.monotonic()
        with pytest.raises(ConnectFailed, match="no connection within the connect timeout"):
            Client(f"http://127.0.0.1:{port}").detect(GROUP)
        elapsed = time.monotonic() - started  # the request's own time: the command adds Python's start-up
        done = _command("--server", f"http://127.0.0.1:{port}", "detect", str(GROUP), cwd=tmp_path)
    assert elapsed <= 3.0, f"{elapsed:.1f} s"
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "could not connect" in done.stderr, done.stderr


def _dropping_server(drops: int) -> AbstractContextManager[tuple[str, list[str]]]:
    """Reads each request, then closes the connection without a word ``drops`` times; then answers."""
    answered = []

    def answer(h: BaseHTTPRequestHandler) -> None:
        answered.append(h.path)
        if len(answered) <= drops:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        reply(h, 200, {"Content-Type": "application/json"}, b'{"status": "ok", "result": [{"box": [1, 2, 3, 4]}]}')

    return serve({"/detect": answer})


def test_a_connection_dropped_after_it_was_made_is_sent_again() -> None:
    sleeps: list[float] = []
    with _dropping_server(2) as (url, seen):
        assert Client(url, sleep=sleeps.append).detect(b"bytes") == [{"box": [1, 2, 3, 4]}]
    assert len(seen) == 3 and sleeps == [0.5, 1.0]


def test_a_connection_dropped_every_time_is_reported_as_no_answer(tmp_path) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(GROUP.read_bytes())
    with _dropping_server(10) as (url, seen):
        done = _command("--server", url, "--retries", "1", "detect", str(image), cwd=tmp_path)
    assert len(seen) == 2
    assert done.returncode == 3 and done.stderr.count("\n") == 1 and "gave no answer" in done.stderr


@pytest.fixture()
def two_bad(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "group.jpg").write_bytes(GROUP.read_bytes())
    (photos / "broken.jpg").write_bytes((DATA / "cat.jpg").read_bytes()[:3000])
    (photos / "not-a-photo.jpg").write_bytes(b"%PDF-1.4 a document, not a picture\n")
    return photos


def test_a_resumed_batch_exits_as_its_output_file_says(live_server, two_bad, tmp_path, capsys) -> None:
    """Two images without a good answer: 1 on the run that found them, 1 again on the run that skips them."""
    out = tmp_path / "results.jsonl"
    argv = ["--server", live_server.url, "detect", str(two_bad), "--out", str(out)]
    assert main(argv) == 1
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"3 skipped (already answered in {out}; 2 of them errors)" in err
    good = tmp_path / "good.jsonl"
    argv = ["--server", live_server.url, "detect", str(two_bad / "group.jpg"), str(GROUP), "--out", str(good)]
    assert main(argv) == 0
    assert main(argv) == 0  # every image has its answer in the file: nothing to do, nothing wrong
