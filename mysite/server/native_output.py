"""What the native libraries may write to stderr while a CV process runs one job, bounded.

libpng, libtiff (through OpenCV's log), libjpeg and the other decoders write a line to stderr
for each damaged structure they meet, so one crafted file could write megabytes to the
server's log, request after request. A CV process runs one job at a time, so during a job its
stderr is a memory file of fixed size that cannot grow: a write past its end fails and is
lost. After the job, what it holds is logged as one line, cut to ``SHOWN`` characters.
"""

from __future__ import annotations

import contextlib
import faulthandler
import fcntl
import logging
import os
import sys
from types import TracebackType

log = logging.getLogger(__name__)

KEPT = 16 * 1024  # bytes a job's native output may fill; the rest is never written
SHOWN = 1000  # characters of it in the log line


class JobOutput:
    """A context manager: stderr (file descriptor 2) goes to a sealed memory file while it is entered."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._file = self._stderr = -1
        try:
            self._stderr = os.dup(2)  # first: with no stderr, the memory file would be given descriptor 2
            self._file = os.memfd_create("mysite-native-output", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.ftruncate(self._file, kept)
            fcntl.fcntl(self._file, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        except OSError as exc:  # no stderr, or no sealed memory files: jobs write where they did
            log.warning("a CV job's stderr is not bounded here: %s", exc)
            self._file = -1
            return
        # A job that crashes the process says where on the real stderr, not into the memory file lost with it.
        faulthandler.enable(self._stderr)

    def __enter__(self) -> JobOutput:
        if self._file < 0:
            return self
        _flush()
        os.lseek(self._file, 0, os.SEEK_SET)  # shared with descriptor 2 once duplicated onto it
        os.dup2(self._file, 2)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._file < 0:
            return
        _flush()  # a write that did not fit fails; Python's stderr raises where C's ignores it
        os.dup2(self._stderr, 2)
        written = os.lseek(self._file, 0, os.SEEK_CUR)
        if written:
            log.warning("the decoders wrote %s to stderr during this job: %s", _size(written, self._kept),
                        one_line(os.pread(self._file, min(written, SHOWN * 4), 0))[:SHOWN])


def _flush() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()


def _size(written: int, kept: int) -> str:
    # A write that did not fit failed whole: within a line of the end, more may have been dropped.
    return f"{written} bytes" if written < kept - 256 else f"{written} bytes or more (the rest dropped)"


def one_line(raw: bytes) -> str:
    """``raw`` as one printable line: line breaks as `` | ``, other control characters escaped."""
    text = raw.decode("utf-8", "backslashreplace").strip()
    return "".join(c if c.isprintable() else " | " if c == "\n" else f"\\x{ord(c):02x}" for c in text)


def opencv_log(bounded: bool) -> None:
    """OpenCV's own log, which carries libtiff's messages: at its default where ``JobOutput`` bounds it
    (``bounded``, a CV process), else fatal errors only (a process that runs CV work on its threads)."""
    from cv2.utils import logging as cv_log

    cv_log.setLogLevel(cv_log.LOG_LEVEL_WARNING if bounded else cv_log.LOG_LEVEL_FATAL)
