"""The room a web worker keeps for request bodies: ``memory.Room``, ``inputs.body_share``, the app's hooks.

Before: a web worker's 64 threads each held their body and its decoded copies with nothing to bound
them together; 16 clients sending the largest base64 form at once took 555 and 399 MB in the two web
workers (``python -m bench.upload_memory --room 100000``). Now bodies in flight are counted at what
each may cost and held to ``MYSITE_UPLOAD_MEMORY_MB`` per worker; the rest wait their turn.
"""

from __future__ import annotations

import gc
import io
import ipaddress
import json
import socket
import threading
import time

import pytest
import requests
from live_server import start_gunicorn
from loopback import serve
from werkzeug.test import EnvironBuilder

from mysite.errors import Busy
from mysite.server import upload_deadline
from mysite.server.memory import AnswerRoom, Room
from mysite.settings import Settings
from mysite.web import inputs
from mysite.web.fetch import Fetcher
from mysite.web.state import app_state
from testkit.net import drip_upload, multipart, port_of, request

MB = 1024 * 1024


def _taker(room: Room, share: int, done: list[str], name: str) -> threading.Thread:
    def take() -> None:
        try:
            room.take(share)
            done.append(name)
        except Busy:
            done.append(f"{name} busy")

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def test_shares_within_the_room_are_taken_at_once_and_given_back():
    room = Room(10 * MB, wait=1)
    room.take(4 * MB)
    room.take(6 * MB)
    assert room.used == 10 * MB
    room.give(4 * MB)
    room.give(6 * MB)
    assert room.used == 0


def test_a_share_that_does_not_fit_waits_for_room_then_takes_it():
    room = Room(10 * MB, wait=10)
    room.take(8 * MB)
    done: list[str] = []
    waiting = _taker(room, 4 * MB, done, "second")
    time.sleep(0.2)
    assert done == [] and room.used == 8 * MB  # waiting, holding nothing
    room.give(8 * MB)
    waiting.join(5)
    assert done == ["second"] and room.used == 4 * MB


def test_turns_are_first_come_first_served():
    # A small share that would fit does not pass a larger one that came first.
    room = Room(10 * MB, wait=10)
    room.take(6 * MB)
    done: list[str] = []
    large = _taker(room, 8 * MB, done, "large")
    time.sleep(0.2)
    small = _taker(room, 2 * MB, done, "small")
    time.sleep(0.2)
    assert done == []
    room.give(6 * MB)
    large.join(5)
    small.join(5)
    assert done == ["large", "small"]


def test_a_share_larger_than_the_room_is_taken_when_the_room_is_empty():
    room = Room(10 * MB, wait=10)
    room.take(1 * MB)
    done: list[str] = []
    huge = _taker(room, 50 * MB, done, "huge")
    time.sleep(0.2)
    assert done == []
    room.give(1 * MB)
    huge.join(5)
    assert done == ["huge"] and room.used == 50 * MB


def test_a_wait_past_its_time_is_a_503_with_retry_after():
    room = Room(10 * MB, wait=0.3)
    room.take(10 * MB)
    started = time.monotonic()
    with pytest.raises(Busy) as refused:
        room.take(1 * MB)
    assert 0.25 < time.monotonic() - started < 2
    assert refused.value.code == 503 and refused.value.headers == {"Retry-After": "1"}
    assert "10 MB this worker keeps for request bodies held" in refused.value.message
    assert room.used == 10 * MB


def test_past_the_waiting_limit_a_request_is_refused_at_once():
    room = Room(10 * MB, wait=10, waiting=2)
    room.take(10 * MB)
    done: list[str] = []
    waiters = [_taker(room, 1 * MB, done, f"w{i}") for i in range(2)]
    time.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(Busy):
        room.take(1 * MB)
    assert time.monotonic() - started < 0.1
    room.give(10 * MB)
    for w in waiters:
        w.join(5)
    assert sorted(done) == ["w0", "w1"]


def test_a_clients_bodies_hold_at_most_its_part_and_it_waits_outside_the_turns():
    room = Room(10 * MB, wait=0.3, per_client=3 * MB)
    room.take(2 * MB, client="a")
    room.take(2 * MB, client="a")  # it held less than its part: one more share, whole
    assert room.held_by("a") == 4 * MB and room.used == 4 * MB
    started = time.monotonic()
    with pytest.raises(Busy) as refused:
        room.take(1 * MB, client="a")
    assert 0.25 < time.monotonic() - started < 2
    assert "the requests of a in this worker hold 4 MB of the 10 MB" in refused.value.message
    assert "one client may hold 3 MB" in refused.value.message and refused.value.headers == {"Retry-After": "1"}
    room.take(5 * MB, client="b", wait=0)  # another client, at once: "a" waited outside the turns
    room.give(2 * MB, "a")
    room.take(1 * MB, client="a", wait=0)  # under its part again
    for client, share in (("a", 3 * MB), ("b", 5 * MB)):
        room.give(share, client)
    assert room.used == 0 and room.held_by("a") == room.held_by("b") == 0
    room.take(8 * MB)
    with pytest.raises(Busy):
        room.take(4 * MB, client="c", wait=0)  # past its part's check, no room: it holds none of it
    assert room.held_by("c") == 0


def test_answers_take_their_room_once_made_and_a_client_keeps_at_most_its_part():
    room = AnswerRoom(10 * MB, per_client=3 * MB)
    room.admit("a")
    room.keep(0, 2 * MB, "a")  # made: a 2 MB answer, kept until it is sent
    assert room.held_by("a") == 2 * MB and room.used == 2 * MB
    with pytest.raises(Busy) as refused:  # 2 + 2 MB is past its part: dropped, at once
        room.keep(0, 2 * MB, "a")
    assert refused.value.code == 503 and refused.value.headers == {"Retry-After": "1"}
    assert "picture answers a has not read yet hold 2 MB of the 10 MB" in refused.value.message
    assert "one client may keep 3 MB" in refused.value.message
    room.keep(0, 1 * MB, "a")  # 3 MB: within its part
    with pytest.raises(Busy):  # keeping its part, it is told before the work
        room.admit("a")
    room.admit("b")
    room.keep(0, 5 * MB, "b")  # a client keeping nothing may keep one answer past its part
    room.keep(5 * MB, 4 * MB, "b")  # made again, smaller (the page shows it as base64)
    assert room.held_by("b") == 4 * MB and room.used == 7 * MB
    room.keep(0, 3 * MB)  # no client named: the room only
    with pytest.raises(Busy) as full:
        room.keep(0, 1 * MB, "c")
    assert "10 MB of the 10 MB this worker keeps for picture answers not yet sent held; this one is 1.0 MB" in (
        full.value.message)
    with pytest.raises(Busy):
        room.admit("c")
    room.give(2 * MB, "a")
    room.admit("a")  # under its part again
    for client, share in (("a", 1 * MB), ("b", 4 * MB), (None, 3 * MB)):
        room.give(share, client)
    assert room.used == 0 and room.held_by("a") == room.held_by("b") == 0
    room.keep(0, 50 * MB)  # an answer larger than the room is kept when it is alone in it
    room.give(50 * MB)


def test_an_answer_refused_holds_nothing():
    room = AnswerRoom(4 * MB, per_client=3 * MB)
    room.keep(0, 2 * MB)
    room.keep(0, 1 * MB, "a")
    with pytest.raises(Busy):
        room.keep(1 * MB, 3 * MB, "a")  # made again, too large: its earlier share is given back too
    assert room.used == 2 * MB and room.held_by("a") == 0


def _share(body: bytes, content_type: str, **headers: str) -> int:
    environ = EnvironBuilder(method="POST", data=body, content_type=content_type, headers=headers).get_environ()
    return inputs.body_share(inputs.MemoryRequest(environ), Settings())


def test_a_body_is_counted_by_what_its_kind_may_cost():
    assert _share(b"x" * 1000, "image/jpeg") == 1000 * inputs.RAW_COPIES
    for content_type in ("application/json", "text/plain", "multipart/form-data; boundary=b",
                         "application/octet-stream", "application/x-www-form-urlencoded"):
        assert _share(b"x" * 1000, content_type) == 1000 * inputs.TEXT_COPIES, content_type
    assert _share(b"", "image/jpeg") == 0


def test_a_body_of_unknown_length_is_counted_at_the_most_it_may_be_and_one_too_long_at_nothing():
    most = Settings().max_body_bytes * inputs.TEXT_COPIES
    environ = EnvironBuilder(method="POST", input_stream=io.BytesIO(b"x"), content_type="text/plain",
                             headers={"Transfer-Encoding": "chunked"}).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    assert inputs.body_share(inputs.MemoryRequest(environ), Settings()) == most
    environ = EnvironBuilder(method="POST", data=b"x", content_type="text/plain").get_environ()
    environ["CONTENT_LENGTH"] = str(10**12)  # a 413 before it is read: it waits for no room
    assert inputs.body_share(inputs.MemoryRequest(environ), Settings()) == 0


def test_every_kind_of_answer_gives_its_room_back(make_app, group_jpg):
    # The room is given back as each request ends, whatever it ends with: a leak would starve the worker.
    app = make_app({"MYSITE_MAX_UPLOAD_MB": "1"})
    c = app.test_client()
    sends = [
        lambda: c.post("/detect", data=group_jpg, content_type="image/jpeg"),  # 200
        lambda: c.post("/detect", data={"image": (io.BytesIO(group_jpg), "g.jpg")}),  # 200, multipart
        lambda: c.post("/detect", data=b"x" * (3 * MB), content_type="image/jpeg"),  # 413 over the length limit
        lambda: c.post("/detect", data=b"not an image at all", content_type="image/jpeg"),  # 415
        lambda: c.post("/detect", data="[{}," * 2000 + "{}]", content_type="application/json"),  # 413 values
        lambda: c.post("/detect?min_size=abc", data=group_jpg, content_type="image/jpeg"),  # 400
        lambda: c.post("/no-such-route", data=group_jpg, content_type="image/jpeg"),  # 404
        lambda: c.put("/detect", data=group_jpg, content_type="image/jpeg"),  # 405
        lambda: c.open("/detect", method="OPTIONS", data=group_jpg, content_type="image/jpeg"),  # 200
        lambda: c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg"),  # 200, a picture
        lambda: c.post("/", data={"image": (io.BytesIO(group_jpg), "g.jpg"), "endpoint": "/detect"}),  # the page
    ]
    statuses = [send().status_code for send in sends]
    assert statuses == [200, 200, 413, 415, 413, 400, 404, 405, 200, 200, 200]
    gc.collect()  # an error's answer may sit in a cycle with its exception until the collector runs
    assert app_state(app).room.used == 0 and app_state(app).answers.used == 0


def test_a_picture_answer_holds_its_size_until_it_is_gone(make_app, group_jpg):
    # A client reading slowly keeps its answer in the worker: counted from when it is made until the
    # server lets go of it, at what its body is (the picture, or the page around it).
    app = make_app()
    answers = app_state(app).answers
    c = app.test_client()
    for send in (lambda: c.post("/detect?output=image&format=png", data=group_jpg, content_type="image/jpeg"),
                 lambda: c.post("/detect?output=base64", data=group_jpg, content_type="image/jpeg"),
                 lambda: c.post("/", data={"image": (io.BytesIO(group_jpg), "g.jpg"), "endpoint": "/detect"})):
        r = send()
        assert r.status_code == 200
        assert answers.used == len(r.get_data()) < app_state(app).settings.max_answer_bytes // 10
        del r
        gc.collect()
        assert answers.used == 0


def test_a_request_that_finds_no_room_waits_and_gets_a_503_past_its_wait(make_app, group_jpg):
    app = make_app({"MYSITE_UPLOAD_DEADLINE": "0.3"})
    room = app_state(app).room
    room.take(room.size)  # as if other bodies filled it
    try:
        r = app.test_client().post("/detect", data=group_jpg, content_type="image/jpeg")
        small = app.test_client().get("/healthz")
    finally:
        room.give(room.size)
    assert r.status_code == 503 and r.get_json()["reason"] == "busy" and r.headers["Retry-After"] == "1"
    assert "request bodies" in r.get_json()["message"]
    assert small.status_code == 200  # no body: takes no room
    assert app.test_client().post("/detect", data=group_jpg, content_type="image/jpeg").status_code == 200


def test_a_client_the_server_names_keeps_at_most_its_part_of_the_picture_answers(make_app, group_jpg):
    # Slow readers from one address held every picture answer's room of a worker: the worker names each
    # request's client (client_share.ENVIRON_KEY), and its unread answers keep at most its part.
    app = make_app()
    answers = app_state(app).answers
    assert answers.per_client == answers.size // 4
    slow, other = {"mysite.client": "203.0.113.7"}, {"mysite.client": "198.51.100.2"}
    answers.keep(0, answers.per_client - 1000, "203.0.113.7")  # as if its earlier answers were still unread
    try:
        c = app.test_client()
        picture = c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg", environ_overrides=slow)
        page = c.post("/", data={"image": (io.BytesIO(group_jpg), "g.jpg"), "endpoint": "/detect"},
                      environ_overrides=slow)
        json_answer = c.post("/detect", data=group_jpg, content_type="image/jpeg", environ_overrides=slow)
        elsewhere = c.post("/detect?output=base64", data=group_jpg, content_type="image/jpeg",
                           environ_overrides=other)
        unnamed = c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg")
        assert answers.held_by("198.51.100.2") == len(elsewhere.get_data())  # kept until the answer is gone
        assert answers.used == answers.per_client - 1000 + len(elsewhere.get_data()) + len(unnamed.get_data())
    finally:
        answers.give(answers.per_client - 1000, "203.0.113.7")
    for refused in (picture, page):
        assert refused.status_code == 503, refused.get_data()
        text = refused.get_data(as_text=True)
        assert "picture answers 203.0.113.7 has not read yet hold 32 MB" in text
        assert "one client may keep 32 MB" in text
    assert picture.get_json()["reason"] == "busy" and picture.headers["Retry-After"] == "1"
    assert json_answer.status_code == 200 and elsewhere.status_code == 200 and unnamed.status_code == 200
    del picture, page, elsewhere, unnamed
    gc.collect()
    assert answers.used == 0 and answers.held_by("198.51.100.2") == answers.held_by("203.0.113.7") == 0
    for _ in range(2):  # a client that reads its answers is never held up
        r = c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg", environ_overrides=slow)
        assert r.status_code == 200 and answers.held_by("203.0.113.7") == len(r.get_data())
        del r
        gc.collect()
    r = c.post("/", data={"image": (io.BytesIO(group_jpg), "g.jpg"), "endpoint": "/detect"}, environ_overrides=slow)
    assert r.status_code == 200 and answers.held_by("203.0.113.7") == len(r.get_data())


def test_an_answer_past_three_upload_limits_is_a_413_naming_them(make_app, group_jpg):
    # The web worker holds each answer until it is sent: a picture answer is bounded like an upload.
    c = make_app({"MYSITE_MAX_UPLOAD_MB": "0.15"}).test_client()  # answers up to 471 KB
    for path in ("/detect?output=image&format=png", "/detect?output=base64&format=png"):
        r = c.post(path, data=group_jpg, content_type="image/jpeg")
        assert r.status_code == 413 and "three times MYSITE_MAX_UPLOAD_MB" in r.get_json()["message"], path
    r = c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg")
    assert r.status_code == 200 and r.mimetype == "image/jpeg" and len(r.data) < 471 * 1024


def test_a_picture_is_told_before_it_is_made_that_there_is_no_room_for_it(make_app, group_jpg):
    # Slow readers holding every picture answer the worker has room for: a JSON answer still runs; a
    # picture is told 503 at once, before the work (waiting would hold its body's room from others).
    app = make_app()
    answers = app_state(app).answers
    answers.keep(0, answers.size)
    try:
        c = app.test_client()
        json_answer = c.post("/detect", data=group_jpg, content_type="image/jpeg")
        picture = c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg")
        page = c.post("/", data={"image": (io.BytesIO(group_jpg), "g.jpg"), "endpoint": "/detect"})
    finally:
        answers.give(answers.size)
    assert json_answer.status_code == 200
    assert picture.status_code == 503 and picture.get_json()["reason"] == "busy"
    assert "keeps for picture answers not yet sent held" in picture.get_json()["message"]
    assert page.status_code == 503 and "busy" in page.get_data(as_text=True)
    assert c.post("/detect?output=image", data=group_jpg, content_type="image/jpeg").status_code == 200


def test_the_pages_drawn_picture_is_held_to_its_bound(group_jpg):
    from mysite.pipeline import drawn_upload

    boxes = [{"box": [10, 10, 50, 50]}]
    assert drawn_upload(None, group_jpg, boxes, "face", 40_000_000, 1 << 30, 1000) is None
    drawn = drawn_upload(None, group_jpg, boxes, "face", 40_000_000, 1 << 30, 1 << 30)
    assert drawn is not None and drawn[:2] == b"\xff\xd8"


def test_a_fetched_image_takes_room_for_its_length_before_it_is_read(group_jpg):
    held: list[int] = []
    fetcher = Fetcher(10 * MB, timeout=3, allow=(ipaddress.ip_network("127.0.0.0/8"),), deadline=3, hold=held.append)
    with serve({"/g.jpg": (200, {"Content-Type": "image/jpeg"}, group_jpg)}) as (base, _):
        assert fetcher.fetch(f"{base}/g.jpg") == group_jpg
    assert held == [len(group_jpg)]


@pytest.mark.slow
def test_under_gunicorn_connections_that_send_no_body_hold_no_room(tmp_path, group_jpg):
    # Room for one body at a time. A body's room was taken before it arrived, so connections that
    # declared a body and sent a byte now and then held it until their 408, and a photo sent meanwhile
    # waited for them (twelve such connections turned every upload away). A body is now received whole
    # before it takes room: the photo is served at once, and the drips get their 408.
    env = {"MYSITE_UPLOAD_MEMORY_MB": "0.1", "MYSITE_UPLOAD_DEADLINE": "3"}
    with start_gunicorn(env, log_dir=tmp_path) as server:
        result: list[tuple[str, float]] = []
        drippers = [threading.Thread(target=lambda: result.append(drip_upload(server.url, 0.1, limit=15)))
                    for _ in range(4)]
        for dripper in drippers:
            dripper.start()
        time.sleep(0.5)  # the drips are in
        started = time.monotonic()
        healthz = requests.get(f"{server.url}/healthz", timeout=5)
        photo = requests.post(f"{server.url}/detect", data=group_jpg, headers={"Content-Type": "image/jpeg"},
                              timeout=30)
        photo_took = time.monotonic() - started
        for dripper in drippers:
            dripper.join(20)
    assert healthz.status_code == 200
    assert photo.status_code == 200 and len(photo.json()["result"]) == 17, photo.text
    assert photo_took < 2, photo_took  # it waited for no drip
    assert len(result) == 4 and all(" 408 " in raw.split("\r\n")[0] for raw, _ in result), result


@pytest.mark.slow
def test_under_gunicorn_a_photo_sent_as_a_multipart_file_leaves_room_for_another_clients_upload(tmp_path, group_jpg):
    # Room for 16 MB of bodies. One client's 12 MP photo (3.7 MB), sent as a multipart file with seconds of work
    # to do, was counted as text (eight times its length: alone in the room), and another client's photo waited
    # for it, here past its 1 s turn to a 503. Counted as image/jpeg is (three times), it leaves room.
    from bench.costly_client import tiled_photo

    env = {"MYSITE_UPLOAD_MEMORY_MB": "16", "MYSITE_UPLOAD_DEADLINE": "1", "MYSITE_CV_PROCESSES": "2"}
    body, content_type = multipart(tiled_photo())
    assert len(body) * inputs.TEXT_COPIES > 16 * MB > len(body) * inputs.RAW_COPIES + len(group_jpg) * inputs.RAW_COPIES
    with start_gunicorn(env, log_dir=tmp_path) as server:
        port, costly = port_of(server.url), []
        sender = threading.Thread(target=lambda: costly.append(
            request(port, "POST", "/detect?min_face=0.01", body, content_type, timeout=60, source="127.0.0.9")))
        sender.start()
        time.sleep(1)  # its body is in, and its work begun
        status, answer = request(port, "POST", "/detect", group_jpg, "image/jpeg", timeout=30, source="127.0.0.10")
        other_done = not sender.is_alive()
        sender.join(60)
    assert status == 200 and len(json.loads(answer)["result"]) == 17, answer
    assert not other_done  # served while the multipart photo still held its room
    assert costly and costly[0][0] == 200, costly


def _spool(app) -> Room:
    """The room for bodies arriving, in the app's middleware chain."""
    from mysite.server.upload_deadline import UploadDeadline

    layer = app.wsgi_app
    while not isinstance(layer, UploadDeadline):
        layer = layer.app
    return layer.spool


def test_a_full_temporary_folder_is_a_503_and_every_room_is_given_back(make_app, group_jpg, monkeypatch):
    import errno
    import tempfile

    from mysite.server import upload_deadline

    class Full(io.BytesIO):
        def write(self, data) -> int:  # type: ignore[override]
            raise OSError(errno.ENOSPC, "No space left on device")

    app = make_app()
    client = app.test_client()
    real = tempfile.SpooledTemporaryFile
    monkeypatch.setattr(upload_deadline.tempfile, "SpooledTemporaryFile", lambda **_: Full())
    r = client.post("/detect", data=group_jpg, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.get_json()
    assert r.get_json()["reason"] == "busy" and "No space left" in r.get_json()["message"]
    assert _spool(app).used == 0 and app_state(app).room.used == 0
    monkeypatch.setattr(upload_deadline.tempfile, "SpooledTemporaryFile", real)
    r = client.post("/detect", data=group_jpg, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200 and len(r.get_json()["result"]) == 17
    assert _spool(app).used == 0 and app_state(app).room.used == 0


def test_a_body_cut_off_or_broken_gives_its_room_back(make_app, group_jpg):
    # Declared longer than sent (the client went away), and a stream that fails mid-body.
    class Failing(io.BytesIO):
        def read(self, size=-1):  # type: ignore[override]
            if self.tell() > 10_000:
                raise ValueError("I/O operation on closed file")
            return super().read(size)

    app = make_app()
    for stream, length in [(io.BytesIO(group_jpg), len(group_jpg) + 1000), (Failing(group_jpg), len(group_jpg))]:
        environ = EnvironBuilder(method="POST", path="/detect", input_stream=stream, content_type="image/jpeg").get_environ()
        environ["CONTENT_LENGTH"] = str(length)
        statuses: list[str] = []
        body = b"".join(app.wsgi_app(environ, lambda status, headers, exc_info=None, seen=statuses: seen.append(status)))
        assert statuses[0].startswith("400"), (statuses, body)
        assert _spool(app).used == 0 and app_state(app).room.used == 0


def test_a_request_the_server_refused_is_answered_unread_and_its_body_dropped_after(make_app, group_jpg):
    # The worker refuses a request a proxy forwards for a client with no thread to spare: the app answers
    # its error without reading the body, and the body is read and dropped once the answer is out, so the
    # proxy's connection can carry the next request.
    from mysite.errors import Busy
    from mysite.server.upload_deadline import BODY_ERROR

    app = make_app()
    stream = io.BytesIO(group_jpg)
    environ = EnvironBuilder(method="POST", path="/detect", input_stream=stream, content_type="image/jpeg").get_environ()
    environ["CONTENT_LENGTH"] = str(len(group_jpg))
    environ[BODY_ERROR] = Busy("busy with this client's other requests", headers={"Retry-After": "1"})
    statuses: list[str] = []
    answer = app.wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    body = b"".join(answer)
    assert statuses[0].startswith("503") and b'"busy"' in body and stream.tell() == 0  # answered unread
    answer.close()  # type: ignore[attr-defined]
    assert stream.tell() == len(group_jpg)
    assert _spool(app).used == 0 and app_state(app).room.used == 0


def test_a_body_arriving_holds_the_bytes_that_have_come_and_no_more(make_app, group_jpg):
    # It took room a megabyte ahead: connections that had sent a little each held a megabyte.
    app = make_app()
    spool, seen = _spool(app), []

    class Watched(io.BytesIO):
        def read(self, size=-1):  # type: ignore[override]
            seen.append((self.tell(), spool.used))
            return super().read(size)

    environ = EnvironBuilder(method="POST", path="/detect", input_stream=Watched(group_jpg),
                             content_type="image/jpeg").get_environ()
    statuses: list[str] = []
    b"".join(app.wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses[0].startswith("200") and len(seen) >= 2, (statuses, seen)
    assert all(used == came for came, used in seen), seen
    assert spool.used == 0


class _Socket:
    """``gunicorn.socket`` for a body read in-process: what was done to the connection."""

    def __init__(self) -> None:
        self.shut: list[int] = []
        self.options: list[tuple[int, int, bytes]] = []

    def shutdown(self, how: int) -> None:
        self.shut.append(how)

    def settimeout(self, seconds: float | None) -> None:  # the send deadline's, for the answer
        pass

    def setsockopt(self, level: int, name: int, value: bytes) -> None:
        self.options.append((level, name, value))


def _refused_partway(app, stream: io.BytesIO, chunked: bool = False) -> tuple[list[str], dict, object, _Socket]:
    """Post ``stream`` as a JPEG through the app's middleware on a connection of its own: the statuses, the JSON
    answer, the answer still open (the server closes it once sent), and the connection."""
    import json

    sock = _Socket()
    environ = EnvironBuilder(method="POST", path="/detect", input_stream=stream, content_type="image/jpeg").get_environ()
    environ["gunicorn.socket"] = sock
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ.pop("CONTENT_LENGTH", None)
    else:
        environ["CONTENT_LENGTH"] = str(len(stream.getvalue()))
    statuses: list[str] = []
    answer = app.wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    return statuses, json.loads(b"".join(answer)), answer, sock


@pytest.mark.parametrize("full, chunked", [("spool", False), ("spool", True), ("folder", False)])
def test_a_body_refused_for_want_of_room_partway_is_drained_after_the_answer(make_app, group_jpg, monkeypatch,
                                                                           full, chunked):
    # The room for bodies arriving (or the temporary folder) had none left after the body's first piece: the
    # connection was shut once the 503 was sent, while the client was still sending, and the client (nginx in
    # front) met a reset instead of the answer, nginx answering its own 502. Now the rest of the body is read
    # and dropped after the answer, counted nowhere, and the connection kept; the rooms are given back at once.
    import errno

    from mysite.server import upload_deadline

    class Full(io.BytesIO):
        def write(self, data) -> int:  # type: ignore[override]
            raise OSError(errno.ENOSPC, "No space left on device")

    app = make_app()
    spool = _spool(app)
    if full == "spool":
        spool.take(spool.size)  # the bodies of others fill it
    else:
        monkeypatch.setattr(upload_deadline.tempfile, "SpooledTemporaryFile", lambda **_: Full())
    held = spool.used
    data = group_jpg * 4
    stream = io.BytesIO(data)
    statuses, body, answer, sock = _refused_partway(app, stream, chunked)
    assert statuses[0].startswith("503") and body["reason"] == "busy", (statuses, body)
    assert ("arriving" if full == "spool" else "No space left") in body["message"], body
    assert 0 < stream.tell() < len(data)  # refused partway
    assert spool.used == held and app_state(app).room.used == 0  # before the rest is read: it holds no room
    answer.close()  # type: ignore[attr-defined]
    assert (stream.tell(), sock.shut) == (len(data), [])  # all read, the connection kept
    assert spool.used == held
    spool.give(held)


@pytest.mark.slow
def test_a_refused_body_trickling_is_drained_under_its_deadline_then_cut_off(make_app, group_jpg):
    # The drain reads under the deadline that started at the body's first byte: a client trickling the rest
    # holds the thread no longer than its body would have, and its connection is shut.
    app = make_app({"MYSITE_UPLOAD_DEADLINE": "1", "MYSITE_UPLOAD_MIN_RATE_KB": "16"})
    spool = _spool(app)
    spool.take(spool.size)

    class Trickle(io.BytesIO):
        def read(self, size=-1):  # type: ignore[override]
            time.sleep(0.05)
            return super().read(min(size, 256))  # 5 KB a second: behind the 16 the deadline asks for

    stream = Trickle(group_jpg * 4)
    started = time.monotonic()
    statuses, body, answer, sock = _refused_partway(app, stream)
    assert statuses[0].startswith("503") and body["reason"] == "busy", (statuses, body)
    answer.close()  # type: ignore[attr-defined]
    took = time.monotonic() - started
    assert 256 < stream.tell() < len(group_jpg), stream.tell()  # drained for a while, then cut off
    assert 1 < took < 5, took
    assert sock.shut[-1] == socket.SHUT_RDWR, sock.shut
    spool.give(spool.size)


@pytest.mark.parametrize("bodies", [3, upload_deadline.LINGER_BODIES + 1])
def test_a_body_declared_past_the_limit_is_read_and_dropped_for_a_while_then_the_connection_reset(make_app,
                                                                                                monkeypatch, bodies):
    # A body declared longer than the app takes was shut unread when more than 16 MB of it was left: a client
    # that writes all of its body before it reads (http.client, so requests) never saw the 413, and its write
    # waited on the full window of a closed socket for a minute. Now it is read and dropped for LINGER seconds
    # and up to LINGER_BODIES times the longest body; past either the connection is reset, so the client's
    # write fails at once.
    import struct

    monkeypatch.setattr(upload_deadline, "LINGER", 0.5)
    app = make_app()
    reads: list[int] = []

    class Endless(io.BytesIO):
        def read(self, size=-1):  # type: ignore[override]
            reads.append(size)
            time.sleep(0.01)
            return b"\xff" * min(size, 65536)

    sock = _Socket()
    environ = EnvironBuilder(method="POST", path="/detect", input_stream=Endless(),
                             content_type="image/jpeg").get_environ()
    longest = app_state(app).settings.max_body_bytes
    environ["gunicorn.socket"], environ["CONTENT_LENGTH"] = sock, str(bodies * longest)
    statuses: list[str] = []
    answer = app.wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    body = json.loads(b"".join(answer))
    assert statuses[0].startswith("413") and body["reason"] == "too_large", (statuses, body)
    started = time.monotonic()
    answer.close()  # type: ignore[attr-defined]
    if bodies <= upload_deadline.LINGER_BODIES:
        assert len(reads) > 1, reads  # read and dropped, not shut unread
        assert time.monotonic() - started < 30  # then given up (the body's own deadline is minutes away)
    else:
        assert reads == []  # too long to be worth reading
    assert (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)) in sock.options
    assert sock.shut and sock.shut[-1] == socket.SHUT_RDWR, sock.shut
