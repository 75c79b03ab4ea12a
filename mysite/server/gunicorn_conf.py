"""gunicorn settings for the Procfile, each overridable by the environment.

``PORT`` (Elastic Beanstalk sets 8000), ``WEB_CONCURRENCY`` (worker processes,
default: one per CPU, at least 2), ``MYSITE_THREADS`` (threads per worker), ``MYSITE_TIMEOUT``
(seconds a request may take), ``MYSITE_CV_THREADS`` (OpenCV's threads per worker,
default: OpenCV's, one per CPU). ``GUNICORN_CMD_ARGS`` overrides anything here, as
gunicorn documents. Why these defaults: README, "Performance".
"""

import os
import sys
from pathlib import Path
from typing import Any

from mysite.server import gunicorn_errors, metrics_dir
from mysite.server.memory import limit_arenas


def _in_gunicorn() -> bool:
    """Whether gunicorn is reading this file (not a test or a tool importing it for a value)."""
    argv0 = Path(sys.argv[0] if sys.argv else "")
    return argv0.name == "gunicorn" or "gunicorn" in argv0.parts


# Every worker (and every process it starts) writes its metrics to one folder, set up here in the
# master before the app, and with it prometheus_client, is loaded (mysite/server/metrics_dir.py).
if _in_gunicorn():
    metrics_dir.prepare()


def child_exit(server: object, worker: Any) -> None:
    """A worker ended: its share of the live gauges (queue depth, running jobs) goes with it."""
    metrics_dir.worker_exited(worker.pid)


def on_exit(server: object) -> None:
    metrics_dir.remove()


def _cpus() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Detection is CPU-bound: one sync worker per CPU, and never fewer than two, so a slow client
# or ?url= fetch holds up one worker, not the site. Measured (python -m bench, 2 CPUs): two
# workers with one OpenCV thread each serve 1.9x the requests of one.
workers = int(os.environ.get("WEB_CONCURRENCY", str(max(2, _cpus()))))
# Threads per worker (gthread): a slow upload, a ?url= fetch or /healthz each take a thread, not the
# worker; detections still run one at a time per worker (mysite/server/concurrency.py), so memory and
# throughput stay those of one request per worker. Measured: README, "Slow clients and /healthz".
worker_class = "gthread"
# Threads would each get a malloc heap of their own (up to 8 per CPU), and what one frees the
# others do not reuse: two heaps, set here in the master before any thread, inherited by the workers.
limit_arenas(int(os.environ.get("MALLOC_ARENA_MAX", "2")))
threads = int(os.environ.get("MYSITE_THREADS", "8"))
# The slowest legitimate request measured here: a 40 MP photo (the pixel limit) through a cascade
# with min_face=0, scale_factor=1.05 and min_neighbors=0: 42 s on 2 CPUs. 120 s leaves room for a
# slower host before gunicorn would kill the worker.
timeout = int(os.environ.get("MYSITE_TIMEOUT", "120"))
graceful_timeout = 20
# MYSITE_CV_THREADS is left to OpenCV (one thread per CPU in every worker). Measured: under
# load this oversubscription costs nothing (9.16 vs 9.08 req/s with 8 clients: OpenCV's pool
# hands out stripes as threads get a CPU), while a lone request finishes in half the time
# (116 vs 214 ms on the group photo). MYSITE_CV_THREADS=1 forbids it.
# Load the app (and its models) once in the master: workers share its memory and start at once.
preload_app = True
accesslog = "-"
# One JSON line per request with its request id; an API key a client put in the query string is redacted.
logger_class = "mysite.server.accesslog.RedactingLogger"
errorlog = "-"
# gunicorn >= 25 opens a control socket at one fixed path; a web app does not need it, and two
# instances on one machine (tests, benchmarks) would fight over it.
control_socket_disable = True

# gunicorn's own answers to requests it cannot parse (request line over limit_request_line: 414,
# a header over limit_request_field_size: 431) are HTML; the app's clients read JSON. gunicorn's
# default limits (4094 bytes, 8190 bytes) stay: nginx in front (Elastic Beanstalk, the Docker
# image) answers over 8 KB itself, and no endpoint needs a longer line.
gunicorn_errors.install()
