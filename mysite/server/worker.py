"""gunicorn's threaded worker with a deadline for each request's line and headers.

gthread waits a few seconds for a new connection's first byte, then reads the headers
with a blocking socket and no timeout: a client that sends one byte a second holds a
thread for as long as it likes, and a few hundred such clients hold every thread
(``/healthz`` included). Here a timer shuts the connection when the headers are not in
within ``MYSITE_HEADER_DEADLINE`` seconds of the thread taking it; the blocked read
returns, and gunicorn closes the connection as it does for a client that went away.
Bodies have their own deadline (``upload_deadline.py``), answers theirs (``send_deadline.py``).
Deadlines bound how long one connection holds a thread, not how many one client holds: each client
gets at most ``MYSITE_CLIENT_THREADS`` of them, its other connections wait their turn
(``client_share.py``), and the app is told whose share a request is (its picture answers have a part of
their own). Behind a trusted proxy the client is the one its ``X-Forwarded-For`` names: a request that
finds no thread for that client is parked, its headers read and its body still in the socket, and
waits in that client's queue without a thread, as a connection of its own would. A worker also keeps
some freed heap for its next upload (``memory.WEB_KEEP``).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.workers.gthread import _DEFER, ThreadWorker

from mysite import settings as settings_mod
from mysite.errors import Busy
from mysite.server import client_share, deadlines, memory, metrics
from mysite.server.upload_deadline import BODY_ERROR, LAST_ANSWER

# Connections one client may have waiting for its threads, per thread it may hold: a browser or a
# batch client never comes near; a client past it is opening connections only to hold them.
WAITING_PER_THREAD = 4
# One thread in this many is kept from clients past their first thread: for trusted peers (a load
# balancer's health checks) and for clients asking one thing at a time.
KEPT_BACK = 8
_serving = threading.local()  # the client whose request this thread runs (gunicorn builds the environ)
_PARKED = object()  # a thread's answer for a request it parked: the connection is in its client's queue


class _Replay:
    """A connection's parser that gives back the request parked on it, once, then is the parser again."""

    def __init__(self, conn: Any, req: Any) -> None:
        self._conn, self._req, self._parser = conn, req, conn.parser

    def __iter__(self) -> _Replay:
        return self

    def __next__(self) -> Any:
        self._conn.parser = self._parser
        return self._req

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


def _end(sock: socket.socket, linger: float = 2.0, most: int = 65536) -> None:
    """gunicorn's graceful close without the close: send the end, let the client close its side (reading
    what it still sends, within ``linger`` seconds and ``most`` bytes), then stop reading. The socket
    stays open for gunicorn to close, which counts the connection gone only then."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    ends = time.monotonic() + linger
    drained = 0
    while drained < most and (left := ends - time.monotonic()) > 0:
        try:
            sock.settimeout(left)
            data = sock.recv(4096)
        except OSError:
            break
        if not data:
            break
        drained += len(data)
    deadlines.shut(sock, socket.SHUT_RD)


class DeadlineWorker(ThreadWorker):
    """``ThreadWorker`` whose connections must deliver a request's headers in time, and whose clients each
    get a share of its threads."""

    header_deadline = settings_mod.Settings.header_deadline
    shares: client_share.ClientShare[Any] | None = None
    trusted: list[client_share.Network] | None = None
    refused = 0
    longest: float = math.inf  # the body limit, from the settings when the process starts
    recorder: metrics.Metrics = metrics.NULL

    def init_process(self) -> None:
        memory.hold_heap(memory.WEB_KEEP, memory.WEB_OWN_MAP)
        super().init_process()  # loads the app (load_wsgi), then serves

    def _configure(self, settings: settings_mod.Settings) -> None:
        self.header_deadline = settings.header_deadline
        self.longest = settings.max_body_bytes
        self.recorder = metrics.NULL if settings.metrics_access == "off" else metrics.LIVE
        most = settings.client_threads
        if most:
            threads = self.cfg.threads
            self.shares = client_share.ClientShare(most, most * WAITING_PER_THREAD,
                                                   together=threads - max(1, threads // KEPT_BACK))
            self.trusted = client_share.trusted_networks(self.cfg.forwarded_allow_ips)

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Stopping: gunicorn closes the listeners only after the drain, and until then the kernel takes
            # new connections that are reset at the end. Closed now (the master's copies already are), a
            # client is refused at once and may go elsewhere.
            for listener in self.sockets:
                listener.close()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self._configure(_settings_of(self.wsgi))
        self.wsgi: Any = _serving_environ(self.wsgi)

    def enqueue_req(self, conn: Any) -> None:
        """Give ``conn`` a thread when its client has one to spare; else queue it, or close it."""
        if self.shares is None or (key := client_share.client_key(conn.client, self.trusted)) is None:
            return super().enqueue_req(conn)
        if self._gone(conn):  # a kept-alive connection the client closed: no thread, no place in its queue
            return self._close(conn)
        verdict = self._enter(key, conn)
        if verdict == "run":
            conn.mysite_client = key
            return super().enqueue_req(conn)
        if verdict == "refuse":
            self.recorder.connection_closed()
            self._note_refused(key, "closed a connection from")
            self._close(conn)
        return None

    def _enter(self, key: str, conn: Any) -> str:
        """``shares.enter`` for ``conn``: a full queue first gives up the connections closed while they waited."""
        assert self.shares is not None
        verdict = self.shares.enter(key, conn)
        if verdict == "refuse":
            for dead in self.shares.drop(key, self._gone):
                self._close(dead)
            verdict = self.shares.enter(key, conn)
        return verdict

    def _note_refused(self, key: str, what: str) -> None:
        assert self.shares is not None
        self.refused += 1
        if self.refused % 100 == 1:  # a client that is refused once is refused many times: not a line each
            self.log.warning("%s %s: it already had %d on threads and %d waiting (%d refused so)", what, key,
                             self.shares.most, self.shares.waiting, self.refused)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    def _gone(self, conn: Any) -> bool:
        """Whether ``conn``'s client has closed it (or it failed), from what waits unread on it."""
        if self.cfg.is_ssl:  # an SSL socket cannot peek; its requests take a thread as before
            return False
        unreader = getattr(conn.parser, "unreader", None)
        if unreader is not None and unreader.buf.getvalue():  # a request read ahead is still to serve
            return False
        try:
            return conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def handle(self, conn: Any) -> Any:
        parked, conn.mysite_parked = getattr(conn, "mysite_parked", None), None
        if parked is not None:  # its client's thread is free now: gthread reads it from the parser as new
            conn.parser = _Replay(conn, parked)
        timer = deadlines.after(self.header_deadline, deadlines.shut, conn.sock)
        conn.mysite_header_timer = timer
        keep = None
        try:
            keep = super().handle(conn)
            if not keep and keep is not _DEFER:
                # gthread closes an ended connection on its main loop, waiting up to 2 s there for the
                # client to close its end: clients that never do stalled every connection of the
                # worker. Here the wait is this thread's, within its client's share, and the main
                # loop's close finds nothing more to wait for.
                _end(conn.sock)
            return keep
        finally:
            timer.cancel()
            self._pass_thread_on(conn)
            resumed = getattr(conn, "mysite_resumed", None)
            if resumed is not None and keep is not _PARKED:  # its request never reached handle_request
                conn.mysite_resumed = None
                self._hand_on(resumed)

    def _pass_thread_on(self, conn: Any) -> None:
        """``conn``'s thread is done with it: the next connection its client has waiting takes it."""
        key, conn.mysite_client = getattr(conn, "mysite_client", None), None
        if key is not None:
            self._hand_on(key)

    def _hand_on(self, key: str) -> None:
        """A thread of ``key``'s is done: the next connection the client has waiting takes it."""
        if self.shares is None:
            return
        waiting = self.shares.leave(key)
        if waiting is not None:
            if getattr(waiting, "mysite_parked", None) is not None:
                waiting.mysite_resumed = key  # a request the proxy forwarded: this thread is its client's
            else:
                waiting.mysite_client = key
            try:
                super().enqueue_req(waiting)
            except RuntimeError:  # the thread pool has shut down: the worker is stopping
                waiting.close()

    def handle_request(self, req: Any, conn: Any) -> Any:
        timer = getattr(conn, "mysite_header_timer", None)
        if timer is not None:  # the headers are in: the body and the answer have deadlines of their own
            timer.cancel()
        client = getattr(conn, "mysite_client", None)
        forwarded, conn.mysite_resumed = getattr(conn, "mysite_resumed", None), None
        refused = False
        if client is None and forwarded is None and (forwarded := self._forwarded_client(req, conn)) is not None:
            verdict = self._enter_forwarded(forwarded, req, conn)
            if verdict == "wait":
                return _PARKED
            refused = verdict == "refuse"
        taken = forwarded is not None and not refused
        if refused or _declared(req) > self.longest:  # answered before its body: do not invite the body in
            req._expected_100_continue = False
        _serving.client, _serving.refused, _serving.request = client or forwarded, refused, req
        try:
            return super().handle_request(req, conn)
        except TimeoutError:  # send_deadline.py's timeout: the client stopped reading its answer
            self.log.info("closed a connection whose client did not read its answer in time: %s %s",
                          req.method, req.path)
            return False
        finally:
            _serving.request = None
            if taken and forwarded is not None:
                self._hand_on(forwarded)

    def _enter_forwarded(self, key: str, req: Any, conn: Any) -> str:
        """``enter`` for a request a proxy forwards for ``key``: parked on ``conn`` when it has to wait."""
        conn.mysite_parked = req  # before it is queued: a thread may take it from the queue at once
        verdict = self._enter(key, conn)
        if verdict != "wait":
            conn.mysite_parked = None
        if verdict == "refuse":
            self._note_refused(key, "answered 503 at once to a request forwarded for")
        return verdict

    def _keepalive_after(self, conn: Any, keepalive: Any) -> Any:
        return keepalive if keepalive is _PARKED else super()._keepalive_after(conn, keepalive)

    def finish_request(self, conn: Any, fs: Any) -> None:
        if not fs.cancelled() and fs.exception() is None and fs.result() is _PARKED:
            return  # in its client's queue: neither closed nor polled until a thread takes it
        super().finish_request(conn, fs)

    def _forwarded_client(self, req: Any, conn: Any) -> str | None:
        """The client a trusted proxy forwards ``req`` for, from its ``X-Forwarded-For`` (the proxy itself when
        the header names no one for sure); None for others."""
        if self.shares is None or not client_share.is_proxy(conn.client, self.trusted):
            return None
        forwarded = ",".join(value for name, value in req.headers if name == "X-FORWARDED-FOR")
        if not forwarded:
            return None
        return client_share.forwarded_client(forwarded, self.trusted, client_share.peer_name(conn.client))


def _settings_of(app: Any) -> settings_mod.Settings:
    """The settings ``app`` was made with: under ``preload_app`` the master's, which its pool and its limits
    follow until a restart (a reload keeps them), so the worker's deadlines and shares follow them too."""
    from mysite.web.state import current_settings  # here: gunicorn's settings import this module first

    try:
        return current_settings(app)
    except (AttributeError, KeyError):  # another WSGI app: the settings as the environment gives them
        return settings_mod.load()


def _declared(req: Any) -> int:
    """The body length ``req``'s Content-Length gives (gunicorn has checked it is a number); 0 without one."""
    return next((int(value) for name, value in req.headers if name == "CONTENT-LENGTH"), 0)


def _serving_environ(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``app``, told whose share the request's connection takes: in its environ (``client_share.ENVIRON_KEY``)
    and, while it runs, in ``client_share.CURRENT``; and how to make its answer the connection's last
    (``upload_deadline.LAST_ANSWER``)."""

    def named(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        client = getattr(_serving, "client", None)
        if client is not None:
            environ[client_share.ENVIRON_KEY] = client
        request = getattr(_serving, "request", None)
        if request is not None:  # gunicorn's answer then says "Connection: close", and it closes the connection
            environ[LAST_ANSWER] = lambda: setattr(request, "must_close", True)
        if getattr(_serving, "refused", False):  # answered before its body is read (upload_deadline drains it)
            environ[BODY_ERROR] = Busy(f"the server is busy with other requests from {client}; retry when one is "
                                       "answered", headers={"Retry-After": "1"})
        token = client_share.CURRENT.set(client)
        try:
            return app(environ, start_response)
        finally:
            client_share.CURRENT.reset(token)

    return named
