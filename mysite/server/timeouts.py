"""How long a request may run and how long a stopping server waits for it: read by gunicorn's
settings and by the nginx configuration written from them. Standard library only: Elastic
Beanstalk's prebuild hook renders nginx's settings before any requirement is installed.

``MYSITE_TIMEOUT`` (seconds a request may take, default 120) and ``MYSITE_GRACEFUL_TIMEOUT``
(seconds a stopping or reloading gunicorn lets requests in flight finish, default 20).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

REQUEST_TIMEOUT = 120
GRACEFUL_TIMEOUT = 20


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive whole number of seconds, not {raw!r}")
    return value


def request_timeout(environ: Mapping[str, str] | None = None) -> int:
    """``MYSITE_TIMEOUT``: gunicorn's worker timeout; nginx waits as long, and the load balancer longer."""
    return _seconds(os.environ if environ is None else environ, "MYSITE_TIMEOUT", REQUEST_TIMEOUT)


def graceful_timeout(environ: Mapping[str, str] | None = None) -> int:
    """``MYSITE_GRACEFUL_TIMEOUT``: what a stop or reload waits for requests in flight."""
    return _seconds(os.environ if environ is None else environ, "MYSITE_GRACEFUL_TIMEOUT", GRACEFUL_TIMEOUT)
