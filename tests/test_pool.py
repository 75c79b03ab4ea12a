"""The CV process pool under the Procfile's gunicorn: one queue per instance, deadlines that hold by
construction, memory that a request cannot take from the next one, and a /healthz that answers."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from eb_nginx import eb_nginx, nginx_bundle
from live_server import start_gunicorn
from PIL import Image
from tests_helpers import require

from testkit.net import port_of, request

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.slow


def scan_bomb(size: int, width: int = 8000, height: int = 5000) -> bytes:
    """A progressive JPEG whose last scan is repeated until the file is ``size`` bytes: every repeat is
    a full pass of the decoder over the image, so its cost grows with the bytes, not the pixels."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 130, 140)).save(buf, "JPEG", progressive=True, quality=50)
    data = buf.getvalue()
    start = data.rindex(b"\xff\xda")  # the last scan: from its SOS marker to the end of image
    end = data.rindex(b"\xff\xd9")
    scan = data[start:end]
    return data[:end] + scan * max(1, (size - len(data)) // len(scan)) + data[end:]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return scan_bomb(1_000_000)


@pytest.fixture(scope="module")
def group() -> bytes:
    return (DATA / "group_17_faces.jpg").read_bytes()


def _post(url: str, data: bytes, path: str = "/detect", timeout: float = 60) -> requests.Response:
    return requests.post(url + path, files={"image": ("photo.jpg", data)}, timeout=timeout)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_a_scan_bomb_is_stopped_at_the_work_deadline_and_the_site_keeps_serving(bomb, group) -> None:
    # The header walk refuses a JPEG of over 256 scans at once; lifted here, the deadline is the bound.
    env = {"MYSITE_WORK_DEADLINE": "2", "MYSITE_MAX_SCANS": "1000000"}
    with start_gunicorn(env) as server:
        health: list[float] = []
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                t = time.monotonic()
                r = requests.get(server.url + "/healthz", timeout=5)
                assert r.status_code == 200
                health.append(time.monotonic() - t)
                time.sleep(0.1)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            t = time.monotonic()
            with ThreadPoolExecutor(4) as ex:  # more bombs than processes: two wait their turn, then run
                answers = list(ex.map(lambda _: _post(server.url, bomb), range(4)))
            took = time.monotonic() - t
        finally:
            stop.set()
            prober.join()
        for r in answers:
            assert r.status_code == 503, r.text
            assert r.json()["reason"] == "timeout" and "MYSITE_WORK_DEADLINE" in r.json()["message"]
        assert took < 2 * 2 + 3  # two rounds of the deadline, and some slack
        assert health and max(health) < 1.0
        after = _post(server.url, group)  # the killed processes were replaced
        assert after.status_code == 200 and len(after.json()["result"]) == 17
        queue = requests.get(server.url + "/healthz", timeout=5).json()["queue"]
        assert queue["processes"] >= 1 and queue["killed"] == 4 and queue["replaced"] == 4


def test_a_crowd_waits_its_turn_in_one_queue_and_nobody_is_turned_away(group) -> None:
    clients, each = 8, 3
    # More clients than processes, and a deadline no shared test machine reaches: every one is served.
    with start_gunicorn({"MYSITE_QUEUE_DEADLINE": "120"}) as server:
        with ThreadPoolExecutor(clients) as ex:
            answers = list(ex.map(lambda _: [_code(_post(server.url, group)) for _ in range(each)],
                                  range(clients)))
        codes = [c for row in answers for c in row]
        assert codes == [200] * (clients * each)
        queue = requests.get(server.url + "/healthz", timeout=5).json()["queue"]
        assert queue["refused"] == 0 and queue["served"] >= clients * each


@pytest.mark.parametrize("front", ["none", "eb-nginx"])
@pytest.mark.parametrize("victim", ["127.0.0.10", "127.0.0.9"])
def test_a_client_that_keeps_many_jobs_queued_does_not_hold_the_others_behind_them(bomb, group, victim, front,
                                                                                   tmp_path) -> None:
    # One process; one client (127.0.0.9) queues four jobs of 2 s each (scan bombs stopped at the work
    # deadline). Another client's photo takes the next turn, not the fifth; the control sends it from the
    # same address, where it waits behind all four. Behind Elastic Beanstalk's nginx every request comes
    # from 127.0.0.1, and its client is the one nginx names in X-Forwarded-For.
    env = {"MYSITE_CV_PROCESSES": "1", "MYSITE_QUEUE_DEADLINE": "30", "MYSITE_WORK_DEADLINE": "2",
           "MYSITE_MAX_SCANS": "1000000"}
    with start_gunicorn(env) as server, ThreadPoolExecutor(4) as ex, ExitStack() as stack:
        port = port_of(server.url)
        if front == "eb-nginx":
            require("nginx")
            port = stack.enter_context(eb_nginx(nginx_bundle(tmp_path), port, {}))
        bombs = [ex.submit(request, port, "POST", "/detect", bomb, "image/jpeg", 60, "127.0.0.9")]
        time.sleep(0.5)  # the first is running: three more wait behind it
        bombs += [ex.submit(request, port, "POST", "/detect", bomb, "image/jpeg", 60, "127.0.0.9") for _ in range(3)]
        time.sleep(0.5)
        t = time.monotonic()
        status, _ = request(port, "POST", "/detect", group, "image/jpeg", 60, victim)
        waited = time.monotonic() - t
        assert [b.result()[0] for b in bombs] == [503] * 4
    assert status == 200
    if victim == "127.0.0.9":
        assert waited > 5, waited  # behind the three still queued: about 7 s
    else:
        assert waited < 3.5, waited  # behind the one running: about 1.5 s


def test_clients_with_long_jobs_leave_a_process_to_one_whose_jobs_are_short(bomb, group) -> None:
    # Two processes; two clients (127.0.0.9, 127.0.0.11) keep a 4 s job each in flight (scan bombs stopped at
    # the work deadline), so each used to hold a process and another client's photo waited for one of them
    # to end. Past its first photo, that client finds the process kept for it.
    env = {"MYSITE_CV_PROCESSES": "2", "MYSITE_QUEUE_DEADLINE": "30", "MYSITE_WORK_DEADLINE": "4",
           "MYSITE_MAX_SCANS": "1000000"}
    stop = threading.Event()
    with start_gunicorn(env) as server, ThreadPoolExecutor(2) as ex:
        port = port_of(server.url)

        def keep_busy(source: str) -> list[int]:
            codes = []
            while not stop.is_set() and len(codes) < 10:  # bounded: 10 jobs of 4 s at most
                codes.append(request(port, "POST", "/detect", bomb, "image/jpeg", 60, source)[0])
            return codes

        busy = [ex.submit(keep_busy, source) for source in ("127.0.0.9", "127.0.0.11")]
        time.sleep(0.5)
        waits = []
        try:
            for _ in range(8):
                started = time.monotonic()
                assert request(port, "POST", "/detect", group, "image/jpeg", 60, "127.0.0.10")[0] == 200
                waits.append(time.monotonic() - started)
                time.sleep(max(0.0, 1 - waits[-1]))
        finally:
            stop.set()
        assert all(codes and set(codes) == {503} for codes in (b.result() for b in busy))
    assert max(waits[1:]) < 1.5, waits  # the first waits for a job to end (4 s at most); the rest, for none


@pytest.mark.parametrize("share", ["1", "0"])
def test_behind_nginx_a_clients_requests_past_its_share_wait_without_a_thread(bomb, share, tmp_path) -> None:
    # Behind Elastic Beanstalk's nginx every request is 127.0.0.1's. Four threads; a client (127.0.0.9, named
    # in X-Forwarded-For) may hold one, with four requests waiting for it. It sends six jobs of 2 s at once,
    # to one CV process: one runs, four wait without a thread (parked, their bodies unread), and the sixth is
    # answered 503 busy at once. Another client finds a thread free. The control (no share) holds all four.
    env = {"MYSITE_CV_PROCESSES": "1", "MYSITE_QUEUE_DEADLINE": "30", "MYSITE_WORK_DEADLINE": "2",
           "MYSITE_MAX_SCANS": "1000000", "MYSITE_THREADS": "4", "MYSITE_CLIENT_THREADS": share}
    require("nginx")
    with start_gunicorn(env, log_dir=tmp_path) as server, eb_nginx(nginx_bundle(tmp_path), port_of(server.url), {}) \
            as port, ThreadPoolExecutor(6) as ex:
        bombs = [ex.submit(request, port, "POST", "/detect", bomb, "image/jpeg", 60, "127.0.0.9") for _ in range(6)]
        time.sleep(0.5)
        started = time.monotonic()
        other = request(port, "GET", "/healthz", timeout=30, source="127.0.0.10")
        waited = time.monotonic() - started
        answers = [(status, json.loads(body)) for status, body in (b.result() for b in bombs)]
    assert other[0] == 200
    assert {status for status, _ in answers} == {503}, answers
    reasons = sorted(body["reason"] for _, body in answers)
    # The access log says whose share each request took (none with the share off).
    logged = [json.loads(line) for line in (tmp_path / "gunicorn.log").read_text().splitlines() if line.startswith("{")]
    clients = sorted((line["path"], line.get("client")) for line in logged if line.get("forwarded_for"))
    assert clients == ([("/detect", None)] * 6 + [("/healthz", None)] if share == "0" else
                       [("/detect", "127.0.0.9")] * 6 + [("/healthz", "127.0.0.10")]), clients
    if share == "0":
        assert reasons == ["timeout"] * 6
        assert waited > 1, waited  # for the first job's thread: 2 s of work
        return
    assert reasons == ["busy"] + ["timeout"] * 5, answers
    assert "127.0.0.9" in next(body["message"] for _, body in answers if body["reason"] == "busy")
    assert waited < 1, waited


def test_past_the_queue_deadline_a_request_is_told_busy_with_retry_after(bomb, group) -> None:
    env = {"MYSITE_CV_PROCESSES": "1", "MYSITE_QUEUE_DEADLINE": "0.5", "MYSITE_WORK_DEADLINE": "3",
           "MYSITE_MAX_SCANS": "1000000"}  # the bomb reaches the process (the header walk would refuse it)
    with start_gunicorn(env) as server:
        with ThreadPoolExecutor(1) as ex:
            running = ex.submit(_post, server.url, bomb)
            time.sleep(0.5)
            t = time.monotonic()
            r = _post(server.url, group)
            waited = time.monotonic() - t
            assert running.result().status_code == 503
        assert r.status_code == 503 and r.json()["reason"] == "busy", r.text
        assert r.headers["Retry-After"] == "1" and "MYSITE_QUEUE_DEADLINE" in r.json()["message"]
        assert 0.4 < waited < 2.0
        assert _post(server.url, group).status_code == 200


def test_a_request_over_the_memory_limit_fails_alone_and_its_process_is_replaced(group) -> None:
    big = io.BytesIO()
    Image.new("RGB", (6000, 4000), (10, 200, 30)).save(big, "PNG")  # 72 MB decoded, 100 KB sent
    env = {"MYSITE_CV_MEMORY_MB": "40", "MYSITE_REQUEST_MEMORY_MB": "2000", "MYSITE_CV_PROCESSES": "1"}
    with start_gunicorn(env) as server:
        r = _post(server.url, big.getvalue(), path="/detect?detector=yunet")
        assert r.status_code == 413 and "MYSITE_CV_MEMORY_MB" in r.json()["message"], r.text
        after = _post(server.url, group)
        assert after.status_code == 200 and len(after.json()["result"]) == 17
        assert requests.get(server.url + "/healthz", timeout=5).json()["queue"]["replaced"] >= 1


def test_the_pool_leaves_with_the_master_even_when_it_is_killed(group) -> None:
    with start_gunicorn() as server:
        assert _post(server.url, group).status_code == 200
        master = server.pid
        family = [master, *_children(master)]
        family += [g for c in family[1:] for g in _children(c)]
        assert len(family) >= 5  # master, 1 worker, the dispatcher and its processes
        dispatcher = next(c for c in _children(master) if _children(c))
        socket_path = _listening_path(dispatcher)
        assert "mysite-pool-" in socket_path and os.path.exists(socket_path)
        os.kill(master, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in family):
            time.sleep(0.1)
        assert not [p for p in family if _alive(p)]
        assert not os.path.exists(os.path.dirname(socket_path))  # nothing left in the temporary folder


def _listening_path(pid: int) -> str:
    """The path of the Unix socket process ``pid`` listens on (from /proc)."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and f"socket:[{fields[6]}]" in inodes and fields[5] == "01":  # listening
            return fields[7]
    raise AssertionError(f"process {pid} listens on no Unix socket with a path")


def test_a_dispatcher_killed_is_started_again_by_the_master(group) -> None:
    with start_gunicorn({"MYSITE_CV_PROCESSES": "1"}) as server:
        assert _post(server.url, group).status_code == 200
        dispatcher = next(c for c in _children(server.pid) if _children(c))  # the master's child that has children
        with ThreadPoolExecutor(3) as clients:  # killed with one job running and two waiting
            held = [clients.submit(_post, server.url, group) for _ in range(3)]
            deadline = time.monotonic() + 20
            while requests.get(server.url + "/healthz", timeout=5).json()["queue"]["waiting"] < 2:
                assert time.monotonic() < deadline, "the three requests never queued"
                time.sleep(0.01)
            os.kill(dispatcher, signal.SIGKILL)
            lost = [f.result() for f in held]
        assert {r.status_code for r in lost} <= {200, 503}, [r.text for r in lost]
        assert all("retry" in r.json()["message"] for r in lost if r.status_code == 503), [r.text for r in lost]
        answers = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the master looks after it once a second
            r = _post(server.url, group)
            answers.append(r.status_code)
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
            time.sleep(0.2)
        assert answers[-1] == 200, answers
        assert len(_post(server.url, group).json()["result"]) == 17
        health = requests.get(server.url + "/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["queue"]["processes"] == 1, health.text
        assert f"dispatcher (pid {dispatcher}) has gone" in server.log.read_text()
        gauges = requests.get(server.url + "/metrics", timeout=5).text
        assert "mysite_queue_depth 0.0" in gauges and "mysite_jobs_running 0.0" in gauges, gauges


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return status != "Z"


def _code(r: requests.Response) -> int | str:
    return r.status_code if r.status_code == 200 else f"{r.status_code} {r.text}"


def _stat(pid: int) -> tuple[int, int]:
    """Minor page faults, and resident anonymous memory in bytes, of process ``pid``."""
    faults = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return faults, int(status["RssAnon"].split()[0]) * 1024


def test_a_web_worker_keeps_freed_heap_for_the_next_upload_within_its_bound() -> None:
    from mysite.server import memory
    from testkit import compose

    photo, _ = compose.build_jpeg()  # the 12 MP composition, 1.7 MB: its upload churns a few MB of heap
    with start_gunicorn() as server:
        (web,) = [p for p in _children(server.pid) if not _children(p)]  # the dispatcher is the parent of the pool
        for _ in range(4):  # a thread's first upload grows the heap it uses (there are two)
            assert _post(server.url, photo).status_code == 200
        faults, between = [], []
        for _ in range(7):
            before = _stat(web)[0]
            assert _post(server.url, photo).status_code == 200
            faults.append(_stat(web)[0] - before)
            between.append(_stat(web)[1])
        kept = max(between)  # what it holds between uploads, one at a time: a single sample varies by megabytes
        # Left to glibc, most uploads faulted hundreds to about 1,000 pages (4 KB) back in.
        assert sorted(faults)[3] < 150, faults  # the median
        with ThreadPoolExecutor(8) as ex:  # eight at once grow it past what it keeps: trimmed back after
            assert {r.status_code for r in ex.map(lambda _: _post(server.url, photo), range(8))} == {200}
        end = time.monotonic() + 5  # the trim runs when the last answer's close does, after the client has it
        while _stat(web)[1] - kept > memory.WEB_KEEP and time.monotonic() < end:
            time.sleep(0.05)
        assert _stat(web)[1] - kept <= memory.WEB_KEEP, (_stat(web)[1] - kept) >> 20
