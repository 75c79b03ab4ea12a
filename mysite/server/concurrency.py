"""Where a request's CV work runs (``Runner``): the process pool (``pool.Client``), or without one,
this gate: models one at a time in the web worker itself.

The process pool (``pool.py``) is how the Procfile's gunicorn runs; the gate's slots serve where
there is none (uWSGI, Flask's test client, ``MYSITE_CV_PROCESSES=0``).

gunicorn's ``gthread`` worker gives each connection a thread, so an upload that arrives
slowly, or a ``?url=`` fetch, holds one thread and not the worker; ``/healthz`` and the pages
answer while detections run. The models still run one request at a time per worker
(``slots``, 1 by default): that is what the per-request memory budget assumes
(``vision/budget.py``), and OpenCV already spreads one request over the CPUs.

A request that would wait behind ``queue`` others gets a 503 with ``Retry-After`` at once
rather than a place in a queue fifty deep: its client retries (``mysite.client`` does),
threads stay free for ``/healthz``, and no request waits longer than a few detections.
Flask-free, like the vision code that runs inside a slot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from mysite.errors import Busy
from mysite.server import metrics as live_metrics
from mysite.server.metrics import QueueMetrics
from mysite.vision.shapes import model_slot


class Runner(Protocol):
    """Where CV work runs: ``run(fn, models, *args)`` is ``fn(models, *args)`` there, or the ``ApiError`` it raised."""

    def run(self, fn: Callable[..., Any], models: Any, *args: Any) -> Any: ...


class Gate:
    """``slots`` requests run models at once; up to ``queue`` more wait; the rest are turned away."""

    def __init__(self, slots: int = 1, queue: int = 2, wait: float = 30.0, metrics: QueueMetrics | None = None) -> None:
        self.slots, self.queue, self.wait = slots, queue, wait
        # Queue depth, waits and refusals as metrics.py counts them (NullMetrics: not counted).
        self.metrics: QueueMetrics = metrics if metrics is not None else live_metrics.LIVE
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._inside = 0  # running or waiting
        self._free = list(range(slots))

    @property
    def inside(self) -> int:
        return self._inside

    def run(self, fn: Callable[..., Any], models: Any, *args: Any) -> Any:
        """``fn(models, *args)`` in this thread, in a slot."""
        with self.slot():
            return fn(models, *args)

    @contextmanager
    def slot(self) -> Iterator[int]:
        """Hold a CV slot for the block; ``Busy`` (503, Retry-After) when too many are ahead."""
        with self._lock:
            if self._inside >= self.slots + self.queue:
                self.metrics.refused()
                raise self._busy()
            self._inside += 1
        try:
            self.metrics.queued()
            queued_at = time.perf_counter()
            if not self._semaphore.acquire(timeout=self.wait):
                self.metrics.gave_up(time.perf_counter() - queued_at)
                raise self._busy()
            self.metrics.started(time.perf_counter() - queued_at)
            with self._lock:
                number = self._free.pop()
            try:
                with model_slot(number):
                    yield number
            finally:
                with self._lock:
                    self._free.append(number)
                self._semaphore.release()
                self.metrics.finished()
        finally:
            with self._lock:
                self._inside -= 1

    def _busy(self) -> Busy:
        return Busy(f"the server is busy ({self._inside} requests running or waiting for this worker's "
                    f"{self.slots} detection slot(s)); retry in a second", headers={"Retry-After": "1"})
