"""The batch client (python -m mysite.client ROUTE PATH...) against the site under gunicorn on loopback."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import pytest
import requests
from live_server import PROJECT, free_port
from loopback import serving

from mysite.client import imagepaths, model_not_loaded
from mysite.client.batch import answered, drawn_name
from mysite.client.cli import main
from mysite.client.progress import Progress
from testkit.interrupts import interruptible
from testkit.net import reply

pytestmark = pytest.mark.slow

DATA = Path(__file__).with_name("data")


def _yellow(pixel) -> bool:  # type: ignore[no-untyped-def]
    b, g, r = (int(v) for v in pixel)
    return b < 110 and g > 170 and r > 170


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Good photos (one in a subfolder, one PNG), a truncated JPEG, a PDF named .jpg, and files a walk skips."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    (photos / "group.jpg").write_bytes((DATA / "group_17_faces.jpg").read_bytes())
    (photos / "cat.jpg").write_bytes((DATA / "cat.jpg").read_bytes())
    (photos / "sub" / "astronaut.png").write_bytes((DATA / "astronaut.png").read_bytes())
    (photos / "sub" / "broken.jpg").write_bytes((DATA / "cat.jpg").read_bytes()[:3000])
    (photos / "not-a-photo.jpg").write_bytes(b"%PDF-1.4 a document, not a picture\n")
    (photos / "notes.txt").write_text("a text file: not an image name, so the walk leaves it\n")
    (photos / "._group.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    return photos


def _records(path: Path) -> dict[str, dict]:
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len({r["path"] for r in records}) == len(records), "an image answered twice"
    return {Path(r["path"]).name: r for r in records}


@pytest.mark.parametrize("per_request", ["1", "3"])
def test_a_folder_gives_one_record_per_image_and_a_summary(live_server, folder, tmp_path, capsys,
                                                          per_request) -> None:
    out = tmp_path / "results.jsonl"
    missing = str(tmp_path / "gone.jpg")
    code = main(["--server", live_server.url, "detect", str(folder), missing, "--out", str(out),
                 "--per-request", per_request])
    err = capsys.readouterr().err
    assert code == 1  # some images were errors; the batch went on past them
    records = _records(out)
    assert set(records) == {"group.jpg", "cat.jpg", "astronaut.png", "broken.jpg", "not-a-photo.jpg", "gone.jpg"}
    group = records["group.jpg"]
    assert group["status"] == 200 and group["boxes"] == 17 and len(group["answer"]["result"]) == 17
    assert group["path"] == str(folder / "group.jpg") and group["ms"] > 0
    assert records["astronaut.png"]["answer"]["result"] == [{"box": [176, 65, 274, 163]}]
    assert records["cat.jpg"]["status"] == 200
    assert records["broken.jpg"]["status"] == 422 and "truncated" in records["broken.jpg"]["answer"]["message"]
    assert records["not-a-photo.jpg"]["status"] == 415 and "PDF" in records["not-a-photo.jpg"]["answer"]["message"]
    assert records["gone.jpg"]["status"] is None and "cannot read" in records["gone.jpg"]["error"]
    if per_request == "3":
        assert max(r.get("per_request", 1) for r in records.values()) == 3
    assert "images: 6 answered (3 ok, 3 errors)" in err
    assert "boxes found: 18" in err
    assert "errors by status: 415: 1, 422: 1, unreadable: 1" in err
    assert "throughput: " in err and "images/s" in err


def test_stdout_by_default_paths_from_stdin_and_globs(live_server, folder, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{folder / 'sub'}\n\n{folder / 'cat.jpg'}\n"))
    code = main(["--server", live_server.url, "/detect", "-", str(folder / "g*.jpg"), "--quiet"])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(Path(r["path"]).name for r in lines) == ["astronaut.png", "broken.jpg", "cat.jpg", "group.jpg"]
    assert code == 1 and captured.err == ""  # --quiet: no summary; stderr is no terminal: no bar


class _Gate:
    """A proxy on loopback in front of the site: it passes ``first`` requests, then holds each one until
    ``release()``; it counts the images sent, by file name."""

    def __init__(self, upstream: str, first: int) -> None:
        self.upstream, self.first = upstream, first
        self.sent: Counter[str] = Counter()
        self.holding, self.released = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def release(self) -> None:
        self.released.set()

    def forward(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        with self._lock:
            self.sent.update(re.findall(r'filename="([^"]+)"', body.decode("latin-1")))
            passed = sum(self.sent.values()) <= self.first
        if not passed:
            self.holding.set()
            self.released.wait(60)
        upstream = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=60)
        try:
            conn.request("POST", h.path, body=body, headers={"Content-Type": h.headers["Content-Type"]})
            answer = conn.getresponse()
            reply(h, answer.status, {"Content-Type": answer.getheader("Content-Type", "")}, answer.read())
        finally:
            conn.close()


@contextmanager
def _gated(upstream: str, first: int) -> Iterator[tuple[str, _Gate]]:
    """``_Gate`` served on a free loopback port: its URL and the gate."""
    gate = _Gate(upstream, first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            gate.forward(self)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        try:
            yield url, gate
        finally:
            gate.release()  # a request still held goes on before the server stops


def _interrupt(proc: subprocess.Popen[str], gate: _Gate) -> str:
    """Ctrl-C ``proc`` while the gate holds its request: let the request through only once the client said
    it is stopping; its stderr."""
    assert gate.holding.wait(60), "the client sent no request past the gate's first ones"
    stopping = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("stopping:"):
                stopping.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc.send_signal(signal.SIGINT)
    assert stopping.wait(60), "".join(lines)
    gate.release()  # the request in flight is answered; nothing after it is sent
    proc.wait(timeout=60)
    reader.join(timeout=10)
    return "".join(lines)


def test_interrupted_run_resumes_without_sending_anything_twice(live_server, tmp_path) -> None:
    photos = tmp_path / "many"
    photos.mkdir()
    small = cv2.resize(cv2.imread(str(DATA / "group_17_faces.jpg")), (320, 241), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "small.jpg"), small)  # quick to answer: the test is about the client
    for i in range(24):
        os.link(tmp_path / "small.jpg", photos / f"g{i:02d}.jpg")
    out = tmp_path / "results.jsonl"
    # The interrupt lands while the gate holds the third image: by construction, not by a race with a
    # client that may send all 24 before this test is scheduled again.
    with _gated(live_server.url, first=2) as (url, gate):
        argv = [sys.executable, "-m", "mysite.client", "--server", url, "detect", str(photos), "--out", str(out)]
        # Ctrl-C at its default, as at a terminal, whatever this test run ignores.
        first = subprocess.Popen(interruptible([*argv, "--concurrency", "1"]), cwd=PROJECT, stderr=subprocess.PIPE,
                                 text=True)
        try:
            err = _interrupt(first, gate)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == 130, err
        assert "stopped: interrupted after" in err and "run the same command again" in err
        before = out.read_text().count("\n")
        assert before == 3  # the two let through, and the one in flight when interrupted
        with out.open("a") as f:
            f.write('{"path": "' + str(photos / "g23.jpg") + '", "status": 2')  # a crash mid-write
        second = subprocess.run(argv, check=False, cwd=PROJECT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        assert f"images: {24 - before} answered ({24 - before} ok, 0 errors), {before} skipped" in second.stderr
        records = _records(out)  # the cut line is gone, every photo once
        assert len(records) == 24 and all(r["status"] == 200 for r in records.values())
        third = subprocess.run(argv, check=False, cwd=PROJECT, capture_output=True, text=True, timeout=60)
        assert third.returncode == 0 and "images: 0 answered (0 ok, 0 errors), 24 skipped" in third.stderr
    assert gate.sent == Counter(f"g{i:02d}.jpg" for i in range(24))  # each image sent once in the three runs


def test_draw_dir_saves_the_servers_drawings(live_server, folder, tmp_path, capsys) -> None:
    drawn = tmp_path / "drawn"
    out = tmp_path / "results.jsonl"
    main(["--server", live_server.url, "detect", str(folder / "group.jpg"), str(folder / "sub"),
          "--draw-dir", str(drawn), "--out", str(out), "--quiet"])
    records = _records(out)
    group = cv2.imread(records["group.jpg"]["drawn"], cv2.IMREAD_COLOR)
    assert Path(records["group.jpg"]["drawn"]) == drawn / drawn_name(str(folder / "group.jpg"), "image/jpeg")
    assert group.shape == (482, 640, 3)
    for x1, y1, _x2, y2 in (d["box"] for d in records["group.jpg"]["answer"]["result"]):
        assert _yellow(group[(y1 + y2) // 2, x1]), "the server drew no box here"
    assert Path(records["astronaut.png"]["drawn"]).read_bytes()[:4] == b"\x89PNG"  # a PNG stays lossless
    assert "drawn" not in records["broken.jpg"]  # an error answer has nothing to draw
    assert sorted(p.name for p in drawn.rglob("*") if p.is_file()) == ["astronaut.png", "group.jpg"]


def test_an_unreachable_server_stops_the_batch_with_what_to_do(tmp_path, folder, capsys) -> None:
    out = tmp_path / "results.jsonl"
    code = main(["--server", f"http://127.0.0.1:{free_port()}", "--retries", "0", "detect", str(folder),
                 "--out", str(out), "-c", "1"])
    err = capsys.readouterr().err
    assert code == 3
    assert "stopped: unreachable" in err and "run the same command again" in err
    statuses = [json.loads(line)["status"] for line in out.read_text().splitlines()]
    assert statuses and set(statuses) == {None}
    assert answered(out) == {}  # nothing final: a resumed run sends them all


def test_the_progress_bar_is_drawn_only_when_asked_or_on_a_terminal(live_server, folder, capsys) -> None:
    main(["--server", live_server.url, "detect", str(folder / "sub"), "--progress", "--quiet"])
    err = capsys.readouterr().err
    assert "\r[####################] 2/2 100%" in err and "img/s  errors 1  left 0:00" in err
    main(["--server", live_server.url, "detect", str(folder / "sub"), "--quiet"])
    assert capsys.readouterr().err == ""


def test_progress_line_while_counting_and_when_resumed() -> None:
    bar = Progress(io.StringIO(), enabled=False)
    bar.counted(1000, final=False)
    bar.advance(done=5, skipped=3, errors=1)
    assert bar.line().startswith("5/1000+  resumed 3  ") and bar.line().endswith("errors 1  left ?")
    bar.counted(2000, final=True)
    assert bar.line().startswith("[....................] 5/2000 0%")


def test_the_walk_streams_in_a_stable_order_and_skips_hidden_and_non_image_names(folder) -> None:
    walked = list(imagepaths.expand([str(folder)]))
    assert [Path(p).relative_to(folder).as_posix() for p in walked] == [
        "cat.jpg", "group.jpg", "not-a-photo.jpg", "sub/astronaut.png", "sub/broken.jpg"]
    assert imagepaths.count([str(folder)]) == 5 and imagepaths.count(["-"]) is None
    assert list(imagepaths.expand([str(folder / "**" / "*.png")])) == [str(folder / "sub" / "astronaut.png")]
    assert list(imagepaths.expand([str(folder / "nothing-*.jpg")])) == [str(folder / "nothing-*.jpg")]


def test_drawn_names_mirror_the_path_and_never_leave_the_folder() -> None:
    assert drawn_name("a/b.jpg", "image/jpeg").as_posix() == "a/b.jpg"
    assert drawn_name("/abs/x.JPEG", "image/jpeg").as_posix() == "abs/x.JPEG"
    assert drawn_name("../up/c.tif", "image/jpeg").as_posix() == "_up/up/c.tif.jpg"
    assert drawn_name("./d.png", "image/png").as_posix() == "d.png"


def _response(status: int, body: dict) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(body).encode()
    return response


def test_a_model_not_loaded_is_read_from_the_reason_field() -> None:
    assert model_not_loaded(_response(503, {"status": "unavailable", "reason": "model_not_loaded", "message": "x"}))
    assert not model_not_loaded(_response(503, {"status": "unavailable", "reason": "overloaded",
                                       "message": "model face is not loaded"}))
    # The English message is for people: without the reason a 503 is taken as passing.
    assert not model_not_loaded(_response(503, {"status": "unavailable", "message": "model face is not loaded: ..."}))
    assert not model_not_loaded(_response(502, {"reason": "model_not_loaded"}))


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream site {{ server {a}; server {b}; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 20m;
        location / {{ proxy_pass http://site; }}
    }}
}}
"""


@pytest.mark.needs("nginx")
def test_a_batch_through_nginx_in_front_of_two_instances(folder, tmp_path, capsys) -> None:
    """The Elastic Beanstalk shape: nginx balancing two instances; every image answered once, both used."""
    from live_server import start_gunicorn, stop, wait_until

    with start_gunicorn(log_dir=tmp_path / "a") as a, start_gunicorn(log_dir=tmp_path / "b") as b:
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp_path, port=port, a=a.url.removeprefix("http://"),
                                          b=b.url.removeprefix("http://")))
        proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: requests.get(url + "/healthz", timeout=1).status_code == 200, proc, "nginx")
            out = tmp_path / "results.jsonl"
            code = main(["--server", url, "detect", str(folder), "--out", str(out)])
        finally:
            stop(proc)
        assert code == 1
        records = _records(out)
        assert records["group.jpg"]["boxes"] == 17 and records["not-a-photo.jpg"]["status"] == 415
        assert "images: 5 answered (3 ok, 2 errors)" in capsys.readouterr().err
        posts = '"method": "POST", "path": "/detect"'  # in the JSON access log
        served = [(log_dir / "gunicorn.log").read_text().count(posts) for log_dir in (tmp_path / "a", tmp_path / "b")]
        assert min(served) > 0, served


def test_routes_are_data_where_each_answer_keeps_its_boxes() -> None:
    from mysite.client.routes import route_for

    deepstack = {"success": True, "predictions": [{"x_min": 1, "y_min": 2, "x_max": 3, "y_max": 4}] * 2}
    assert route_for("v1/vision/face").count_boxes(deepstack) == 2
    assert route_for("/detect").count_boxes({"status": "ok", "result": [{"box": [0, 0, 1, 1]}]}) == 1
    assert route_for("detect").several and not route_for("/v1/vision/detection").several
    assert route_for("predict").count_boxes({"success": True, "predictions": [{"label": "cat"}]}) == 0
    assert route_for("/a/new/route").path == "/a/new/route" and not route_for("/a/new/route").several
