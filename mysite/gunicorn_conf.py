"""gunicorn settings for the Procfile, each overridable by the environment.

``PORT`` (Elastic Beanstalk sets 8000), ``WEB_CONCURRENCY`` (worker processes,
default: one per CPU), ``MYSITE_THREADS`` (threads per worker), ``MYSITE_TIMEOUT``
(seconds a request may take), ``MYSITE_CV_THREADS`` (OpenCV's threads per worker,
default: CPUs / workers). ``GUNICORN_CMD_ARGS`` overrides anything here, as
gunicorn documents. Why these defaults: README, "Performance".
"""

import os


def _cpus() -> int:
    """CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Detection is CPU-bound: one sync worker per CPU. Measured (bench/): two workers with one
# OpenCV thread each serve 1.8-2.5x the requests of one, while a second worker on top of
# OpenCV's own 2-thread pool oversubscribes the cores and loses a third on small photos.
workers = int(os.environ.get("WEB_CONCURRENCY", str(_cpus())))
threads = int(os.environ.get("MYSITE_THREADS", "1"))
timeout = int(os.environ.get("MYSITE_TIMEOUT", "60"))
graceful_timeout = 20
# Workers x OpenCV threads = CPUs: no oversubscription. One worker alone gets every CPU.
# Read by create_app() below (preload), so the forked workers inherit it.
os.environ.setdefault("MYSITE_CV_THREADS", str(max(1, _cpus() // max(1, workers))))
# Load the app (and its models) once in the master: workers share its memory and start at once.
preload_app = True
accesslog = "-"
errorlog = "-"
