"""One watch thread per process for the header and upload deadlines: calls fire when due, cancelled ones never."""

from __future__ import annotations

import os
import threading
import time

from mysite.server import deadlines


def test_a_due_call_fires_and_a_cancelled_one_does_not() -> None:
    fired: list[str] = []
    done = threading.Event()
    later = deadlines.after(0.3, fired.append, "later")
    cancelled = deadlines.after(0.1, fired.append, "cancelled")
    deadlines.after(0.05, fired.append, "first")
    deadlines.after(0.2, done.set)
    cancelled.cancel()
    assert done.wait(5)
    assert fired == ["first"]
    later.cancel()
    time.sleep(0.35)
    assert fired == ["first"]


def test_an_earlier_deadline_wakes_the_watch_before_a_later_one() -> None:
    done = threading.Event()
    far = deadlines.after(60, done.set)
    t = time.monotonic()
    deadlines.after(0.05, done.set)
    assert done.wait(5) and time.monotonic() - t < 2
    far.cancel()


def test_a_forked_process_gets_a_watch_of_its_own() -> None:
    deadlines.after(0.01, lambda: None)  # the parent's watch thread is running
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            done = threading.Event()
            deadlines.after(0.05, done.set)
            code = 0 if done.wait(5) else 1
        finally:
            os.write(write, bytes([code]))
            os._exit(code)
    os.close(write)
    assert os.read(read, 1) == b"\x00"
    os.close(read)
    assert os.waitpid(pid, 0)[1] == 0
