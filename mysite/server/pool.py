"""One queue of CV work per instance, served by processes that hold the models.

Why: a request's cost depends on its bytes (a header with a million markers, a progressive
JPEG of a thousand scans, a decoder's appetite), and predicting it has leaked before. So the
work that reads the client's bytes runs in a process of its own, and the bound holds by
construction: a process that passes ``MYSITE_WORK_DEADLINE`` is killed, one that passes its
memory rlimit fails its request, and either is replaced by a fresh fork that already holds
the models. The web threads only move bytes; they never run a model.

Shape: gunicorn's master (which loaded the app) forks the *dispatcher* once
(``gunicorn_conf.when_ready``); the dispatcher forks ``MYSITE_CV_PROCESSES`` workers and keeps one
queue of waiting requests for the whole instance, so no request is turned away while any process
could take it. The queue takes clients in turn (``fair_queue.py``), each one's requests oldest
first, so a client that keeps many in it does not hold the others behind them. A web thread connects
to the dispatcher's Unix socket and waits; the dispatcher hands the connection itself (its file
descriptor) to the next free process, which answers on it directly: the request's bytes never pass
through the dispatcher. A request not started within ``MYSITE_QUEUE_DEADLINE`` gets 503 ``busy``
with ``Retry-After``.

The dispatcher never runs client work, so it answers ``status`` at once whatever the
processes are doing: ``/healthz`` reads it.

Frames on a connection: web -> dispatcher ``J`` and its client's name (``client_share.CURRENT``; none
for requests no client is named for, which take one turn together) with the job's file descriptor
(SCM_RIGHTS), or ``S``
(status); dispatcher -> web ``B`` (busy: gave up waiting), ``T`` (its process passed the work deadline
and was stopped), ``X`` (its process died), or a JSON status line; process -> web ``A`` and a
length-prefixed pickle, ``("ok", value)`` or ``("error", ApiError.parts())``. The job itself is
written by the web thread, before it queues, into a memory file (``memfd``): a small header, the
pickle of ``(fn, args)`` with protocol 5, and the large byte strings (the image) out of band after it.
The dispatcher hands that file to the process with the connection, so a free process starts at
once, without a round trip to the web thread, and reads each image in one copy. Process ->
dispatcher, on its own socket: ``D`` (done, free again) or ``L`` (done, and exiting: replace me).
Only this instance's own processes are on the socket (a private folder), so pickle carries nothing
a client wrote but bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import json
import logging
import math
import os
import pickle
import resource
import selectors
import signal
import socket
import struct
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mysite.errors import ApiError, Busy, Reason, TooLarge, Unavailable
from mysite.server import client_share, memory, native_output, request_id, tempdirs
from mysite.server import cpus as cpu_share
from mysite.server.fair_queue import FairQueue

if TYPE_CHECKING:  # metrics.py imports prometheus_client, which gunicorn_conf must not import before its folder is set
    from mysite.server.metrics import QueueMetrics

log = logging.getLogger(__name__)

LENGTH = struct.Struct("!Q")
JOB_HEAD = struct.Struct("!II")  # pickle's length, number of out-of-band buffers (each then a LENGTH)
OUT_OF_BAND = 64 * 1024  # byte strings this long cross as raw bytes after the pickle, not inside it
MAX_BUFFERS = 64
MAX_FRAME = 1 << 34
MAX_CLIENT = 64  # bytes of the client's name a job carries (an IPv6 /64 takes 24)
# While another client has had a job started within this many seconds, no client takes the last free
# process: one that sends a photo now and then finds a process, not another client's long jobs.
KEEP_FOR_OTHERS = 2.0
# A client's CV time counts in its turn for about this long (seconds; it halves in that time), so that
# a client whose jobs are long comes after one whose jobs are short.
USAGE_HALF_LIFE = 30.0
# A CV process keeps the heap its requests freed, up to KEEP_HEAP, for the next one: trimming after every
# request made the next fault its buffers back in (docs/serving.md).
KEEP_HEAP = 24 * 1024 * 1024
# A decode estimated at this much or more gets the kept heap back first (_make_room): it takes maps of its own,
# beside the kept heap, and such a request then peaks as in a fresh process. A smaller one (a 12 MP photo's
# estimate is 36 MB) has at most KEEP_HEAP beside it.
MAKE_ROOM = 64 * 1024 * 1024
# Past KEEP_OWN + KEEP_HEAP over its start (RssAnon) a CV process trims; still past KEEP_OWN, what it holds
# is in use (buffers that models keep for the sizes they have seen: a cascade's pyramid, dlib's layers), so
# it leaves, and a fresh fork, sharing the models, takes its place.
KEEP_OWN = 20 * 1024 * 1024
# The master stops the pool with this, after its workers are done: a SIGTERM may be a stop of the whole
# process group (systemd), which must not end the work those workers still wait for.
STOP_SIGNAL = signal.SIGUSR1
FORK_RETRY = 1.0  # seconds between tries to start a CV process when forking fails


class PoolTimeout(Unavailable):
    """The work on this request passed the deadline: its process was stopped."""

    status, reason = "timeout", Reason.TIMEOUT


@dataclass
class Client:
    """The web side: sends work to the instance's pool and waits for the answer."""

    path: str
    queue_deadline: float
    work_deadline: float
    dispatcher: int = 0  # pid, for stop()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(models, *args)`` in a CV process; its value, or the ``ApiError`` it raised."""
        try:
            job = write_job(fn, args, request_id.CURRENT.get())
        except OSError:  # no memory or no descriptor for the job's file: this instance is full for now
            raise Unavailable("the server has no room for this request now; retry in a few seconds",
                              headers={"Retry-After": "5"}, reason=Reason.UNAVAILABLE) from None
        try:
            with self._connect() as conn:
                # Named, its client's jobs take their turns with other clients' (``fair_queue.py``).
                socket.send_fds(conn, [b"J" + (client_share.CURRENT.get() or "").encode()[:MAX_CLIENT]], [job])
                os.close(job)
                job = -1
                # The dispatcher answers B, T or X itself when it gives up or its process does; this is if it cannot.
                conn.settimeout(self.queue_deadline + self.work_deadline + 2.0)
                kind, answer = b"", None
                try:
                    kind = conn.recv(1)
                    if kind == b"A":
                        answer = _recv_frame(conn)
                except TimeoutError:
                    kind = b"B"  # no word from the dispatcher in time: as busy
                except (OSError, EOFError):
                    pass
        finally:
            if job >= 0:
                os.close(job)
        if answer is None:
            raise self._failed(kind)
        result, value = pickle.loads(answer)
        if result == "ok":
            return value
        raise ApiError.from_parts(*value)

    def run(self, fn: Callable[..., Any], models: Any, *args: Any) -> Any:
        """``call``, as a ``concurrency.Runner``: the CV processes hold the models, so ``models`` stays here."""
        return self.call(fn, *args)

    def status(self, timeout: float = 1.0) -> dict[str, Any] | None:
        """The dispatcher's counts (processes, busy, waiting, ...), or None when it does not answer in time."""
        try:
            with self._connect(timeout) as conn:
                conn.sendall(b"S")
                conn.settimeout(timeout)
                line = conn.makefile("rb").readline(65536)
            return json.loads(line) if line else None
        except (OSError, ValueError, Unavailable):
            return None

    def _connect(self, timeout: float = 2.0) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(self.path)
        except OSError:
            conn.close()
            raise Unavailable("the detection processes are not running; the server is restarting or stopping",
                              headers={"Retry-After": "5"}, reason=Reason.UNAVAILABLE) from None
        return conn

    def _busy(self) -> Busy:
        return Busy(f"the server is busy: no detection process became free within {self.queue_deadline:g} s "
                    "(MYSITE_QUEUE_DEADLINE); retry in a second", headers={"Retry-After": "1"})

    def _failed(self, kind: bytes) -> ApiError:
        if kind == b"B":
            return self._busy()
        if kind == b"":
            return Unavailable("the detection processes stopped before this request was answered; they start "
                               "again by themselves: retry in a few seconds", headers={"Retry-After": "2"},
                               reason=Reason.UNAVAILABLE)
        if kind == b"T":
            return PoolTimeout(f"the work on this image passed the server's deadline of {self.work_deadline:g} s "
                               "(MYSITE_WORK_DEADLINE) and was stopped; send a smaller or simpler image")
        return Unavailable("the process working on this image stopped (it may have run out of memory); "
                           "send a smaller image", reason=Reason.UNAVAILABLE)


def write_job(fn: Callable[..., Any], args: tuple[Any, ...], request: str | None = None) -> int:
    """A memory file holding ``(fn, args)`` and the request's id, read back by ``read_job``; its descriptor
    (the caller closes it).

    Byte strings of ``OUT_OF_BAND`` bytes or more (an argument, or a ``Job``'s images: see
    ``pipeline.Job.__reduce_ex__``) are written raw after the pickle: one copy each, none in pickle.
    """
    buffers: list[pickle.PickleBuffer] = []
    wrapped = tuple(pickle.PickleBuffer(a) if type(a) is bytes and len(a) >= OUT_OF_BAND else a for a in args)
    payload = pickle.dumps((fn, wrapped, request), protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    if len(raws) > MAX_BUFFERS:
        raise ValueError(f"{len(raws)} out-of-band buffers; the limit is {MAX_BUFFERS}")
    head = JOB_HEAD.pack(len(payload), len(raws)) + b"".join(LENGTH.pack(r.nbytes) for r in raws)
    fd = _memory_file()
    try:
        parts: list[Any] = [head, payload, *raws]
        total = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
        written = os.writev(fd, parts)
        if written < total:  # a short write (not seen on a memory file): the rest, piece by piece
            rest = b"".join(bytes(p) for p in parts)[written:]
            while rest:
                rest = rest[os.write(fd, rest):]
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_job(fd: int) -> tuple[Callable[..., Any], tuple[Any, ...], str | None]:
    """``(fn, args, request id)`` from a file ``write_job`` wrote; each out-of-band byte string read in one copy."""
    length, count = JOB_HEAD.unpack(_pread_exact(fd, JOB_HEAD.size, 0))
    if count > MAX_BUFFERS:
        raise ValueError(f"a job with {count} buffers")
    offset = JOB_HEAD.size
    sizes = [LENGTH.unpack(_pread_exact(fd, LENGTH.size, offset + i * LENGTH.size))[0] for i in range(count)]
    offset += count * LENGTH.size
    payload = _pread_exact(fd, length, offset)
    offset += length
    buffers = []
    for size in sizes:
        buffers.append(_pread_exact(fd, size, offset))
        offset += size
    fn, args, request = pickle.loads(payload, buffers=buffers)
    return fn, args, request


def _memory_file() -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create("mysite-job", os.MFD_CLOEXEC)
    fd, name = tempfile.mkstemp(prefix="mysite-job-")  # no memfd (not Linux): an unlinked file does the same
    os.unlink(name)
    return fd


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) == n:
        return data
    pieces = [data]
    got = len(data)
    while got < n:  # reads of over 2 GB come back short
        more = os.pread(fd, n - got, offset + got)
        if not more:
            raise EOFError("the job file is shorter than its header says")
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)


_client: Client | None = None
_again: Callable[..., Client] | None = None  # starts another dispatcher as the last one was started


def start(models: Any, processes: int, queue_deadline: float, work_deadline: float, memory_mb: float,
          close_fds: Iterable[int] = (), metrics: QueueMetrics | None = None,
          share_cpus: Callable[[int], None] | None = None, cpus: cpu_share.Share | None = None,
          path: str | None = None) -> Client:
    """Fork the dispatcher (it forks the CV processes); this process and its later forks send work to it.

    ``metrics``: where the dispatcher reports the queue (``mysite/server/metrics.py``; None: nowhere).
    ``share_cpus(n)`` is called in a CV process before each job with the number of threads it should use:
    the CPUs ``cpus`` gives it (``cpus.Share``, default: as many as ``processes``). ``path``: the socket of
    a dispatcher that has gone, which the web workers still connect to (``revive``).
    """
    global _client, _again
    close_fds = tuple(close_fds)
    if path is None:
        # Whatever answers on the socket is trusted with the jobs' pickles.
        path = str(Path(tempdirs.private_folder("mysite-pool-")) / "queue.sock")
    else:
        tempdirs.own_folder(os.path.dirname(path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    _again = functools.partial(start, models, processes, queue_deadline, work_deadline, memory_mb,
                               close_fds=close_fds, metrics=metrics, share_cpus=share_cpus, cpus=cpus, path=path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1024)
        gc.freeze()  # what the master holds now lives as long as it: the forks' collections need not visit it
        pid = os.fork()
    except BaseException:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    if pid == 0:  # the dispatcher
        code, master = 1, os.getppid()
        try:
            for fd in close_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _Dispatcher(listener, models, processes, queue_deadline, work_deadline, memory_mb, metrics,
                        share_cpus, cpus).serve()
            code = 0
        except BaseException:
            log.exception("the detection pool's dispatcher failed")
        finally:
            # The socket's folder stays while the master lives: removed, its name could be taken by another
            # user before the next dispatcher's (``stop`` removes it). With the master gone, none will come.
            if os.getppid() != master:
                _remove(path)
            os._exit(code)
    listener.close()
    _client = Client(path, queue_deadline, work_deadline, dispatcher=pid)
    return _client


def revive(close_fds: Iterable[int] | None = None) -> Client | None:
    """In the process that started the pool (gunicorn's master, each turn of its loop): when the dispatcher
    has gone (killed, or failed), start another on the same socket, and return its client; else None
    (also when it cannot be started now: the next call tries again). ``close_fds``: the descriptors the
    new dispatcher closes, if they are not those the first one closed."""
    client = _client
    if client is None or _again is None or not client.dispatcher:
        return None
    try:
        if os.waitpid(client.dispatcher, os.WNOHANG)[0] == 0:
            return None  # running
    except ChildProcessError:
        pass  # reaped already: gunicorn's master reaps any child
    log.error("the detection pool's dispatcher (pid %d) has gone; starting another", client.dispatcher)
    try:
        return _again() if close_fds is None else _again(close_fds=tuple(close_fds))
    except Exception:  # noqa: BLE001 - a fork refused (a process limit), the folder not ours: never the master's end
        log.exception("could not start another dispatcher; trying again in a moment")
        return None


def stop(timeout: float = 5.0) -> None:
    """Stop the dispatcher and its processes, and remove the socket's folder (the master calls this when it exits)."""
    global _client
    client, _client = _client, None
    if client is None:
        return
    if client.dispatcher:
        _stop_dispatcher(client.dispatcher, timeout)
    _remove(client.path)


def _remove(path: str) -> None:
    """Remove the socket and its folder."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))


def _stop_dispatcher(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, STOP_SIGNAL)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:  # reaped by someone else (gunicorn's master reaps any child)
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class _Process:
    pid: int
    control: socket.socket
    conn: socket.socket | None = None  # the request it serves (the dispatcher's copy), None when free
    since: float = 0.0
    leaving: bool = False  # it said it will exit after its request: give it no other
    overdue: bool = False  # killed for passing the work deadline
    client: Hashable = None  # whose request it serves


@dataclass
class _Counts:
    served: int = 0
    refused: int = 0
    killed: int = 0
    replaced: int = 0
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=256))


@dataclass
class _Waiting:
    """A request in the queue: its connection, when it came, and its job's file."""

    conn: socket.socket
    queued: float
    job: int

    def close(self) -> None:
        self.conn.close()
        with contextlib.suppress(OSError):
            os.close(self.job)


class _Dispatcher:
    """The queue and the processes: a select loop that never runs client work."""

    def __init__(self, listener: socket.socket, models: Any, processes: int, queue_deadline: float,
                 work_deadline: float, memory_mb: float, metrics: QueueMetrics | None = None,
                 share_cpus: Callable[[int], None] | None = None, cpus: cpu_share.Share | None = None) -> None:
        self.listener, self.models, self.size = listener, models, processes
        self.queue_deadline, self.work_deadline = queue_deadline, work_deadline
        self.memory_bytes = int(memory_mb * 1024 * 1024)
        self.processes: dict[int, _Process] = {}
        self.waiting: FairQueue[_Waiting] = FairQueue()
        self.served_at: dict[Hashable, float] = {}  # when each client waiting or running last had a job started
        self.used: dict[Hashable, tuple[float, float]] = {}  # each client's CV seconds, and when they were counted
        self.holding_back = False  # a process is free while jobs wait (``_keep_for_others``)
        self.counts = _Counts()
        if metrics is None:  # reports nowhere; imported here, as gunicorn's settings import this module first
            from mysite.server.metrics import NULL

            metrics = NULL
        self.metrics: QueueMetrics = metrics
        self.selector = selectors.DefaultSelector()
        self.stopping = False
        self.fork_after = 0.0  # after a fork failed: when to try again
        self.parent = os.getppid()
        self.cpus = cpus or cpu_share.Share(processes)
        self.share_cpus = share_cpus

    def serve(self) -> None:
        _die_with_parent(STOP_SIGNAL)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        for sig in (signal.SIGHUP, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU):
            signal.signal(sig, signal.SIG_IGN)  # the master's signals are for its workers, not for this pool
        # Ctrl-C, and systemd's stop (SIGTERM to every process of the unit), reach the whole group: the
        # master lets its workers finish the requests they hold, which need this pool, then stops it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(STOP_SIGNAL, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w.fileno())
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._fork()  # the rest one per turn of the loop: /healthz is answered after the first, not the last
        while not self.stopping and os.getppid() == self.parent:
            for key, _ in self.selector.select(self._timeout()):
                self._on(key, wake_r)
            self._reap()
            self._expire()
            self._dispatch()
            if len(self.processes) < self.size and not self.stopping and time.monotonic() >= self.fork_after:
                self._fork()
        for proc in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        for entry in self.waiting:
            entry.close()
        signal.set_wakeup_fd(-1)  # before the socket goes: the SIGCHLDs of the processes just killed still come
        wake_r.close()
        wake_w.close()

    def _timeout(self) -> float:
        now, soon = time.monotonic(), 1.0 if not self.holding_back else 0.25  # the last process, kept: look again
        if len(self.processes) < self.size:
            soon = min(soon, max(0.0, self.fork_after - now))  # at once, unless a fork failed of late
        if self.waiting:
            soon = min(soon, self._oldest_queued() + self.queue_deadline - now)
        for proc in self.processes.values():
            if proc.conn is not None:
                soon = min(soon, proc.since + self.work_deadline - now)
        return max(soon, 0.0)

    def _on(self, key: selectors.SelectorKey, wake: socket.socket) -> None:
        what, sock = key.data, key.fileobj
        assert isinstance(sock, socket.socket)
        if what == "wake":
            with contextlib.suppress(BlockingIOError):
                wake.recv(4096)
        elif what == "accept":
            self._accept()
        elif what == "greet":
            self._greet(sock)
        elif what == "waiting":  # a waiting web thread gave up (or broke the protocol): forget it
            self.selector.unregister(sock)
            for entry in self.waiting.take_if(lambda w: w.conn is sock):
                entry.close()
                self.metrics.left()
            sock.close()
        elif isinstance(what, int):  # a process finished its request, or died
            self._done(what)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self.selector.register(conn, selectors.EVENT_READ, "greet")

    def _greet(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        try:
            note, fds, _, _ = socket.recv_fds(conn, 1 + MAX_CLIENT, 1)
        except OSError:
            note, fds = b"", []
        kind = note[:1]
        if kind == b"J" and len(fds) == 1:
            self.waiting.append(note[1:] or None, _Waiting(conn, time.monotonic(), fds[0]))
            self.metrics.queued()
            self.selector.register(conn, selectors.EVENT_READ, "waiting")
            return
        for fd in fds:
            os.close(fd)
        if kind == b"S":
            with contextlib.suppress(OSError):
                conn.send(json.dumps(self._status()).encode() + b"\n")
        conn.close()

    def _status(self) -> dict[str, Any]:
        now = time.monotonic()
        waits = sorted(self.counts.waits)
        return {
            "processes": len(self.processes), "busy": sum(p.conn is not None for p in self.processes.values()),
            "waiting": len(self.waiting),
            "oldest_wait": round(now - self._oldest_queued(), 3) if self.waiting else 0.0,
            "wait_p95": round(waits[int(0.95 * (len(waits) - 1))], 3) if waits else 0.0,
            "served": self.counts.served, "refused": self.counts.refused, "killed": self.counts.killed,
            "replaced": self.counts.replaced, "queue_deadline": self.queue_deadline,
            "work_deadline": self.work_deadline,
        }

    def _oldest_queued(self) -> float:
        """When the request that has waited longest was queued (each client's oldest is at its head)."""
        return min(w.queued for w in self.waiting.oldest())

    def _expire(self) -> None:
        now = time.monotonic()
        for entry in self.waiting.take_if(lambda w: now - w.queued >= self.queue_deadline, heads_only=True):
            self.metrics.gave_up(now - entry.queued)
            self.selector.unregister(entry.conn)
            with contextlib.suppress(OSError):
                entry.conn.send(b"B")
            entry.close()
            self.counts.refused += 1
        for proc in self.processes.values():
            if proc.conn is not None and now - proc.since >= self.work_deadline:
                proc.overdue = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)

    def _dispatch(self) -> None:
        self.holding_back = False
        free = [p for p in self.processes.values() if p.conn is None and not p.leaving]
        if not (free and self.waiting):
            return
        running: Counter[Hashable] = Counter(p.client for p in self.processes.values() if p.conn is not None)
        now = time.monotonic()

        def rank(client: Hashable) -> tuple[int, float, float]:
            """Clients with fewer jobs running first, then the one that used the least CV time of late, then
            the one served longest ago: a client's long jobs do not hold back another's short ones."""
            return running[client], self._usage(client, now), self.served_at.get(client, -math.inf)

        while free and self.waiting:
            client = min(self.waiting.clients(), key=rank)
            if self._keep_for_others(client, running[client], len(free), now):
                self.holding_back = True
                break
            entry = self.waiting.pop(client)
            self.selector.unregister(entry.conn)
            proc = free.pop()
            try:
                threads = min(255, self.cpus.take(proc.pid))
                socket.send_fds(proc.control, [b"J" + bytes([threads])], [entry.conn.fileno(), entry.job])
            except OSError:  # the process died between select and now: back to the head of the queue
                self.cpus.release(proc.pid)
                self.waiting.appendleft(client, entry)
                self.selector.register(entry.conn, selectors.EVENT_READ, "waiting")
                continue
            os.close(entry.job)  # the process has its own copy now
            now = time.monotonic()
            proc.conn, proc.since, proc.client = entry.conn, now, client
            running[client] += 1
            self.served_at[client] = now
            self.counts.waits.append(now - entry.queued)
            self.metrics.started(now - entry.queued)
        if len(self.served_at) > 4 * (len(self.processes) + len(self.waiting)):  # forget clients long gone
            now, keep = time.monotonic(), set(running) | set(self.waiting.clients())
            self.served_at = {c: t for c, t in self.served_at.items() if c in keep or now - t < KEEP_FOR_OTHERS}
            self.used = {c: u for c, u in self.used.items() if c in self.served_at}

    def _keep_for_others(self, client: Hashable, running: int, free: int, now: float) -> bool:
        """Whether the next free process should wait for a client other than ``client`` that had a job
        started within ``KEEP_FOR_OTHERS`` seconds: when ``client`` would hold every process, or when it
        would take the last free one, used more CV time of late than the active clients on average, and that
        other client far less (clients with long jobs, however many, leave one process to the ones whose
        jobs are short)."""
        if len(self.processes) < 2 or free > 1 and running + 1 < len(self.processes):
            return False
        recent = [c for c, t in self.served_at.items() if c != client and now - t < KEEP_FOR_OTHERS]
        if running + 1 >= len(self.processes):
            return bool(recent)
        # Against a client that used more than most of late, for one that used far less (not a little: clients
        # alike do not hold processes for each other, nor the middling for the lightest).
        active = {client, *recent, *self.waiting.clients(), *(p.client for p in self.processes.values() if p.conn)}
        usage = {c: self._usage(c, now) for c in active}
        mine = usage[client]
        return mine >= sum(usage.values()) / len(usage) and any(2 * usage[c] < mine for c in recent)

    def _usage(self, client: Hashable, now: float) -> float:
        """``client``'s CV seconds of late, its jobs running included."""
        return self._used_before(client, now) + sum(
            now - p.since for p in self.processes.values() if p.conn is not None and p.client == client)

    def _used_before(self, client: Hashable, now: float) -> float:
        """``client``'s CV seconds in the jobs it ended, halving every ``USAGE_HALF_LIFE``."""
        seconds, at = self.used.get(client, (0.0, now))
        return seconds * 0.5 ** ((now - at) / USAGE_HALF_LIFE)

    def _charge(self, proc: _Process) -> None:
        """Count the job ``proc`` ends in its client's CV time."""
        now = time.monotonic()
        self.used[proc.client] = (self._used_before(proc.client, now) + now - proc.since, now)

    def _done(self, pid: int) -> None:
        proc = self.processes.get(pid)
        if proc is None:
            return
        try:
            note = proc.control.recv(1)
        except OSError:
            note = b""
        if not note:  # it died: _reap tells its client why and replaces it
            self.selector.unregister(proc.control)
            return
        if proc.conn is not None:
            self._charge(proc)
            proc.conn.close()
            proc.conn = None
            self.cpus.release(pid)
            self.counts.served += 1
            self.metrics.finished()
        proc.leaving = proc.leaving or note == b"L"

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.processes.pop(pid, None)
            if proc is None:
                continue
            self.cpus.release(pid)
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
                self.counts.killed += 1
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(proc.control)
            proc.control.close()
            if proc.conn is not None:  # it died on a request: say why, then the web thread reads EOF
                self._charge(proc)
                with contextlib.suppress(OSError):
                    proc.conn.send(b"T" if proc.overdue else b"X")
                proc.conn.close()
                self.metrics.finished()
            if not self.stopping:
                self.counts.replaced += 1  # the loop forks its successor

    def _fork(self) -> None:
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                pid = os.fork()
            except OSError:
                ours.close()
                theirs.close()
                raise
        except OSError as exc:  # a process or memory limit: the pool goes on with what it has, and tries again
            self.fork_after = time.monotonic() + FORK_RETRY
            log.warning("could not start a detection process (%s); trying again in %g s", exc, FORK_RETRY)
            return
        if pid == 0:
            code = 0
            try:
                ours.close()
                self.listener.close()
                for entry in self.waiting:
                    entry.close()
                for proc in self.processes.values():
                    proc.control.close()
                    if proc.conn is not None:  # another process's request: its client waits for that one's answer
                        proc.conn.close()
                self.selector.close()
                _work(theirs, self.models, self.memory_bytes, self.share_cpus)
            except BaseException:
                log.exception("a detection process failed")
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self.processes[pid] = _Process(pid, ours)
        self.selector.register(ours, selectors.EVENT_READ, pid)


def _work(control: socket.socket, models: Any, memory_bytes: int,
          share_cpus: Callable[[int], None] | None = None) -> None:
    """A CV process: take one connection at a time from the dispatcher, answer on it, say done."""
    _die_with_parent(signal.SIGKILL)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGTERM, STOP_SIGNAL):  # a stop of the whole group: the request in hand is finished
        signal.signal(sig, signal.SIG_IGN)
    memory.trim()  # free heap inherited from the parent would otherwise hide growth when a later trim returns it
    from mysite import pipeline  # here, not at the top: gunicorn's settings import this module before the app

    memory.hold_heap()
    pipeline.before_decode = _make_room
    output = native_output.JobOutput()
    native_output.opencv_log(bounded=True)
    own_at_fork = memory.anonymous()
    while True:
        note, fds, _, _ = socket.recv_fds(control, 2, 2)
        if len(fds) < 2:
            for fd in fds:
                os.close(fd)
            return  # the dispatcher is gone
        conn = socket.socket(fileno=fds[0])
        if share_cpus is not None and len(note) == 2:
            share_cpus(note[1])
        leave = False
        _limit_memory(memory_bytes)  # each request its own allowance, whatever earlier ones left (bounded by KEEP_*)
        try:
            conn.setblocking(True)
            answer, leave = _answer(models, fds[1], output)
            head = b"A" + LENGTH.pack(len(answer))
            if len(answer) < OUT_OF_BAND:
                conn.sendall(head + answer)
            else:
                conn.sendall(head)
                conn.sendall(answer)
            del answer
        except OSError:
            pass  # the web thread went away: nothing to answer
        finally:
            conn.close()
        if not leave and own_at_fork and _over_keep(own_at_fork):
            memory.trim()
            leave = memory.anonymous() - own_at_fork > KEEP_OWN  # what a trim leaves is in use
        control.sendall(b"L" if leave else b"D")  # L: done, and leaving (the dispatcher forks a fresh one)
        if leave:
            return


def _answer(models: Any, job: int, output: native_output.JobOutput) -> tuple[bytes, bool]:
    """The pickled answer to the job in file ``job`` (closed here), and whether this process should be replaced after it."""
    leave = False
    try:
        try:
            fn, args, request = read_job(job)
        finally:
            os.close(job)
        request_id.CURRENT.set(request)  # this process's log lines for the job name its request
        with output:
            value = fn(models, *args)
        result: tuple[str, Any] = ("ok", value)
    except ApiError as exc:
        result = ("error", exc.parts())
    except MemoryError:
        leave = True  # the heap may be fragmented past use: a fresh fork is cheaper
        result = ("error", _out_of_memory().parts())
    except Exception as exc:  # noqa: BLE001 - a bug, or OpenCV refusing an allocation
        if "memory" in str(exc).lower() and "alloc" in str(exc).lower():
            leave = True
            result = ("error", _out_of_memory().parts())
        else:
            log.exception("the CV work failed")
            leave = True  # whatever broke may break the next job too: a fresh fork is known to be sound
            result = ("error", ApiError.from_parts(500, "internal error", "internal error occurred in server",
                                                   Reason.INTERNAL_ERROR.value, {}).parts())
    request_id.CURRENT.set(None)
    return pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), leave


def _out_of_memory() -> TooLarge:
    return TooLarge("this image needs more memory than the server gives one request (MYSITE_CV_MEMORY_MB); "
                    "send a smaller image")


def _over_keep(own_at_fork: int) -> bool:
    """Whether a CV process holds more than it may keep between requests (KEEP_OWN + KEEP_HEAP over its start)."""
    return memory.anonymous() - own_at_fork > KEEP_OWN + KEEP_HEAP


def _make_room(need: int) -> None:
    """Before a decode estimated at ``need`` bytes: give the kept heap back when the decode is large."""
    if need >= MAKE_ROOM:
        memory.trim()


def _limit_memory(extra: int) -> None:
    """Cap the process's data (heap and anonymous maps) at what it has now plus ``extra``: the soft limit
    only, so that the next request can be given its own ``extra`` over what this one left."""
    data = memory.status("VmData")
    if data is None:
        return
    with contextlib.suppress(ValueError, OSError):
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        soft = data + extra if hard == resource.RLIM_INFINITY else min(data + extra, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _die_with_parent(sig: int) -> None:
    """Linux: get ``sig`` when the parent dies, so a killed master leaves no pool behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = conn.recv_into(view[got:])
        if k == 0:
            raise EOFError
        got += k
    return bytes(buf) if n < 4096 else buf  # type: ignore[return-value]


def _recv_frame(conn: socket.socket) -> bytes | None:
    try:
        (length,) = LENGTH.unpack(_recv_exact(conn, LENGTH.size))
        if length > MAX_FRAME:  # only a frame cut short and run into the dispatcher's note reads this way
            raise EOFError
        return _recv_exact(conn, length)
    except EOFError:
        return None
