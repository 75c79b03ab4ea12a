"""How a job crosses into a CV process (a memory file with the pickle and, out of band, the image's bytes), and
what the web side is told when a process gives no answer."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mysite.errors import ApiError
from mysite.pipeline import AnswerFormat, Job
from mysite.server import cpus, memory, pool, tempdirs
from mysite.vision.budget import Budget


def _job(images: tuple[bytes, ...]) -> Job:
    return Job("face", "boxes", AnswerFormat("json", "jpeg"), {"scale": 1.1}, frozenset({"scale"}), images, False,
               "face", 40_000_000, Budget(1 << 28, 1 << 30), 1 << 25)


def test_a_job_and_its_images_come_back_as_they_were_sent() -> None:
    photo, small = os.urandom(3_000_000), b"\xff\xd8 tiny"
    job = _job((photo, small))
    fd = pool.write_job(len, (job, photo, b"x"), "a-request")
    try:
        fn, (back, raw, tiny), request = pool.read_job(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    assert fn is len and back == job and raw == photo and tiny == b"x" and request == "a-request"
    assert all(type(d) is bytes for d in back.images) and type(raw) is bytes
    # Each large byte string is in the file once: out of band, not also inside the pickle.
    assert 2 * len(photo) <= size < 2 * len(photo) + 4096


def test_a_job_pickles_as_before_without_protocol_5() -> None:
    job = _job((os.urandom(100_000),))
    for protocol in (2, 4, 5):
        assert pickle.loads(pickle.dumps(job, protocol=protocol)) == job


def _dies(models: object) -> None:
    os._exit(3)


def _sleeps(models: object, seconds: float) -> None:
    time.sleep(seconds)


def _echo(models: object, data: bytes) -> int:
    return len(data)


def test_the_dispatcher_says_why_a_process_gave_no_answer() -> None:
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=1, memory_mb=256)
    try:
        with pytest.raises(ApiError) as died:
            client.call(_dies)
        assert died.value.code == 503 and "stopped" in str(died.value.parts())
        with pytest.raises(pool.PoolTimeout) as late:
            client.call(_sleeps, 30.0)
        assert "MYSITE_WORK_DEADLINE" in str(late.value.parts())
        photo = os.urandom(2_000_000)
        assert client.call(_echo, photo) == len(photo)  # both processes were replaced and serve again
    finally:
        pool.stop()


_KEPT: list[bytearray] = []


def _keeps(models: object, megabytes: int) -> int:
    """Holds memory past the request, as a model's per-size buffers do; the answer is this process's id."""
    block = bytearray(megabytes << 20)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page, so it is resident
    _KEPT.append(block)
    return os.getpid()


def test_a_process_that_keeps_memory_of_its_own_is_replaced() -> None:
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=256)
    try:
        small = {client.call(_keeps, 1) for _ in range(3)}
        assert len(small) == 1  # a little kept memory: the same process serves on
        big = client.call(_keeps, (pool.KEEP_OWN + pool.KEEP_HEAP) // (1 << 20) + 8)
        assert big in small
        assert client.call(_keeps, 1) != big  # it left after the request; a fresh fork answers
    finally:
        pool.stop()


def _churns(models: object, megabytes: int) -> tuple[int, int]:
    """This process's id and its resident memory as the job starts; then takes ``megabytes`` in small blocks
    (malloc's heap, not maps of their own), writes them and frees them."""
    resident = memory.rss()
    blocks = [bytearray(32 * 1024) for _ in range(megabytes * 32)]
    for block in blocks:
        block[::4096] = b"\x01" * 8
    del blocks
    return os.getpid(), resident


def _makes_room(models: object, need: int) -> tuple[int, int]:
    """Resident memory before and after the CV process makes room for a decode of ``need`` bytes."""
    from mysite import pipeline

    before = memory.rss()
    pipeline.before_decode(need)
    return before, memory.rss()


def test_a_process_keeps_free_heap_for_the_next_request_within_its_bounds() -> None:
    # In a fresh interpreter: a CV process forked from this one would inherit its heap's history.
    script = """
from mysite.server import pool
from test_pool_jobs import _churns, _keeps, _makes_room
client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=256)
try:
    kept = client.call(_keeps, 4)
    pid, first = client.call(_churns, 16)  # 20 MB over its start, 16 of them free heap: kept for the next
    again, held = client.call(_churns, 16)
    small = client.call(_makes_room, pool.MAKE_ROOM - 1)  # a smaller decode: the kept heap may sit beside it
    large = client.call(_makes_room, pool.MAKE_ROOM)  # a large one takes maps of its own: the heap goes back first
    client.call(_churns, (pool.KEEP_OWN + pool.KEEP_HEAP >> 20) + 8)  # more than a process keeps: trimmed
    last, after = client.call(_churns, 1)
    mb = [n >> 20 for n in (first, held, *small, *large, after)]
    print(pid == again == last == kept, *mb)
finally:
    pool.stop()
"""
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    same, first, held, small0, small1, large0, large1, after = out.stdout.split()
    said = out.stdout + out.stderr
    assert same == "True", said  # the process stayed throughout
    assert int(held) - int(first) > 12, said  # the first churn's heap was still there for the second
    assert int(small0) - int(small1) < 2 and int(large0) - int(large1) > 12, said
    assert int(after) - int(first) < 8, said


def _allocates(models: object, megabytes: int) -> int:
    """Takes ``megabytes`` for the request only, every page touched."""
    block = bytearray(megabytes << 20)
    block[::4096] = b"\x01" * len(block[::4096])
    return len(block) >> 20


def test_each_request_gets_its_whole_memory_allowance_whatever_earlier_ones_kept() -> None:
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=64)
    try:
        kept = client.call(_keeps, 16)  # under KEEP_OWN: the process stays, holding it
        assert client.call(_allocates, 56) == 56  # 16 kept + 56 is past 64, but this request's 56 is not
        assert client.call(_keeps, 1) == kept
        with pytest.raises(ApiError) as over:
            client.call(_allocates, 96)
        assert over.value.code == 413
    finally:
        pool.stop()



_SHARE: list[int] = []


def _given(models: object, seconds: float) -> tuple[int, frozenset[int]]:
    """The threads this job was told to use and, after ``seconds``, the CPUs its process may run on."""
    time.sleep(seconds)
    return _SHARE[-1], frozenset(os.sched_getaffinity(0))


def _until_idle(client: pool.Client, seconds: float = 5.0) -> None:
    ends = time.monotonic() + seconds
    while (status := client.status()) is None or status["busy"]:
        assert time.monotonic() < ends, status
        time.sleep(0.01)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to share")
def test_a_job_alone_has_every_cpu_and_jobs_side_by_side_one_each() -> None:
    every = frozenset(sorted(os.sched_getaffinity(0))[:2])
    client = pool.start(None, processes=2, queue_deadline=5, work_deadline=5, memory_mb=64,
                        share_cpus=_SHARE.append, cpus=cpus.Share(2, every))
    try:
        assert client.call(_given, 0.0) == (2, every)
        _until_idle(client)
        with ThreadPoolExecutor(2) as threads:
            # The second job arrives while the first runs: the first gives up a CPU to it.
            first = threads.submit(client.call, _given, 0.8)
            time.sleep(0.3)
            second = threads.submit(client.call, _given, 1.0)
            (n1, on1), (n2, on2) = first.result(10), second.result(10)
            assert (n1, n2) == (2, 1) and len(on1) == len(on2) == 1 and not on1 & on2
            _until_idle(client)  # a client has its answer a moment before the process reports it done
            # And takes it back when the second job ends before it.
            first = threads.submit(client.call, _given, 1.2)
            time.sleep(0.3)
            second = threads.submit(client.call, _given, 0.2)
            assert second.result(10)[0] == 1 and first.result(10) == (2, every)
    finally:
        pool.stop()


def _fails(models: object) -> int:
    raise RuntimeError("a bug, or a library in a bad state")


def _pid(models: object) -> int:
    return os.getpid()


@pytest.mark.slow
def test_a_process_whose_work_failed_for_no_known_reason_is_replaced() -> None:
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=256)
    try:
        before = client.call(_pid)
        with pytest.raises(ApiError) as failed:
            client.call(_fails)
        assert failed.value.code == 500
        assert client.call(_pid) != before  # a fresh fork, not the process that failed
    finally:
        pool.stop()


@pytest.mark.slow
def test_the_pool_tries_again_when_a_process_cannot_be_forked(monkeypatch) -> None:
    real, calls = os.fork, []

    def fork() -> int:
        calls.append(1)  # the dispatcher's fork, then its first CV process's: that one fails (a process limit)
        if len(calls) == 2:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real()

    monkeypatch.setattr(os, "fork", fork)
    client = pool.start(None, processes=1, queue_deadline=10, work_deadline=5, memory_mb=256)
    try:
        assert client.call(_echo, b"abc") == 3  # the dispatcher lived on and forked again
    finally:
        pool.stop()


@pytest.mark.slow
def test_a_dispatcher_that_has_gone_is_started_again_on_the_same_socket() -> None:
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=256)
    try:
        assert pool.revive() is None  # running
        os.kill(client.dispatcher, 9)
        with pytest.raises(ApiError) as down:
            for _ in range(100):  # until the socket says so: the kill takes a moment
                client.call(_echo, b"abc")
                time.sleep(0.01)
        assert down.value.code == 503
        revived = None
        for _ in range(500):  # as gunicorn's master asks, each turn of its loop, until the process has ended
            if (revived := pool.revive()) is not None:
                break
            time.sleep(0.01)
        assert revived is not None and revived.path == client.path and revived.dispatcher != client.dispatcher
        assert client.call(_echo, b"abc") == 3  # a web worker's old client reaches the new dispatcher
    finally:
        pool.stop()


def _gone(client: pool.Client, sig: int = 9) -> None:
    """Make the dispatcher go, and wait until it has."""
    os.kill(client.dispatcher, sig)
    for _ in range(500):
        try:
            if os.waitpid(client.dispatcher, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)
    raise AssertionError("the dispatcher did not go")


@pytest.mark.slow
def test_a_dispatcher_is_started_again_only_in_a_private_folder_of_this_users(monkeypatch) -> None:
    # The socket is trusted with pickles: its folder must not be one that another user could have made.
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=256)
    folder = os.path.dirname(client.path)
    try:
        _gone(client, pool.STOP_SIGNAL)  # its own way out: the folder stays, not to be taken meanwhile
        assert os.path.isdir(folder)
        os.chmod(folder, 0o777)  # as a folder of that name made by someone else would be
        assert pool.revive() is None
        os.chmod(folder, 0o700)
        revived = pool.revive()
        assert revived is not None and revived.call(_echo, b"abc") == 3
    finally:
        pool.stop()
    assert not os.path.exists(folder)  # the master removes it when the pool stops, a dispatcher or not


@pytest.mark.slow
def test_a_dispatcher_that_cannot_be_started_again_now_is_tried_again_later(monkeypatch) -> None:
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=256)
    try:
        _gone(client)
        real = os.fork

        def refused() -> int:
            raise BlockingIOError(11, "Resource temporarily unavailable")

        monkeypatch.setattr(os, "fork", refused)
        assert pool.revive() is None  # logged, not raised into gunicorn's loop
        monkeypatch.setattr(os, "fork", real)
        revived = pool.revive()
        assert revived is not None and revived.call(_echo, b"abc") == 3
    finally:
        pool.stop()


@pytest.mark.slow
def test_the_sockets_folder_is_never_in_a_folder_other_users_can_change(monkeypatch, tmp_path) -> None:
    # A folder anyone may write to (not sticky), or one another user owns: they could rename the socket's
    # folder away and put their own socket in its place.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))  # TMPDIR
    client = pool.start(None, processes=1, queue_deadline=5, work_deadline=5, memory_mb=256)
    try:
        assert not client.path.startswith(str(shared)), client.path
        assert tempdirs.kept_from_others(os.path.dirname(client.path)) and client.call(_echo, b"abc") == 3
    finally:
        pool.stop()
    assert not tempdirs.kept_from_others(str(shared))
    shared.chmod(0o1777)  # sticky, as /tmp: no one renames what is not theirs
    assert tempdirs.kept_from_others(str(shared))
