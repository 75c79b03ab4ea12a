"""The demo_request client against the real site under gunicorn on loopback."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from live_server import PROJECT, free_port
from loopback import reply, serve

from mysite.client import Client, ConnectFailed, HTTPError
from mysite.client.cli import main

DATA = Path(__file__).with_name("data")
GROUP = DATA / "group_17_faces.jpg"


def _yellow(pixel: np.ndarray) -> bool:
    b, g, r = (int(v) for v in pixel)
    return b < 110 and g > 170 and r > 170


def _assert_boxes_drawn(path: Path, detections: list[dict]) -> None:
    boxes = [d["box"] for d in detections]
    picture = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert picture is not None, f"{path} is not a decodable image"
    assert picture.shape[:2] == (482, 640)
    for x1, y1, x2, y2 in boxes:
        assert _yellow(picture[(y1 + y2) // 2, x1]), f"no box drawn at {[x1, y1, x2, y2]}"
        assert _yellow(picture[y2, (x1 + x2) // 2]), f"no box drawn at {[x1, y1, x2, y2]}"


def test_library_detect_finds_the_17_faces(live_server) -> None:
    faces = Client(live_server.url).detect(GROUP)
    assert len(faces) == 17
    assert all(len(f["box"]) == 4 for f in faces)


def test_cli_prints_the_answer_as_json_and_draws_a_png(live_server, tmp_path, capsys) -> None:
    out = tmp_path / "faces.png"
    code = main(["--server", live_server.url, "detect", str(GROUP), "--draw", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    answer = json.loads(captured.out)  # stdout is the answer and nothing else: a shell can pipe it to jq
    assert answer["status"] == "ok" and len(answer["result"]) == 17
    assert captured.err == f"wrote {out}\n"
    assert out.read_bytes().startswith(b"\x89PNG")
    _assert_boxes_drawn(out, answer["result"])


def test_cli_verbose_puts_status_and_headers_on_stderr(live_server, capsys) -> None:
    assert main(["--server", live_server.url, "/detect", str(GROUP), "--verbose"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["result"]) == 17
    status, headers = captured.err.splitlines()[:2]
    assert status == "status code: 200"
    assert json.loads(headers.removeprefix("headers: "))["Content-Type"] == "application/json"


@pytest.mark.slow
def test_cli_as_a_command_pipes_json_and_exits_by_the_answer(live_server, tmp_path) -> None:
    """The command a shell runs: JSON on stdout whatever the answer; the exit status says which it was."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mysite.client", "--server", live_server.url, *args],
                              cwd=PROJECT, capture_output=True, text=True, timeout=60)

    ok = run("detect", str(GROUP))
    assert ok.returncode == 0 and len(json.loads(ok.stdout)["result"]) == 17 and ok.stderr == ""
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture\n")
    refused = run("detect", str(text))
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["status"] == "unsupported media type"
    assert json.loads(refused.stdout)["reason"] == "unsupported_media"  # what a script tests, not the words
    assert "answered 415" in refused.stderr
    missing = run("nosuchroute", str(GROUP))
    assert missing.returncode == 1 and json.loads(missing.stdout) == {"status": "not found",
                                                                       "message": "route not found",
                                                                       "reason": "not_found"}
    unreachable = run("--server", f"http://127.0.0.1:{free_port()}", "--retries", "0", "detect", str(GROUP))
    assert unreachable.returncode == 3 and unreachable.stdout == "" and "could not connect" in unreachable.stderr
    assert run("detect").returncode == 2


def test_cli_server_from_environment(live_server, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MYSITE_SERVER", live_server.url)
    assert main(["detect", str(GROUP)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"


def test_cli_by_url_draws_on_the_servers_copy(live_server, image_server, tmp_path, capsys) -> None:
    out = tmp_path / "faces.jpg"
    code = main(["--server", live_server.url, "/detect", "--url", f"{image_server}/group_17_faces.jpg",
                 "--draw", str(out)])
    assert code == 0, capsys.readouterr()
    assert out.read_bytes().startswith(b"\xff\xd8")
    _assert_boxes_drawn(out, Client(live_server.url).detect(url=f"{image_server}/group_17_faces.jpg"))


def test_cli_canny_saves_the_edge_map(live_server, tmp_path, capsys) -> None:
    out = tmp_path / "edges.png"
    assert main(["--server", live_server.url, "/canny", str(GROUP), "--draw", str(out)]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["content_type"] == "image/png" and described["bytes"] > 1000
    edges = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert edges.ndim == 2 and set(np.unique(edges)) <= {0, 255} and edges.any()


def test_cli_http_errors_are_explained(live_server, tmp_path, capsys) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a picture at all, just some words\n")
    assert main(["--server", live_server.url, "/detect", str(text)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["status"] == "unsupported media type"
    assert "answered 415 unsupported media type: expected an image" in captured.err
    assert main(["--server", live_server.url, "/process", str(GROUP)]) == 1
    assert "answered 404 not found: route not found" in capsys.readouterr().err


def test_cli_usage_errors(tmp_path, capsys) -> None:
    assert main(["/detect"]) == 2
    assert main(["/detect", str(tmp_path / "missing.jpg")]) == 2
    assert "no such image file" in capsys.readouterr().err


def test_library_raises_http_error_with_the_servers_message(live_server) -> None:
    with pytest.raises(HTTPError) as info:
        Client(live_server.url).detect(b"%PDF-1.4 not an image")
    assert info.value.status == 415
    assert "PDF" in info.value.message


def _flaky_server(statuses: list[int]) -> AbstractContextManager[tuple[str, list[str]]]:
    """A loopback server answering the given statuses in turn, then 200 with an empty detection list."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        code = statuses.pop(0) if statuses else 200
        body = b'{"status": "ok", "result": []}' if code == 200 else b'{"status": "unavailable", "message": "busy"}'
        reply(h, code, {"Content-Type": "application/json"}, body)

    return serve({"/detect": answer})


def test_retries_a_busy_server_and_a_proxy_without_its_app_with_backoff() -> None:
    sleeps: list[float] = []
    with _flaky_server([502, 503, 503]) as (url, seen):
        assert Client(url, sleep=sleeps.append).detect(b"any bytes") == []
    assert len(seen) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_gateway_timeout_is_not_sent_again() -> None:
    """504: the work took too long behind the proxy; sending it again would take as long again."""
    with _flaky_server([504]) as (url, seen):
        with pytest.raises(HTTPError) as info:
            Client(url, sleep=lambda s: None).detect(b"any bytes")
    assert len(seen) == 1 and info.value.status == 504


def test_gives_up_after_the_last_retry_and_reports_the_error() -> None:
    with _flaky_server([503] * 10) as (url, seen):
        with pytest.raises(HTTPError) as info:
            Client(url, retries=2, sleep=lambda s: None).detect(b"any bytes")
    assert len(seen) == 3 and info.value.status == 503 and info.value.message == "busy"


def test_connection_refused_is_reported_at_once() -> None:
    sleeps: list[float] = []
    with pytest.raises(ConnectFailed, match="connection refused"):
        Client(f"http://127.0.0.1:{free_port()}", retries=3, sleep=sleeps.append).detect(b"x")
    assert sleeps == []


def test_aidemo_base64_round_trip_over_the_wire(live_server) -> None:
    r = requests.post(f"{live_server.url}/detect?output=base64", data=base64.b64encode(GROUP.read_bytes()))
    assert r.status_code == 200
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(r.content), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (482, 640, 3)


def _run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PROJECT / "examples" / name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_example_demo_request_reproduces_the_books_sequence(live_server, image_server, tmp_path) -> None:
    done = _run_example("demo_request.py", "--server", live_server.url,
                        "--url", f"{image_server}/astronaut.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    codes = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("status code:")]
    assert codes == ["404", "200", "400", "200", "405"]
    # The book's fields and words, then the machine-readable reason every error body carries.
    assert "content: {'status': 'not found', 'message': 'route not found', 'reason': 'not_found'}" in done.stdout
    assert ("content: {'status': 'bad request', 'message': 'Parameter url is not present', "
            "'reason': 'missing_image'}") in done.stdout
    assert ("content: {'status': 'failure', 'message': 'PUT method not supported for API', "
            "'reason': 'method_not_allowed'}") in done.stdout


@pytest.mark.slow
def test_example_demo_request_drawing_writes_the_picture(live_server, tmp_path) -> None:
    done = _run_example("demo_request_drawing.py", "--server", live_server.url, "--out", "faces.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote faces.png with 17 faces drawn" in done.stdout
    _assert_boxes_drawn(tmp_path / "faces.png", Client(live_server.url).detect(GROUP))


def test_a_model_that_is_not_loaded_is_reported_at_once() -> None:
    """The site's own 503 for a missing model lasts until someone installs it: no waiting and retrying."""

    from werkzeug.serving import make_server

    from mysite import create_app

    app = create_app({"MYSITE_LOG_LEVEL": "CRITICAL", "MYSITE_FACE_CASCADE": "/nonexistent/face.xml"})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    sleeps: list[float] = []
    try:
        with pytest.raises(HTTPError) as info:
            Client(f"http://127.0.0.1:{server.server_port}", sleep=sleeps.append).detect(GROUP)
    finally:
        server.shutdown()
    assert info.value.status == 503 and "MYSITE_FACE_CASCADE" in info.value.message
    assert info.value.reason == "model_not_loaded"  # what the client read to give up at once
    assert sleeps == []
