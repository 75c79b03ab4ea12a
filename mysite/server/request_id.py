"""Request ids: a client's (or a proxy's) ``X-Request-ID`` when it is safe to log, else a new one.

Safe: 1-128 characters of letters, digits and ``-._:+/=@`` (UUIDs, W3C trace ids, base64);
anything else is replaced rather than written to the logs. The id of the request a thread
serves is ``CURRENT.get()``. Standard library only: gunicorn's logger imports it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets

ENVIRON_KEY = "mysite.request_id"
HEADER = "X-Request-ID"
MAX_ID = 128
_VALID_ID = re.compile(r"[A-Za-z0-9\-._:+/=@]{1," + str(MAX_ID) + "}")
# The id of the request this thread serves; None outside one.
CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("mysite_request_id", default=None)


def request_id(sent: str | None) -> str:
    """``sent`` when it is a safe id, else a new one (32 hex digits)."""
    if sent is not None and _VALID_ID.fullmatch(sent):
        return sent
    return secrets.token_hex(16)


class LogFilter(logging.Filter):
    """Gives each log record ``request``: `` [request <id>]`` inside a request, else empty (for the log format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = CURRENT.get()
        record.request = f" [request {rid}]" if rid else ""
        return True
