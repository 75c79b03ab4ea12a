"""Prometheus metrics for operators: requests, latency, the CV queue and the models' state.

Every process of an instance counts. ``gunicorn_conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR``
(``metrics_dir.py``) before anything imports ``prometheus_client``, so every gunicorn worker
and every process they start writes its values to files there, and ``GET /metrics`` (answered
by any worker) adds up the files of all of them. Without that variable (Flask's test client,
the development server, uWSGI) the figures are those of the process that answers.

Functions for whatever runs CV jobs (the pool's dispatcher, ``pool.py``; the per-worker ``Gate``
where there is no pool); they may be called from any process of the instance:

- ``queued()``: a job joined the queue (``mysite_queue_depth`` +1).
- ``started(wait_s)``: a queued job got a CV slot after ``wait_s`` seconds in the queue
  (depth -1, ``mysite_jobs_running`` +1, ``mysite_queue_wait_seconds`` observes ``wait_s``).
- ``gave_up(wait_s)``: a queued job left the queue without running (it waited too long):
  depth -1, ``mysite_jobs_refused_total{reason="wait"}`` +1.
- ``left()``: a queued job's client went away before it ran (depth -1, nothing refused).
- ``refused()``: a job was turned away at once, the queue being full
  (``mysite_jobs_refused_total{reason="full"}`` +1); it was never queued.
- ``finished()``: a started job ended, whatever its outcome (running -1).
- ``room_refused(room)``: a web worker turned a request away for want of room for its body or its
  picture answer (``mysite_room_refused_total{room="bodies"|"pictures"}`` +1).
- ``process_dead(pid)``: a process that counted has ended; its share of the live gauges
  (queue depth, running jobs) is dropped. gunicorn's ``child_exit`` hook calls it for workers;
  a pool calls it for the CV processes it reaps or replaces.

``NullMetrics`` has the same functions and does nothing (``MYSITE_METRICS=off``).
Flask-free: the web layer calls ``request()`` through ``observe.py``'s middleware.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# prometheus_client chose file-backed values when it was first imported (PROMETHEUS_MULTIPROC_DIR set then).
MULTIPROCESS: bool = values.ValueClass._multiprocess
CONTENT_TYPE = CONTENT_TYPE_LATEST

# One registry of our own: in one process it is what /metrics shows; across processes the files are.
_REGISTRY = CollectorRegistry(auto_describe=True)

# Pages and JSON answers take milliseconds; a 12 MP photo through a cascade takes seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OTHER_ROUTE = "other"  # requests no route matched: one label value, not one per probed URL
# Any other method a client makes up is counted as "other": label values stay a short, known list.
METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})

REQUESTS = Counter("mysite_http_requests", "HTTP requests answered, by route, method and status.",
                   ["route", "method", "status"], registry=_REGISTRY)
LATENCY = Histogram("mysite_http_request_duration_seconds",
                    "Seconds from the request reaching the app to the answer's last byte handed to the server.",
                    ["route"], buckets=LATENCY_BUCKETS, registry=_REGISTRY)
QUEUE_DEPTH = Gauge("mysite_queue_depth", "CV jobs waiting for a CV slot, all processes together.",
                    registry=_REGISTRY, multiprocess_mode="livesum")
RUNNING = Gauge("mysite_jobs_running", "CV jobs running now, all processes together.",
                registry=_REGISTRY, multiprocess_mode="livesum")
QUEUE_WAIT = Histogram("mysite_queue_wait_seconds", "Seconds a CV job waited in the queue before it ran.",
                       buckets=WAIT_BUCKETS, registry=_REGISTRY)
REFUSED = Counter("mysite_jobs_refused", "CV jobs answered 503 busy: the queue was full, or the wait too long.",
                  ["reason"], registry=_REGISTRY)
ROOM_REFUSED = Counter("mysite_room_refused", "Requests answered 503 busy for want of room in a web worker's "
                       "memory: for their body, or for a picture answer.", ["room"], registry=_REGISTRY)
CONNECTIONS_CLOSED = Counter("mysite_connections_closed", "Connections a web worker closed unread: their client "
                             "held its share of the threads, with as many waiting as it may.", registry=_REGISTRY)
# A model preloaded in gunicorn's master is 1 there and 0 in the workers' files: the largest value wins.
MODEL_LOADED = Gauge("mysite_model_loaded", "1 when the declared model is loaded, 0 when it is not.",
                     ["model", "kind", "required"], registry=_REGISTRY, multiprocess_mode="livemax")

_FULL, _WAIT = REFUSED.labels(reason="full"), REFUSED.labels(reason="wait")


class QueueMetrics(Protocol):
    """What a CV queue reports (this module, or ``NullMetrics``)."""

    def queued(self) -> None: ...
    def started(self, wait_s: float) -> None: ...
    def gave_up(self, wait_s: float) -> None: ...
    def left(self) -> None: ...
    def refused(self) -> None: ...
    def finished(self) -> None: ...
    def room_refused(self, room: str) -> None: ...


class Metrics:
    """The live metrics: each method records one event in this process's share."""

    def __init__(self) -> None:
        # (route, method, status) -> the counter and histogram children: labels() costs as much as the counting.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def queued(self) -> None:
        QUEUE_DEPTH.inc()

    def started(self, wait_s: float) -> None:
        QUEUE_DEPTH.dec()
        RUNNING.inc()
        QUEUE_WAIT.observe(wait_s)

    def gave_up(self, wait_s: float) -> None:
        QUEUE_DEPTH.dec()
        _WAIT.inc()

    def left(self) -> None:
        QUEUE_DEPTH.dec()

    def refused(self) -> None:
        _FULL.inc()

    def finished(self) -> None:
        RUNNING.dec()

    def room_refused(self, room: str) -> None:
        """A request turned away for want of room (``room``: ``bodies`` or ``pictures``; ``memory.Room``)."""
        ROOM_REFUSED.labels(room=room).inc()

    def connection_closed(self) -> None:
        """A connection closed unread, past its client's share (``server/worker.py``)."""
        CONNECTIONS_CLOSED.inc()

    def request(self, route: str, method: str, status: str, seconds: float) -> None:
        """One answered HTTP request (``route``: the URL rule, e.g. ``/v1/vision/face``)."""
        key = (route, method if method in METHODS else "other", status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (REQUESTS.labels(*key), LATENCY.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def models(self, states: Iterable[tuple[str, str, bool, bool]]) -> None:
        """(name, kind, required, loaded) of every declared model, once after loading them."""
        for name, kind, required, loaded in states:
            MODEL_LOADED.labels(name, kind, "true" if required else "false").set(1 if loaded else 0)


class NullMetrics(Metrics):
    """Records nothing: ``MYSITE_METRICS=off``."""

    def queued(self) -> None:
        pass

    def started(self, wait_s: float) -> None:
        pass

    def gave_up(self, wait_s: float) -> None:
        pass

    def left(self) -> None:
        pass

    def refused(self) -> None:
        pass

    def room_refused(self, room: str) -> None:
        pass

    def finished(self) -> None:
        pass

    def connection_closed(self) -> None:
        pass

    def request(self, route: str, method: str, status: str, seconds: float) -> None:
        pass

    def models(self, states: Iterable[tuple[str, str, bool, bool]]) -> None:
        pass


LIVE = Metrics()
NULL = NullMetrics()
# Module-level spellings, for a caller that holds no Metrics object (a CV process of a pool).
queued, started, gave_up, left, refused, finished = (LIVE.queued, LIVE.started, LIVE.gave_up, LIVE.left, LIVE.refused,
                                                    LIVE.finished)


def process_dead(pid: int) -> None:
    """Drop the live gauges of process ``pid``, which has ended (nothing to do in one process)."""
    if MULTIPROCESS:
        mark_process_dead(pid)


class _FilesCollector:
    """prometheus_client's MultiProcessCollector, minus files a starting process has created but not yet sized.

    A process makes its file empty, then gives it its size; a scrape in between would fail to read it.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self.folder, "*.db")):
            try:
                if os.path.getsize(path) >= 8:
                    files.append(path)
            except FileNotFoundError:  # a live gauge of a process that just ended
                pass
        return MultiProcessCollector.merge(files, accumulate=True)


def render() -> bytes:
    """The text exposition of every metric: all processes' files when multiprocess, else this process's."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        registry.register(_FilesCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
        return generate_latest(registry)
    return generate_latest(_REGISTRY)
