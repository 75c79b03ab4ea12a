"""gunicorn's own error answers (414, 431, 400 on a malformed request) in the app's JSON shape.

gunicorn answers requests it cannot parse before the app sees them, with a fixed HTML page
written by ``gunicorn.util.write_error``; it has no setting for another body. The workers call
that function through the module (``util.write_error``), so replacing it once in the master,
before the workers fork, changes every such answer. The message is gunicorn's own, which names
the limit but nothing of the server.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

from mysite.errors import reason_for
from mysite.server.request_id import HEADER, request_id


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Write gunicorn's error answer as ``{"status", "message", "reason"}`` and close-delimit it."""
    body = json.dumps({"status": reason.lower(), "message": mesg,
                       "reason": reason_for(status_int).value}).encode()
    # The request could not be read, so no id it sent can be trusted: a new one, as on every answer.
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n{HEADER}: {request_id(None)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def install() -> None:
    """Make gunicorn's workers answer their own errors in JSON (idempotent)."""
    util.write_error = write_json_error
