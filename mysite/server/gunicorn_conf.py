"""gunicorn settings for the Procfile, each overridable by the environment.

``PORT`` (Elastic Beanstalk sets 8000), ``WEB_CONCURRENCY`` (worker processes,
default: one per CPU, at least 2), ``MYSITE_THREADS`` (threads per worker), ``MYSITE_TIMEOUT``
(seconds before gunicorn replaces a stuck worker), ``MYSITE_CV_THREADS`` (OpenCV's threads per CV
process, default: OpenCV's, one per CPU). ``GUNICORN_CMD_ARGS`` overrides anything here, as gunicorn
documents. The CV process pool starts in ``when_ready``. Why these defaults: docs/performance.md.
"""

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mysite.server import cpus, gunicorn_errors, metrics_dir, pool, timeouts
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


bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Web workers only move bytes (the CV work runs in the process pool, mysite/server/pool.py); two
# of them, so a worker being replaced never leaves the site without one.
workers = int(os.environ.get("WEB_CONCURRENCY", str(max(2, cpus.available()))))
# Threads per worker (gthread): each request holds one while it uploads and waits its turn in the pool's
# queue; enough that a crowd can wait while /healthz still finds a free one. gthread, with a deadline
# for each request's headers (mysite/server/worker.py).
worker_class = "mysite.server.worker.DeadlineWorker"
# Threads would each get a malloc heap of their own (up to 8 per CPU), and what one frees the
# others do not reuse: two heaps, set here in the master before any thread, inherited by the workers.
limit_arenas(int(os.environ.get("MALLOC_ARENA_MAX", "2")))
threads = int(os.environ.get("MYSITE_THREADS", "64"))
# A web thread waits at most for the upload, the queue and the work deadlines (MYSITE_UPLOAD_DEADLINE,
# MYSITE_QUEUE_DEADLINE, MYSITE_WORK_DEADLINE); gunicorn's own timeout only catches a stuck worker.
timeout = timeouts.request_timeout()
graceful_timeout = timeouts.graceful_timeout()
# MYSITE_CV_THREADS is left to OpenCV (one thread per CPU in every CV process): a lone request uses every
# CPU, and under load OpenCV hands out stripes as threads get a CPU (docs/performance.md).
# Load the app (and its models) once in the master: the pool's processes fork from it holding them.
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


def when_ready(server: Any) -> None:
    """Start the instance's CV process pool from the master, which holds the loaded models, and make
    it where the app's CV work runs: the workers forked after this send their work to it
    (mysite/server/pool.py)."""
    from mysite.web.state import app_state

    state = app_state(server.app.wsgi())
    settings = state.settings
    processes = settings.cv_processes if settings.cv_processes >= 0 else cpus.available()
    if processes == 0:
        return
    # The app's CV work goes to the pool from now on: the workers forked after this inherit it.
    state.runner = pool.start(state.registry, processes, settings.queue_deadline, settings.work_deadline,
                              settings.cv_memory_mb, close_fds=_masters_fds(server), metrics=state.metrics,
                              share_cpus=_opencv_threads(), cpus=cpus.Share(cpus.available()))
    _look_after_pool(server, state)


def _look_after_pool(server: Any, state: Any) -> None:
    """Each turn of the master's loop, after its workers: a dispatcher that has gone is started again (on
    the socket the workers know), or the site would answer 503 to every image until restarted by hand.
    gunicorn has no hook in that loop, so this one wraps its step that looks after the workers."""
    manage = server.manage_workers

    def manage_workers() -> None:
        manage()
        gone = state.runner
        revived = pool.revive(close_fds=_masters_fds(server))
        if revived is not None:
            metrics_dir.worker_exited(gone.dispatcher)  # its queue and running gauges no longer count
            state.runner = revived

    server.manage_workers = manage_workers


def _masters_fds(server: Any) -> list[int]:
    """The master's descriptors a dispatcher must not hold: its listeners, its pipe, its workers' heartbeat files."""
    workers = getattr(server, "WORKERS", {}).values()
    return ([s.fileno() for s in getattr(server, "LISTENERS", [])] + list(getattr(server, "PIPE", []))
            + [w.tmp.fileno() for w in workers if getattr(w, "tmp", None) is not None])


def _opencv_threads() -> Callable[[int], None]:
    """OpenCV's threads for one job: the CPUs no other job holds, up to the pool size set at start
    (``MYSITE_CV_THREADS``): threads beyond them only wait for the CPUs the other jobs hold."""
    import cv2

    most = max(1, cv2.getNumThreads())

    def share(spare: int) -> None:
        cv2.setNumThreads(min(most, spare))

    return share


def on_exit(server: Any) -> None:
    pool.stop()
    metrics_dir.remove()
