"""gunicorn settings for the Procfile, each overridable by the environment.

``PORT`` (Elastic Beanstalk sets 8000), ``WEB_CONCURRENCY`` (worker processes),
``MYSITE_THREADS`` (threads per worker), ``MYSITE_TIMEOUT`` (seconds a request
may take). ``GUNICORN_CMD_ARGS`` overrides anything here, as gunicorn documents.
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# Detection is CPU-bound: one sync worker per core of a small instance.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("MYSITE_THREADS", "1"))
timeout = int(os.environ.get("MYSITE_TIMEOUT", "60"))
graceful_timeout = 20
# Load the app (and its models) once in the master: workers share its memory and start at once.
preload_app = True
accesslog = "-"
errorlog = "-"
# gunicorn >= 25 opens a control socket at one fixed path; a web app does not need it, and two
# instances on one machine (tests, benchmarks) would fight over it.
control_socket_disable = True
