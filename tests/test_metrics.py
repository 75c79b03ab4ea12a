"""Operators' view: /metrics counted across gunicorn's workers, request ids in answers and logs, MYSITE_METRICS."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from tests_helpers import multipart

from mysite.errors import ApiError
from mysite.server import metrics
from mysite.server.concurrency import Gate
from mysite.settings import SettingsError

KEY = "metrics-test-key-0123456789"
NEW_ID = re.compile(r"[0-9a-f]{32}")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def access_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def wait_for(check, seconds: float = 10.0):
    """Poll ``check()`` until it returns something true (bounded); that value, or the last one."""
    deadline = time.monotonic() + seconds
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """The Procfile's gunicorn with two workers, its metrics folder holding a stale file of an earlier run."""
    from live_server import start_gunicorn

    base = tmp_path_factory.mktemp("metrics")
    folder = base / "prom"
    folder.mkdir()
    stale = MmapedDict(str(folder / "counter_99999.db"))
    stale.write_value(mmap_key("mysite_http_requests", "mysite_http_requests_total", ["route", "method", "status"],
                               ["/healthz", "GET", "200"], "stale"), 1000.0, 0.0)
    stale.close()
    with start_gunicorn({"PROMETHEUS_MULTIPROC_DIR": str(folder), "MYSITE_LOG_LEVEL": "INFO"}, log_dir=base,
                        workers=2) as server:
        yield server, folder


@pytest.mark.slow
def test_every_worker_counts_and_a_dead_workers_counts_stay(two_workers, group_jpg) -> None:
    server, folder = two_workers
    assert not (folder / "counter_99999.db").exists()  # emptied at start: the last run's counts do not add up again
    def scrape() -> str:
        return requests.get(server.url + "/metrics", timeout=10).text

    def healthz_count(text: str) -> float:
        return value(text, "mysite_http_requests_total", route="/healthz", method="GET", status="200")

    def settled() -> tuple[float] | None:  # the start-up check's last request may be counted a moment after its answer
        first = healthz_count(scrape())
        time.sleep(0.3)
        return (first,) if healthz_count(scrape()) == first else None

    sent, pids = int((wait_for(settled) or (healthz_count(scrape()),))[0]), set()  # the start-up check's requests
    for round_ in range(5):  # new connections from 8 threads: the kernel hands them to both workers
        with ThreadPoolExecutor(8) as pool:
            ids = [f"w{round_}-{i}" for i in range(40)]
            answers = list(pool.map(lambda rid: requests.get(server.url + "/healthz", headers={"X-Request-ID": rid},
                                                              timeout=10), ids))
        assert all(r.status_code == 200 for r in answers)
        sent += len(ids)
        pids = {line["pid"] for line in access_lines(server.log) if line["path"] == "/healthz"}
        if len(pids) >= 2:
            break
    assert len(pids) == 2, pids
    detections = [requests.post(server.url + "/detect", files={"image": ("g.jpg", group_jpg)}, timeout=60)
                  for _ in range(2)]
    assert all(r.status_code == 200 for r in detections)

    def all_counted() -> str:  # a request is counted once its answer is sent: the last may be a moment late
        text = scrape()
        detected = value(text, "mysite_http_requests_total", route="/detect", method="POST", status="200")
        return text if healthz_count(text) == sent and detected == 2 else ""

    text = wait_for(all_counted) or scrape()
    assert value(text, "mysite_http_requests_total", route="/healthz", method="GET", status="200") == sent
    assert value(text, "mysite_http_request_duration_seconds_count", route="/healthz") == sent
    assert sent >= 40
    assert value(text, "mysite_http_requests_total", route="/detect", method="POST", status="200") == 2
    assert value(text, "mysite_queue_wait_seconds_count") == 2
    # The pool's dispatcher hears "done" a moment after the process has answered: running drops back to 0 then.
    text = wait_for(lambda: (t := scrape()) and value(t, "mysite_jobs_running") == 0 and t) or scrape()
    assert value(text, "mysite_queue_depth") == 0 and value(text, "mysite_jobs_running") == 0
    assert value(text, "mysite_model_loaded", model="face", kind="cascade", required="true") == 1
    for pid in pids:  # each worker wrote its own share
        assert (folder / f"counter_{pid}.db").is_file()

    # A worker that ends: gunicorn's child_exit drops its live gauges; what it counted stays counted.
    gone = sorted(pids)[0]
    os.kill(gone, signal.SIGTERM)
    assert wait_for(lambda: not (folder / f"gauge_livesum_{gone}.db").exists()), "child_exit did not run"
    text = scrape()
    assert value(text, "mysite_http_requests_total", route="/healthz", method="GET", status="200") == sent


@pytest.mark.slow
def test_request_ids_in_every_answer_and_in_the_access_log(two_workers, group_jpg) -> None:
    server, _ = two_workers
    url = server.url
    sent = {
        "ok-1": requests.get(url + "/healthz", headers={"X-Request-ID": "ok-1"}, timeout=10),
        "0f8fad5b-d9cb-469f-a165-70867728950e": requests.get(
            url + "/nowhere", headers={"X-Request-ID": "0f8fad5b-d9cb-469f-a165-70867728950e"}, timeout=10),
        "trace:abc/DEF+=": requests.put(url + "/detect", headers={"X-Request-ID": "trace:abc/DEF+="}, timeout=10),
        "bad-image": requests.post(url + "/detect", files={"image": ("x.jpg", b"not an image")},
                                   headers={"X-Request-ID": "bad-image"}, timeout=10),
    }
    codes = [r.status_code for r in sent.values()]
    assert codes[:3] == [200, 404, 405] and 400 <= codes[3] < 500, codes
    for rid, r in sent.items():
        assert r.headers["X-Request-ID"] == rid, (rid, r.status_code)
    # Unsafe or oversized ids are not echoed or logged: each gets a new one.
    for bad in ["has space", "x" * 129, "semi;colon", "quote\"d", "<script>"]:
        r = requests.get(url + "/healthz", headers={"X-Request-ID": bad}, timeout=10)
        assert NEW_ID.fullmatch(r.headers["X-Request-ID"]), bad
    made = {requests.get(url + "/healthz", timeout=10).headers["X-Request-ID"] for _ in range(3)}
    assert len(made) == 3 and all(NEW_ID.fullmatch(m) for m in made)
    # gunicorn's own answer to a request line it will not read carries one too.
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s:
        s.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = s.recv(65536).decode("latin-1")
    assert " 414 " in raw.partition("\r\n")[0] and re.search(r"X-Request-ID: [0-9a-f]{32}\r\n", raw), raw

    def logged() -> dict[str, dict]:
        return {line["request_id"]: line for line in access_lines(server.log)}

    def all_logged() -> dict[str, dict]:
        got = logged()
        return got if made <= set(got) and set(sent) <= set(got) else {}

    lines = wait_for(all_logged) or logged()
    for rid, r in sent.items():
        line = lines[rid]
        assert line["status"] == r.status_code and line["path"] == r.request.path_url.split("?")[0]
        assert line["method"] == r.request.method and line["duration_ms"] >= 0 and line["remote"] == "127.0.0.1"
    assert made <= set(lines)
    assert not any(" " in rid or "<" in rid for rid in lines)


def test_an_unhandled_error_answers_and_logs_its_request_id(make_app) -> None:
    import io
    import logging

    from mysite.server.request_id import LogFilter

    app = make_app({})

    def boom() -> str:
        raise RuntimeError("a bug")

    app.add_url_rule("/boom", view_func=boom)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s%(request)s"))
    handler.addFilter(LogFilter())
    logger = logging.getLogger("mysite.web.error_handlers")
    logger.addHandler(handler)
    try:
        r = app.test_client().get("/boom", headers={"X-Request-ID": "boom-1"})
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 500 and r.get_json()["reason"] == "internal_error"
    assert r.headers["X-Request-ID"] == "boom-1"
    assert "ERROR unhandled error on GET /boom [request boom-1]" in out.getvalue()


@pytest.mark.parametrize("setting,keys,expected", [
    ("off", "", 404), ("on", "", 200), ("auto", "", 200), ("on", KEY, 200), ("auto", KEY, 401), ("key", KEY, 401),
])
def test_metrics_setting(make_app, setting, keys, expected) -> None:
    app = make_app({"MYSITE_METRICS": setting, "MYSITE_API_KEYS": keys})
    client = app.test_client()
    r = client.get("/metrics")
    assert r.status_code == expected, r.data[:200]
    assert r.headers["X-Request-ID"]
    routes = {route["path"] for route in client.get("/", headers={"Accept": "application/json"}).get_json()["routes"]}
    assert ("/metrics" in routes) == (setting != "off")
    if expected == 200:
        assert r.mimetype == "text/plain" and "mysite_model_loaded" in r.get_data(as_text=True)
    if expected == 401:
        assert r.get_json()["reason"] == "unauthorized" and KEY not in r.get_data(as_text=True)
        assert client.get("/metrics", headers={"X-API-Key": "wrong"}).status_code == 401
        assert client.get(f"/metrics?api_key={KEY}").status_code == 401  # never in a URL
        assert client.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
        good = client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"})  # Prometheus' authorization setting
        assert good.status_code == 200 and "mysite_http_requests_total" in good.get_data(as_text=True)


def test_metrics_key_without_keys_is_refused_at_start(make_app) -> None:
    with pytest.raises(SettingsError, match="MYSITE_METRICS=key needs keys in MYSITE_API_KEYS"):
        make_app({"MYSITE_METRICS": "key"})
    with pytest.raises(SettingsError, match="MYSITE_METRICS"):
        make_app({"MYSITE_METRICS": "sometimes"})


def test_requests_by_route_and_status_and_model_state(make_app, cat_jpg) -> None:
    app = make_app({"MYSITE_FACE_CASCADE": "/nonexistent/f.xml"})
    client = app.test_client()

    def count(route: str, method: str, status: str) -> float:
        return value(client.get("/metrics").get_data(as_text=True), "mysite_http_requests_total",
                     route=route, method=method, status=status)

    before = (count("/catfacedetection", "POST", "200"), count("/detect", "POST", "503"), count("other", "GET", "404"))
    # buffered: the test client then closes the answer, as every server does, and a request counts once closed.
    assert client.post("/catfacedetection", data=multipart("image", cat_jpg), buffered=True).status_code == 200
    assert client.post("/detect", data=multipart("image", cat_jpg), buffered=True).status_code == 503  # no model
    assert client.get("/no/such/route/1", buffered=True).status_code == 404
    assert client.get("/no/such/route/2", buffered=True).status_code == 404
    made_up = count("other", "other", "405")  # a 405 matched no route (for that method)
    assert client.open("/healthz", method="BREW", buffered=True).status_code == 405
    after = (count("/catfacedetection", "POST", "200"), count("/detect", "POST", "503"), count("other", "GET", "404"))
    assert [a - b for a, b in zip(after, before)] == [1, 1, 2]  # unmatched URLs share one label value
    assert count("other", "other", "405") == made_up + 1  # and made-up methods one method value
    text = client.get("/metrics").get_data(as_text=True)
    assert value(text, "mysite_model_loaded", model="face", kind="cascade", required="true") == 0
    assert value(text, "mysite_model_loaded", model="catface", kind="cascade", required="true") == 1


def test_off_counts_nothing(make_app, cat_jpg) -> None:
    on = make_app({}).test_client()

    def total() -> float:
        return value(on.get("/metrics").get_data(as_text=True), "mysite_http_requests_total",
                     route="/catfacedetection", method="POST", status="200")

    before = total()
    assert on.post("/catfacedetection", data=multipart("image", cat_jpg), buffered=True).status_code == 200
    assert total() == before + 1
    off = make_app({"MYSITE_METRICS": "off"}).test_client()
    assert off.post("/catfacedetection", data=multipart("image", cat_jpg), buffered=True).status_code == 200
    assert total() == before + 1


def test_gate_reports_queue_depth_waits_and_refusals() -> None:
    gate = Gate(slots=1, queue=1, wait=0.3, metrics=metrics.LIVE)

    def now() -> dict:
        text = metrics.render().decode()
        return {"depth": value(text, "mysite_queue_depth"), "running": value(text, "mysite_jobs_running"),
                "full": value(text, "mysite_jobs_refused_total", reason="full"),
                "wait": value(text, "mysite_jobs_refused_total", reason="wait"),
                "waits": value(text, "mysite_queue_wait_seconds_count")}

    start = now()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.slot():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    outcome: list[str] = []

    def queue_up() -> None:
        try:
            with gate.slot():
                outcome.append("ran")
        except ApiError as exc:
            outcome.append(exc.reason.value)

    waiter = threading.Thread(target=queue_up)
    waiter.start()
    assert wait_for(lambda: now()["depth"] == start["depth"] + 1, 5)
    assert now()["running"] == start["running"] + 1
    with pytest.raises(ApiError):  # one running, one waiting: the third is turned away at once
        with gate.slot():
            pass
    waiter.join(10)  # waits 0.3 s, then gives up
    release.set()
    holder.join(10)
    end = now()
    assert outcome == ["busy"]
    assert end["full"] - start["full"] == 1 and end["wait"] - start["wait"] == 1
    assert end["depth"] == start["depth"] and end["running"] == start["running"]
    assert end["waits"] - start["waits"] == 1  # the holder's (no) wait; the one that gave up is not a wait served


def test_requests_turned_away_for_want_of_room_are_counted_by_room(make_app, group_jpg) -> None:
    from mysite.web.state import app_state

    app = make_app({"MYSITE_UPLOAD_DEADLINE": "0.2"})
    c = app.test_client()

    def refused(room: str) -> float:
        return value(c.get("/metrics").get_data(as_text=True), "mysite_room_refused_total", room=room)

    before = {room: refused(room) for room in ("bodies", "pictures")}
    state = app_state(app)
    answers = {}
    state.answers.keep(0, state.answers.size)
    try:
        answers[state.answers.what] = c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg")
    finally:
        state.answers.give(state.answers.size)
    state.room.take(state.room.size)
    try:
        answers[state.room.what] = c.post("/detect", data=group_jpg, content_type="image/jpeg")
    finally:
        state.room.give(state.room.size)
    for what, r in answers.items():
        assert r.status_code == 503 and what in r.get_json()["message"], r.get_json()
    assert refused("bodies") == before["bodies"] + 1 and refused("pictures") == before["pictures"] + 1


def test_a_metrics_folder_other_users_may_write_in_is_refused_at_start(tmp_path) -> None:
    # Another user's files there would be read as this instance's counts, or written through as root.
    from mysite.server import metrics_dir

    shared = tmp_path / "prom"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="may be changed by other users"):
        metrics_dir.prepare({metrics_dir.ENV: str(shared)})
    shared.chmod(0o700)
    assert metrics_dir.prepare({metrics_dir.ENV: str(shared)}) == shared


def test_a_metrics_folder_is_checked_and_used_by_its_real_path(tmp_path) -> None:
    # A symlink (or a folder on the way) another user could point elsewhere once the check has passed.
    from mysite.server import metrics_dir

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(private)
    environ = {metrics_dir.ENV: str(link / ".." / "private")}
    assert metrics_dir.prepare(environ) == private and environ[metrics_dir.ENV] == str(private)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "m").mkdir(mode=0o700)
    with pytest.raises(PermissionError):  # its own mode is fine; the folder above it is not
        metrics_dir.prepare({metrics_dir.ENV: str(link.parent / "shared" / "m")})
