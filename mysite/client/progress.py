"""A one-line progress bar on stderr: done of total, rate, errors so far, time left.

Small on purpose (no tqdm): the batch needs a total that grows while a background
walk counts the paths, an error count, and silence when stderr is not a terminal.
It redraws at most ``hz`` times a second, from whichever thread calls ``update``.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO


class Progress:
    """``done`` of ``total`` images (``total`` may still be counting), ``errors`` among them.

    ``skipped`` images (already answered by an earlier run) count as done but not in the rate.
    """

    def __init__(self, stream: TextIO, *, enabled: bool, hz: float = 8.0) -> None:
        self.stream = stream
        self.enabled = enabled
        self.total = 0
        self.counting = True  # total is a lower bound until the count finishes
        self.done = 0
        self.skipped = 0
        self.errors = 0
        self._clock = time.monotonic
        self._started = self._clock()
        self._interval = 1.0 / hz
        self._last = 0.0
        self._lock = threading.Lock()
        self._width = 0

    def counted(self, total: int, *, final: bool) -> None:
        """The walk that counts the paths has seen ``total`` of them (all, when ``final``)."""
        self.total, self.counting = total, not final
        self.update()

    def advance(self, done: int = 0, errors: int = 0, skipped: int = 0) -> None:
        with self._lock:
            self.done += done
            self.errors += errors
            self.skipped += skipped
        self.update()

    def rate(self) -> float:
        """Images answered per second since the start (resumed ones not counted)."""
        elapsed = self._clock() - self._started
        return (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The bar's text, e.g. ``[#####.....] 120/240 50%  9.1 img/s  errors 2  left 0:13``."""
        total = max(self.total, self.done)
        rate = self.rate()
        if self.counting and not self.total:
            of = f"{self.done}"  # paths from stdin: no count ahead
        else:
            of = f"{self.done}/{total}{'+' if self.counting else ''}"
        if total and not self.counting:
            filled = int(20 * self.done / total)
            bar = f"[{'#' * filled}{'.' * (20 - filled)}] {of} {100 * self.done // total}%"
        else:
            bar = of
        left = "?"
        if rate > 0 and not self.counting:
            left = _clock_text((total - self.done) / rate)
        parts = [bar, f"{rate:.1f} img/s", f"errors {self.errors}", f"left {left}"]
        if self.skipped:
            parts.insert(1, f"resumed {self.skipped}")
        return "  ".join(parts)

    def update(self, force: bool = False) -> None:
        """Redraw, at most ``hz`` times a second unless ``force``."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            if not force and now - self._last < self._interval:
                return
            self._last = now
            text = self.line()[: shutil.get_terminal_size((100, 20)).columns - 1]
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line, so what follows starts on its own line."""
        if self.enabled:
            self.update(force=True)
            self.stream.write("\n")
            self.stream.flush()


def _clock_text(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
