"""gunicorn's threaded worker with a deadline for each request's line and headers.

gthread waits a few seconds for a new connection's first byte, then reads the headers
with a blocking socket and no timeout: a client that sends one byte a second holds a
thread for as long as it likes, and a few hundred such clients hold every thread
(``/healthz`` included). Here a timer shuts the connection when the headers are not in
within ``MYSITE_HEADER_DEADLINE`` seconds of the thread taking it; the blocked read
returns, and gunicorn closes the connection as it does for a client that went away.
Bodies have their own deadline (``upload_deadline.py``), answers theirs (``send_deadline.py``).
A worker also keeps some freed heap for its next upload (``memory.WEB_KEEP``).
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from mysite import settings as settings_mod
from mysite.server import deadlines, memory


class DeadlineWorker(ThreadWorker):
    """``ThreadWorker`` whose connections must deliver a request's headers in time."""

    header_deadline = settings_mod.Settings.header_deadline

    def init_process(self) -> None:
        self.header_deadline = settings_mod.load().header_deadline
        memory.hold_heap(memory.WEB_KEEP, memory.WEB_OWN_MAP)
        super().init_process()

    def handle(self, conn: Any) -> Any:
        timer = deadlines.after(self.header_deadline, deadlines.shut, conn.sock)
        conn.mysite_header_timer = timer
        try:
            return super().handle(conn)
        finally:
            timer.cancel()

    def handle_request(self, req: Any, conn: Any) -> Any:
        timer = getattr(conn, "mysite_header_timer", None)
        if timer is not None:  # the headers are in: the body and the answer have deadlines of their own
            timer.cancel()
        try:
            return super().handle_request(req, conn)
        except TimeoutError:  # send_deadline.py's timeout: the client stopped reading its answer
            self.log.info("closed a connection whose client did not read its answer in time: %s %s",
                          req.method, req.path)
            return False
