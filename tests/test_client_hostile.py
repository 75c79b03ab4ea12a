"""The site's client against a hostile or broken server (``testkit/client_peers.py``): every failure is a
``ClientError`` (exit 1 for an HTTP error, 3 for no usable answer), bounded in time and memory; a batch
records every image; redirects stay on the same host; drawing holds against any detections."""

from __future__ import annotations

import io
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from live_server import PROJECT
from PIL import Image, ImageDraw

from mysite.client import (
    AnswerTooLarge,
    Client,
    ClientError,
    ConnectFailed,
    HTTPError,
    NoAnswer,
    RedirectRefused,
    batch,
    drawing,
    printable,
)
from mysite.client.cli import main
from mysite.client.transport import WatchedAdapter, same_site
from testkit.client_peers import (
    Request,
    boxes,
    drip_body,
    drip_head,
    endless_json,
    endless_redirect,
    gzip_bomb,
    head,
    hostile_peer,
    interim,
    redirect,
    redirect_loop,
    respond,
    short_body,
)
from testkit.net import read_head

PHOTO = b"\xff\xd8\xff" + b"photo" * 100  # the peers never look inside
BOUND = 20.0  # seconds a call may take before the test calls it hung: generous, it is no speed test


def _png(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (40, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def _outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returned or raised, in a thread the test waits for at most ``BOUND`` seconds."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"still running after {BOUND:g} s"
    return box[0]


# --- 1. a batch records every image, whatever happens to one job ---

def _batch(tmp_path: Path, server: str, folder: Path) -> tuple[int, list[dict[str, Any]]]:
    out = tmp_path / "out.jsonl"
    options = batch.Options(server=server, endpoint="detect", concurrency=1, out=out, retries=0, quiet=True)
    code = _outcome(lambda: batch.run(options, [str(folder)], stdout=io.StringIO(), stderr=io.StringIO()))
    return code, [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("bad_first", [True, False])
def test_a_name_that_is_not_utf8_is_sent_and_recorded(tmp_path, bad_first) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    odd = b"\xff.png".decode("utf-8", "surrogateescape")  # as the file system hands it to Python
    # The walk goes in order of the names; "\ue000" sorts after the surrogate "\udcff".
    for name in [odd, *(("\ue000" if bad_first else "a") + f"{i}.png" for i in range(3))]:
        (folder / name).write_bytes(PHOTO)
    with hostile_peer(respond("200 OK", boxes(1))) as (url, seen):
        code, records = _batch(tmp_path, url, folder)
    assert code == 0 and len(records) == 4
    assert {r["status"] for r in records} == {200}
    assert str(folder / odd) in {r["path"] for r in records}
    assert any(b'filename="\xef\xbf\xbd.png"' in r.body for r in seen.requests)  # U+FFFD for the byte


def test_an_answer_too_deep_to_parse_is_recorded_as_it_came(tmp_path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in "abc":
        (folder / f"{name}.png").write_bytes(PHOTO)
    nested = b"[" * 100_000 + b"]" * 100_000  # deeper than Python's JSON parser goes
    with hostile_peer(respond("200 OK", nested)) as (url, _):
        code, records = _batch(tmp_path, url, folder)
    assert code == 0 and len(records) == 3
    assert {json.dumps(r["answer"]) for r in records} == {'{"content_type": "application/json", "bytes": 200000}'}


def test_an_exception_in_a_worker_is_recorded_and_the_thread_goes_on(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in "abcd":
        (folder / f"{name}.png").write_bytes(PHOTO)
    original = batch.Worker.records

    def records(self: batch.Worker, paths: list[str]) -> list[dict[str, Any]]:
        if paths[0].endswith("b.png"):
            raise RuntimeError("a fault in the client")
        return original(self, paths)

    monkeypatch.setattr(batch.Worker, "records", records)
    with hostile_peer(respond("200 OK", boxes(1))) as (url, _):
        code, records_out = _batch(tmp_path, url, folder)
    assert code == 1 and len(records_out) == 4
    failed = [r for r in records_out if r["status"] is None]
    assert len(failed) == 1 and failed[0]["path"].endswith("b.png")
    assert failed[0]["error_kind"] == "client fault" and "RuntimeError: a fault" in failed[0]["error"]


# --- 2. the answer's size is bounded ---

def test_an_endless_answer_is_refused_past_the_limit(tmp_path) -> None:
    with hostile_peer(endless_json) as (url, seen):
        outcome = _outcome(lambda: Client(url, retries=0, max_answer_bytes=2**20).detect(PHOTO))
    assert isinstance(outcome, AnswerTooLarge), outcome
    assert "more than the limit of 1048576 bytes" in str(outcome)
    assert seen.sent < 64 * 2**20  # the peer stopped when the client hung up, long before its cap


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    with hostile_peer(respond("200 OK", b" " * (4 * 2**20) + boxes(1))) as (url, _):
        outcome = _outcome(lambda: Client(url, retries=0, max_answer_bytes=2**20).detect(PHOTO))
    assert isinstance(outcome, AnswerTooLarge) and "declares 4194" in str(outcome)


def test_a_compression_bomb_is_refused_counting_decoded_bytes() -> None:
    bomb = gzip_bomb(64)
    with hostile_peer(respond("200 OK", bomb, headers={"Content-Encoding": "gzip"})) as (url, _):
        outcome = _outcome(lambda: Client(url, retries=0, max_answer_bytes=2**20).detect(PHOTO))
    assert isinstance(outcome, AnswerTooLarge), outcome
    assert len(bomb) < 2**20  # under the limit as sent: it is the decoded size that counts


def test_the_command_holds_its_memory_against_a_compression_bomb(tmp_path) -> None:
    """The command in a process of its own, so its peak memory is its own."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    # VmHWM, not ru_maxrss: that one keeps what the process had before exec, a copy of a large test worker.
    script = ("import sys\nfrom mysite.client.cli import main\ncode = main(sys.argv[1:])\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
              "print(int(hwm) // 1024, file=sys.stderr)\nsys.exit(code)\n")
    with hostile_peer(respond("200 OK", gzip_bomb(512), headers={"Content-Encoding": "gzip"})) as (url, _):
        done = subprocess.run([sys.executable, "-c", script, "detect", str(photo), "--server", url, "--retries", "0",
                               "--max-answer", "8"], capture_output=True, text=True, cwd=PROJECT, timeout=BOUND)
    *_, peak_mib = done.stderr.split()
    assert done.returncode == 3, done.stderr
    assert "more than the limit" in done.stderr
    assert int(peak_mib) < 200  # the interpreter and requests, plus one capped answer; not the 512 MiB


# --- 3. --timeout bounds a whole attempt ---

@pytest.mark.parametrize("answer", [drip_body(0.2), drip_head(0.2)], ids=["body", "head"])
@pytest.mark.slow
def test_a_dripping_answer_times_out_as_a_whole(answer) -> None:
    with hostile_peer(answer) as (url, _):
        outcome = _outcome(lambda: Client(url, retries=0, timeout=1.0).detect(PHOTO))
    assert isinstance(outcome, NoAnswer) and "within 1 s" in str(outcome), outcome
    assert not [t for t in threading.enumerate() if t.name == "client-deadline"]


# --- 4. a broken answer is a ClientError, and the command's exit status says "no answer" ---

@pytest.mark.parametrize("answer", [
    respond("200 OK", b"[" * 100_000 + b"]" * 100_000),
    respond("500 Internal Server Error", b"[" * 100_000 + b"]" * 100_000),
    short_body,
    respond("200 OK", b"not gzip at all", headers={"Content-Encoding": "gzip"}),
    redirect_loop,
    respond("503 Service Unavailable", b'{"status":"busy"}', headers={"Retry-After": "\xb2"}),
], ids=["deep", "deep-error", "short", "bad-gzip", "loop", "retry-after-superscript"])
def test_a_broken_answer_is_a_client_error(answer) -> None:
    with hostile_peer(answer) as (url, _):
        outcome = _outcome(lambda: Client(url, retries=1, backoff=0.01).detect(PHOTO))
    assert isinstance(outcome, ClientError), repr(outcome)


def test_the_command_exits_3_on_a_broken_answer(tmp_path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    with hostile_peer(respond("200 OK", b"not gzip at all", headers={"Content-Encoding": "gzip"})) as (url, _):
        code = _outcome(lambda: main(["detect", str(photo), "--server", url, "--retries", "0"]))
    assert code == 3
    assert "could not be decoded" in capsys.readouterr().err


# --- 5. redirects stay on the same host ---

def test_a_redirect_to_another_host_is_refused_and_nothing_is_sent_there() -> None:
    with hostile_peer(respond("200 OK", boxes(1)), host="127.0.0.2") as (elsewhere, there), \
            hostile_peer(redirect(elsewhere + "{path}")) as (url, here):
        outcome = _outcome(lambda: Client(url, retries=0, api_key="secret-key").detect(PHOTO))
        register = _outcome(lambda: Client(url, retries=0, api_key="secret-key").register("ann", [PHOTO]))
    assert isinstance(outcome, RedirectRefused) and isinstance(register, RedirectRefused)
    assert "127.0.0.2" in str(outcome)
    assert there.connections == 0
    assert len(here.requests) == 2


def test_the_command_exits_3_on_a_redirect_elsewhere(tmp_path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    with hostile_peer(respond("200 OK", boxes(1)), host="127.0.0.2") as (elsewhere, there), \
            hostile_peer(redirect(elsewhere + "{path}")) as (url, _):
        code = _outcome(lambda: main(["detect", str(photo), "--server", url, "--retries", "0"]))
    assert code == 3 and there.connections == 0
    assert "another host: http://127.0.0.2" in capsys.readouterr().err


def test_a_redirect_on_the_same_host_sends_the_photo_again() -> None:
    def answer(request: Request) -> list[bytes]:
        if request.path.startswith("/detect"):
            return redirect("/moved{path}", "301 Moved Permanently")(request)  # type: ignore[return-value]
        good = request.method == "POST" and PHOTO in request.body and request.headers.get("x-api-key") == "k"
        return respond("200 OK" if good else "400 Bad Request", boxes(2))(request)  # type: ignore[return-value]

    with hostile_peer(answer) as (url, seen):
        found = _outcome(lambda: Client(url, retries=0, api_key="k").detect(PHOTO, min_neighbors=3))
    assert found == [{"box": [1, 2, 3, 4]}] * 2
    assert [r.method for r in seen.requests] == ["POST", "POST"]
    assert seen.requests[1].path == "/moved/detect?min_neighbors=3"


def test_which_redirects_stay_on_the_same_host() -> None:
    assert same_site("http://a.example:5000/detect", "http://A.example:5000/x")
    assert same_site("http://a.example/detect", "https://a.example/detect")  # the upgrade, its port with it
    assert not same_site("https://a.example/detect", "http://a.example/detect")
    assert not same_site("http://a.example:5000/detect", "http://a.example:5001/detect")
    assert not same_site("http://a.example/detect", "http://b.example/detect")
    assert not same_site("http://a.example/detect", "http://a.example.evil/detect")
    assert same_site("http://a.example:8000/detect", "https://a.example:8000/detect")
    assert same_site("http://a.example:8000/detect", "https://a.example/detect")
    assert not same_site("http://a.example/detect", "https://a.example:8443/detect")  # another service, maybe


# --- 6, 7. drawing holds against any detections ---

class _Rectangles:
    """Pillow's rectangle, recording each call (and drawing only what a picture can hold)."""

    def __init__(self, monkeypatch) -> None:
        self.calls: list[tuple[float, ...]] = []
        real = ImageDraw.ImageDraw.rectangle

        def rectangle(draw: ImageDraw.ImageDraw, xy: Any, *args: Any, **kwargs: Any) -> None:
            self.calls.append(tuple(float(v) for v in xy))
            if all(abs(float(v)) < 10_000 for v in xy):
                real(draw, xy, *args, **kwargs)

        monkeypatch.setattr(ImageDraw.ImageDraw, "rectangle", rectangle)


def test_huge_boxes_are_clipped_to_the_picture(tmp_path, monkeypatch) -> None:
    drawn = _Rectangles(monkeypatch)
    found = [{"box": [0, 0, 1e9, 1e9]}, {"box": [-1e308, 5, 1e308, 1e308]}, {"box": [0, 0, 10**30, 10**30]},
             {"box": [3, 4, 20, 30], "landmarks": {"eye": [1e12, -1e12], "nose": [10, 10]}}]
    skipped = _outcome(lambda: drawing.draw_file(_png(64, 48), found, tmp_path / "out.png"))
    assert skipped == 0 and len(drawn.calls) == 4
    for x1, y1, x2, y2 in drawn.calls:
        assert -4 <= x1 <= x2 <= 64 + 4 and -4 <= y1 <= y2 <= 48 + 4
    assert drawn.calls[3] == (3, 4, 20, 30)
    with Image.open(tmp_path / "out.png") as out:
        assert out.getpixel((0, 0)) == drawing.BOX_COLOR  # the clipped box's corner shows


def test_malformed_detections_are_skipped_and_counted(tmp_path, monkeypatch) -> None:
    drawn = _Rectangles(monkeypatch)
    found = [{"box": ["a", 1, 2, 3]}, {"box": [None, 1, 2, 3]}, {"box": [1, 2, 3, 4], "landmarks": 5},
             {"box": [1, 2, 3, 4], "landmarks": {"a": 5}}, 5, None, {"box": [0, 0, float("nan"), 5]},
             {"box": [0, 0, float("inf"), 5]}, {"box": [1, 2, 3]}, {"box": [1, 2, 30, 40], "confidence": 10**400},
             {"x_min": 1, "y_min": 2, "x_max": 9, "y_max": 9, "label": "z" * 10_000}]
    skipped = _outcome(lambda: drawing.draw_file(_png(), found, tmp_path / "out.png"))
    assert skipped == 9
    assert drawn.calls[0] == (1, 2, 30, 40)  # the two good boxes (and their label tabs)
    assert (1, 2, 9, 9) in drawn.calls


def test_the_command_draws_what_it_can_and_says_what_it_skipped(tmp_path, capsys) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png())
    answer = json.dumps({"status": "ok", "result": [5, {"box": "a"}, {"box": [1, 2, 3, 4], "name": None},
                                                    {"box": [0, 0, 1e9, 1e9]}]}).encode()
    with hostile_peer(respond("200 OK", answer)) as (url, _):
        code = _outcome(lambda: main(["recognize", str(photo), "--server", url, "--retries", "0",
                                      "--draw", str(tmp_path / "out.png")]))
    assert code == 0 and (tmp_path / "out.png").is_file()
    assert "2 of 4 detections could not be drawn" in capsys.readouterr().err


# --- 8, 9. faces answers, and a server's message on the terminal ---

@pytest.mark.parametrize("body", [b'{"status":"ok"}', b"not json", b'{"faces": 5, "deleted": "x"}'])
@pytest.mark.parametrize("command", [["faces"], ["forget", "ann"]])
def test_faces_commands_say_an_odd_answer_is_not_theirs(body, command, capsys) -> None:
    with hostile_peer(respond("200 OK", body)) as (url, _):
        code = _outcome(lambda: main([*command, "--server", url, "--retries", "0"]))
    assert code == 3
    assert "did not" in capsys.readouterr().err


def test_a_servers_message_reaches_the_terminal_with_control_characters_escaped(tmp_path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    body = json.dumps({"status": "not ok", "message": "\x1b[2J\x1b]0;owned\x07gone"}).encode()
    with hostile_peer(respond("400 Bad Request", body)) as (url, _):
        code = _outcome(lambda: main(["detect", str(photo), "--server", url, "--retries", "0"]))
    err = capsys.readouterr().err
    assert code == 1
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b[2J\\x1b]0;owned\\x07gone" in err


# --- 10. a redirect's body is never read; its Location is read as urllib3 reads it ---

def test_a_redirects_endless_body_is_not_read() -> None:
    with hostile_peer(endless_redirect) as (url, seen):
        outcome = _outcome(lambda: Client(url, retries=0, timeout=3.0, max_answer_bytes=2**20).detect(PHOTO))
    assert isinstance(outcome, ClientError) and not isinstance(outcome, NoAnswer), repr(outcome)
    assert "redirected more than" in str(outcome)
    assert seen.sent < 64 * 2**20  # each redirect's connection dropped unread, not drained


def test_a_backslash_in_a_location_does_not_lead_to_another_host() -> None:
    with hostile_peer(respond("200 OK", boxes(1)), host="127.0.0.2") as (elsewhere, there), \
            hostile_peer(lambda r: []) as (url, _):
        port_there, here = elsewhere.rsplit(":", 1)[1], url.removeprefix("http://")
        location = f"http://127.0.0.2:{port_there}\\@{here}/x"
        with hostile_peer(redirect(location)) as (start, _):
            outcome = _outcome(lambda: Client(start, retries=0, api_key="secret-key").detect(PHOTO))
    assert isinstance(outcome, RedirectRefused), repr(outcome)
    assert there.connections == 0
    assert not same_site("http://127.0.0.1:9300/d", "http://127.0.0.2:9300\\@127.0.0.1:9300/x")


@pytest.mark.parametrize("location", ["http://[::1:9302/x", "http://[zz]/x", "/a\x9bb", "/caf\xc3", "http://h:99999/"],
                         ids=["open-bracket", "not-ipv6", "c1-byte", "bad-utf8", "port"])
def test_a_malformed_location_is_a_client_error(location) -> None:
    with hostile_peer(redirect(location)) as (url, seen):
        outcome = _outcome(lambda: Client(url, retries=0).detect(PHOTO))
    assert isinstance(outcome, RedirectRefused), repr(outcome)
    assert len(seen.requests) == 1


# --- 11. interim answers are skipped, never taken for the answer ---

def test_interim_answers_are_skipped() -> None:
    whole = head("200 OK", {"Content-Type": "application/json"}, len(boxes(1))) + boxes(1)
    with hostile_peer(interim(103, 102, 100, 199, then=whole)) as (url, _):
        found = _outcome(lambda: Client(url, retries=0).detect(PHOTO))
    assert found == [{"box": [1, 2, 3, 4]}]


@pytest.mark.parametrize("statuses", [(101,), (103,) * 50], ids=["switching", "endless-103"])
def test_only_interim_answers_are_a_client_error(statuses, tmp_path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    with hostile_peer(interim(*statuses)) as (url, _):
        outcome = _outcome(lambda: Client(url, retries=0).request("POST", "/detect", image=PHOTO))
        code = _outcome(lambda: main(["detect", str(photo), "--server", url, "--retries", "0"]))
    assert isinstance(outcome, ClientError), repr(outcome)
    assert code == 3 and "gave no answer" in capsys.readouterr().err


# --- 12. the upload is bounded by --timeout, not by the connect timeout ---

@pytest.mark.slow
def test_a_server_pausing_while_it_reads_the_photo_gets_it() -> None:
    photo = PHOTO + b"\0" * (12 * 2**20)  # more than the socket buffers hold
    with hostile_peer(respond("200 OK", boxes(1)), read_pause=1.0) as (url, seen):
        found = _outcome(lambda: Client(url, retries=0, timeout=10.0, connect_timeout=0.3).detect(photo))
    assert found == [{"box": [1, 2, 3, 4]}], repr(found)
    assert len(seen.requests) == 1 and len(seen.requests[0].body) > len(photo)


# --- 13. proxies: a SOCKS manager is left as it is ---

def test_a_socks_proxy_keeps_its_own_connections(monkeypatch) -> None:
    """PySocks is not installed: a stand-in for urllib3's SOCKSProxyManager, which requests builds."""
    socks_pools = {"http": object, "https": object}

    class FakeSocksManager:
        def __init__(self, proxy: str, **kwargs: Any) -> None:
            self.pool_classes_by_scheme = socks_pools

    import requests.adapters
    monkeypatch.setattr(requests.adapters, "SOCKSProxyManager", FakeSocksManager)
    adapter = WatchedAdapter()
    assert adapter.proxy_manager_for("socks5h://127.0.0.1:1").pool_classes_by_scheme is socks_pools
    assert adapter.proxy_manager_for("http://127.0.0.1:1").pool_classes_by_scheme is not socks_pools


# --- 14. the command's options and --draw are checked before anything is sent ---

@pytest.mark.parametrize("option", [["--timeout", "0"], ["--timeout", "-1"], ["--timeout", "nan"], ["--timeout", "inf"],
                                    ["--timeout", "1e300"], ["--retries", "-1"], ["--max-answer", "0"]])
@pytest.mark.parametrize("command", [["detect", "PHOTO"], ["faces"]])
def test_a_bad_option_value_is_a_usage_error(option, command, tmp_path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    argv = [str(photo) if word == "PHOTO" else word for word in command]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--server", "http://127.0.0.1:9", *option])
    assert exit_.value.code == 2 and f"argument {option[0]}: wants" in capsys.readouterr().err


@pytest.mark.parametrize("options", [{"timeout": 0}, {"timeout": float("nan")}, {"timeout": 1e300},
                                     {"retries": -1}, {"max_answer_bytes": 0}, {"connect_timeout": float("inf")}])
def test_the_library_refuses_bad_options_too(options) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Client("http://127.0.0.1:9", **options)


@pytest.mark.parametrize("draw", ["missing/out.png", ".", "out.xyz"], ids=["no-folder", "folder", "suffix"])
def test_draw_is_checked_before_sending(draw, tmp_path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    with hostile_peer(respond("200 OK", boxes(1))) as (url, seen):
        code = _outcome(lambda: main(["detect", str(photo), "--server", url, "--draw", str(tmp_path / draw)]))
    assert code == 2 and seen.connections == 0
    assert "error: --draw" in capsys.readouterr().err


@pytest.mark.parametrize("options", [["--server", "URL", "--retries", "0"], ["--serv", "URL", "--retr", "0"],
                                     ["--server=URL", "--time", "5"]], ids=["named", "abbreviated", "joined"])
def test_a_faces_command_after_options_is_the_faces_command(tmp_path, capsys, options) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    with hostile_peer(respond("200 OK", b'{"status":"ok","name":"ann","count":1}')) as (url, seen):
        argv = [o.replace("URL", url) for o in options]
        code = _outcome(lambda: main([*argv, "register", "ann", str(photo)]))
    assert code == 0, capsys.readouterr().err
    assert [(r.method, r.path) for r in seen.requests] == [("POST", "/faces/ann")]


def test_no_concurrency_is_a_usage_error_not_the_default(tmp_path, capsys) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    assert main(["detect", str(photo), str(photo), "-c", "0"]) == 2
    assert "--concurrency goes from 1" in capsys.readouterr().err


def test_cookies_are_kept_as_a_session_keeps_them() -> None:
    # A load balancer's stickiness, or a proxy's gate: the second request carries what the first was given.
    def gate(request):
        if "gate=1" in request.headers.get("cookie", ""):
            return [head("200 OK", {"Content-Type": "application/json"}, len(boxes(1))) + boxes(1)]
        return [head("302 Found", {"Location": "/detect", "Set-Cookie": "gate=1; Path=/"}, 0)]

    with hostile_peer(gate) as (url, seen):
        outcome = _outcome(lambda: Client(url, retries=0).detect(PHOTO))
    assert outcome == [{"box": [1, 2, 3, 4]}], outcome
    assert len(seen.requests) == 2


@pytest.mark.parametrize("userinfo, secret", [("ann:s3cret", "s3cret"), ("tok3n", "tok3n"), ("ann:p@ss", "p@ss"),
                                             ("ann:pa%20ss", "pa")])
def test_a_password_in_the_server_url_is_sent_but_never_shown(userinfo, secret) -> None:
    import base64

    with hostile_peer(respond("500 Internal Server Error", b'{"message":"broken"}')) as (url, seen):
        given = url.replace("http://", f"http://{userinfo}@")
        outcome = _outcome(lambda: Client(given, retries=0).detect(PHOTO))
    assert isinstance(outcome, HTTPError) and secret not in str(outcome), outcome
    sent = seen.requests[0].headers["authorization"]
    user, _, password = userinfo.partition(":")
    expected = f"{user}:{password}".replace("%20", " ")
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == expected
    assert "s3cret" not in str(ConnectFailed("could not connect to http://ann:s3cret@127.0.0.1:1: refused"))


# --- 15. what reaches the terminal ---

def test_an_error_without_a_status_shows_the_reason_phrase() -> None:
    with hostile_peer(respond("500 Internal Server Error", b'{"message":"broken"}')) as (url, _):
        outcome = _outcome(lambda: Client(url, retries=0).detect(PHOTO))
    assert isinstance(outcome, HTTPError)
    assert "500 Internal Server Error: broken" in str(outcome) and "None" not in str(outcome)


def test_format_characters_are_escaped() -> None:
    assert printable("a\u202eb\u200bc\u2028d\x1be") == "a\\u202eb\\u200bc\\u2028d\\x1be"
    assert printable("café ☕ 日本") == "café ☕ 日本"


TLS = Path(__file__).resolve().parent.parent / "testkit" / "tls" / "self_signed.pem"


def _tls_peer(first: str) -> tuple[socket.socket, list[int]]:
    """A TLS server on loopback with a certificate no one vouches for; its first connection is ``first``:
    "cut" (closed mid-handshake), else served. Returns the listener and a list that counts connections."""
    listener = socket.create_server(("127.0.0.1", 0))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS)
    connections: list[int] = []

    def serve() -> None:
        while len(connections) < 8:  # bounded: a few connections at most, then the listener is closed
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(1)
            if first == "cut" and len(connections) == 1:
                conn.close()
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    _read_whole(tls)  # unread bytes at close would reset the connection under the answer
                    tls.sendall(head("200 OK", {"Content-Type": "application/json"}, len(boxes(1))) + boxes(1))
            except (OSError, ssl.SSLError):
                pass  # the client refused the certificate

    threading.Thread(target=serve, daemon=True).start()
    return listener, connections


def _read_whole(sock: socket.socket) -> None:
    """A request's head and its body, by its Content-Length (the photo is small)."""
    data = read_head(sock) or b""
    head_part, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head_part.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < min(length, 1 << 20):  # bounded: a small photo
        piece = sock.recv(65536)
        if not piece:
            return
        body += piece


def _against_tls(first: str) -> tuple[Any, int]:
    """What ``detect`` gives against ``_tls_peer(first)`` with three retries, and how many connections it made."""
    listener, connections = _tls_peer(first)
    try:
        url = f"https://127.0.0.1:{listener.getsockname()[1]}"
        outcome = _outcome(lambda: Client(url, retries=3, backoff=0).detect(PHOTO))
    finally:
        listener.close()
    return outcome, len(connections)


def test_a_certificate_refused_is_reported_at_once_not_retried() -> None:
    outcome, connections = _against_tls("serve")
    assert isinstance(outcome, ConnectFailed) and "certificate was refused" in str(outcome), outcome
    assert connections == 1


def test_a_handshake_cut_short_is_retried_as_a_dropped_connection(monkeypatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(TLS))  # trusted this time
    outcome, connections = _against_tls("cut")
    assert outcome == [{"box": [1, 2, 3, 4]}], outcome
    assert connections == 2
