"""What the native libraries write to stderr while a CV process runs one job, bounded.

libpng, libtiff (through OpenCV's log), libjpeg and the other decoders write a line to stderr
for each damaged structure they meet, so one crafted file could write megabytes to the
server's log, request after request. A CV process runs one job at a time, so during a job its
stderr is a pipe that a thread drains: it counts every byte and keeps the first ``KEPT``. After
the job, one log line says how much was written and shows the first ``SHOWN`` characters.

Writes must not fail: OpenCV logs through ``std::cerr``, which stays silent for good after one
failed write. So the pipe is drained as it fills; only a writer that holds the GIL while the
pipe's megabyte is full (none is known) would see a failed write rather than wait forever.
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import logging
import os
import sys
import threading
from types import TracebackType

log = logging.getLogger(__name__)

KEPT = 16 * 1024  # bytes of a job's native output kept to show; the rest is counted, not kept
SHOWN = 1000  # characters of it in the log line
PIPE_BYTES = 1 << 20  # what the pipe holds undrained (Linux's default most)
DRAIN_WAIT = 5.0  # seconds to wait, after a job, for the pipe's last bytes


class JobOutput:
    """A context manager: stderr (file descriptor 2) goes to a drained pipe while it is entered."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._drain: _Drain | None = None
        try:
            self._stderr = os.dup(2)
        except OSError as exc:  # no stderr: jobs write where they did
            log.warning("a CV job's stderr is not bounded here: %s", exc)
            self._stderr = -1
            return
        # A job that crashes the process says where on the real stderr, not into a pipe that dies with it.
        faulthandler.enable(self._stderr)

    def __enter__(self) -> JobOutput:
        if self._stderr < 0:
            return self
        _flush()
        read, write = os.pipe2(os.O_CLOEXEC)
        try:
            # The drain first: stderr must not become a pipe that no thread reads.
            drain = _Drain(read, self._kept)
        except BaseException:
            os.close(read)
            os.close(write)
            raise
        with contextlib.suppress(OSError):
            fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(write, False)
        os.dup2(write, 2)  # descriptor 2 is now the pipe's only writer
        os.close(write)
        self._drain = drain
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        drain, self._drain = self._drain, None
        if drain is None:
            return
        _flush()
        os.dup2(self._stderr, 2)  # the pipe's last writer gone: the drain reads to its end
        drain.join(DRAIN_WAIT)
        if drain.total:
            log.warning("the decoders wrote %d bytes to stderr during this job: %s", drain.total,
                        one_line(bytes(drain.head[:SHOWN * 4]))[:SHOWN])


class _Drain(threading.Thread):
    """Reads a pipe to its end: counts every byte, keeps the first ``kept``."""

    def __init__(self, fd: int, kept: int) -> None:
        super().__init__(name="mysite-native-output", daemon=True)
        self.fd, self.kept, self.head, self.total = fd, kept, bytearray(), 0
        self.start()

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 65536):
                self.total += len(chunk)
                if len(self.head) < self.kept:
                    self.head += chunk[:self.kept - len(self.head)]
        except OSError:
            pass
        finally:
            os.close(self.fd)


def _flush() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()


def one_line(raw: bytes) -> str:
    """``raw`` as one printable line: line breaks as `` | ``, other control characters escaped."""
    text = raw.decode("utf-8", "backslashreplace").strip()
    return "".join(c if c.isprintable() else " | " if c == "\n" else f"\\x{ord(c):02x}" for c in text)


def opencv_log(bounded: bool) -> None:
    """OpenCV's own log, which carries libtiff's messages: at its default where ``JobOutput`` bounds it
    (``bounded``, a CV process), else fatal errors only (a process that runs CV work on its threads)."""
    from cv2.utils import logging as cv_log

    cv_log.setLogLevel(cv_log.LOG_LEVEL_WARNING if bounded else cv_log.LOG_LEVEL_FATAL)
