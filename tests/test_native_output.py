"""What the decoders write to stderr for one request is bounded: a crafted file wrote megabytes of log.

libtiff (through OpenCV's log) wrote a line for each strip of a TIFF whose strips claim the whole
file (8 MB of log for a 4 MB upload); libpng a line for each damaged chunk. In a CV process each job's
stderr is a pipe drained by a thread (``mysite/server/native_output.py``), logged after it as one line; a
process that runs CV work on its own threads keeps OpenCV's log to fatal errors.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from live_server import start_gunicorn

from mysite.server import native_output
from mysite.server.native_output import KEPT, SHOWN, JobOutput
from mysite.vision import header_scan
from testkit import hostile_inputs as hi
from testkit.net import ROOT


def test_a_jobs_output_is_counted_and_logged_as_one_bounded_line(caplog, capfd):
    output, written = JobOutput(), 0
    with caplog.at_level(logging.WARNING, logger="mysite.server.native_output"), output:
        for i in range(100_000):
            written += os.write(2, b"libfoo warning: chunk %d is damaged\n" % i)
    [record] = caplog.records
    message = record.getMessage()
    assert f"wrote {written} bytes" in message and written > 3_000_000, message[:200]
    assert "chunk 0 is damaged | libfoo warning: chunk 1 is damaged" in message
    assert "\n" not in message and len(message) < SHOWN + 200
    os.write(2, b"after the job\n")
    assert capfd.readouterr().err == "after the job\n"


def test_opencv_still_logs_after_a_job_that_flooded_its_stderr():
    # OpenCV writes through std::cerr, which says nothing more after one failed write: none may fail.
    code = ("import logging, cv2, numpy as np\n"
            "from mysite.server import native_output\nfrom testkit import hostile_inputs as hi\n"
            "logging.basicConfig(format='%(message)s')\nnative_output.opencv_log(bounded=True)\n"
            "data, output = np.frombuffer(hi.tiff_long_strips(60_000), np.uint8), native_output.JobOutput()\n"
            "for _ in range(2):\n    with output:\n        cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=ROOT)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 0 and len(lines) == 2, lines[-3:]
    assert all("TIFFFillStrip" in line and "wrote 80" in line for line in lines), [line[:80] for line in lines]


def test_a_short_output_is_logged_whole_and_none_is_not_logged(caplog):
    output = JobOutput()
    with caplog.at_level(logging.WARNING, logger="mysite.server.native_output"):
        with output:
            pass
        assert not caplog.records
        with pytest.raises(ValueError), output:  # a failing job: its output is logged all the same
            os.write(2, b"libbar: bad \x1b[31mcolour\r\n")
            raise ValueError
    [record] = caplog.records
    assert record.getMessage().endswith("wrote 25 bytes to stderr during this job: libbar: bad \\x1b[31mcolour")


def test_a_job_that_crashes_the_process_says_where_on_the_real_stderr():
    code = ("import ctypes\nfrom mysite.server.native_output import JobOutput\n"
            "def job():\n    ctypes.string_at(0)\n"
            "with JobOutput():\n    job()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT)
    assert done.returncode == -signal.SIGSEGV
    assert b"Segmentation fault" in done.stderr and b'line 4 in job' in done.stderr, done.stderr[-500:]


def test_without_a_stderr_jobs_run_as_before(caplog, monkeypatch):
    # As if descriptor 2 were closed; closing it for real would hand it to the next file any thread opens.
    dup = os.dup

    def no_stderr(fd: int) -> int:
        if fd == 2:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return dup(fd)

    monkeypatch.setattr(native_output.os, "dup", no_stderr)
    output = JobOutput()
    with output:
        pass
    assert "not bounded here" in caplog.text


def test_when_no_thread_can_drain_it_stderr_stays_the_real_one(monkeypatch):
    # A process out of threads (a container's limit): stderr must not become a pipe no one reads.
    def no_thread(self):
        raise RuntimeError("can't start new thread")

    output, before = JobOutput(), os.fstat(2)
    opened = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(native_output._Drain, "start", no_thread)
    with pytest.raises(RuntimeError):
        output.__enter__()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert len(os.listdir("/proc/self/fd")) == opened  # the pipe's two ends are closed


def test_opencv_says_nothing_of_clients_tiffs_in_process(client, capfd):
    r = client.post("/detect", data=hi.tiff_long_strips(60_000), content_type="image/tiff")
    assert r.status_code == 200, r.get_json()
    assert len(capfd.readouterr().err) < 1000


@pytest.mark.slow
def test_under_gunicorn_a_crafted_file_adds_one_line_to_the_log(tmp_path):
    crafted = {"TIFFFillStrip": hi.tiff_long_strips(60_000),
               "out of place": hi.png_misplaced_flood(header_scan.MAX_PNG_CHUNKS)}
    with start_gunicorn(log_dir=tmp_path) as server:
        for said, data in crafted.items():
            before, rid = server.log.stat().st_size, said.replace(" ", "-")
            r = requests.post(server.url + "/detect", data=data, timeout=60,
                              headers={"Content-Type": "application/octet-stream", "X-Request-ID": rid})
            assert r.status_code == 200, r.text
            end = time.monotonic() + 5
            while said not in server.log.read_text()[before:] and time.monotonic() < end:
                time.sleep(0.05)  # the CV process logs after it answered
            added = server.log.read_text()[before:]
            assert said in added and len(added) < 4000, (len(added), added[:300])
            lines = [line for line in io.StringIO(added) if "native_output" in line]
            assert len(lines) == 1 and int(re.search(r"wrote (\d+) bytes", lines[0])[1]) > KEPT, lines[:1]
            assert lines[0].rstrip().endswith(f"[request {rid}]"), lines[0][-100:]  # the web thread's id
