"""Many photos through one route: concurrent, JSON Lines out, resumable, with a progress bar and a summary.

``run(options, paths)`` streams the paths (``imagepaths.py``) through a bounded
queue to ``concurrency`` worker threads, each with its own HTTP session, and writes one
JSON object per image as its answer arrives::

    {"path": "holiday/IMG_0001.jpg", "status": 200, "answer": {"status": "ok", "result": [...]},
     "ms": 131.2, "boxes": 3}

``status`` is the HTTP status of that image's answer (``null`` when there was none: the
file could not be read, or the server could not be reached). Running the same command
again skips every image whose record in the output says it was answered: 2xx, or a 4xx
that is about the image itself (broken, too large, not an image); no answer, 408, 429 and
5xx are sent again. The exit status speaks for the whole output file: 0 only when every
image of the run has a 2xx answer there, skipped ones included (a resumed run that skips
two broken images exits 1, as the run that found them did). Memory stays flat: at most ``2 × concurrency`` requests' images are
held, the walk is a generator, and the total for the progress bar is counted by a
second walk that keeps nothing but a number.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, TextIO

from mysite.client import (
    MAX_ANSWER_BYTES,
    Client,
    ClientError,
    ConnectFailed,
    NoAnswer,
    imagepaths,
    json_or_none,
    model_not_loaded,
    printable,
    upload_name,
)
from mysite.client.progress import Progress
from mysite.client.routes import Route, route_for

# Two requests in flight per server worker keep a 2-worker server busy; more only queue at the
# server (python -m bench.batch, docs/page-and-client.md).
DEFAULT_CONCURRENCY = 4
# Packing images into one request saves nothing on loopback and costs balance between workers
# (one worker gets a pack while the other idles at the end), so 1.
DEFAULT_PER_REQUEST = 1
MAX_PER_REQUEST = 16  # the server's limit on images in one request (web/inputs.MAX_IMAGES)
RESEND = frozenset({408, 429})  # statuses, besides 5xx and none, that a resumed run sends again
# A per-image error inside a packed answer carries its status word, not a code.
STATUS_WORDS = {"bad request": 400, "not ok": 400, "too large": 413, "unsupported media type": 415,
                "unprocessable": 422, "unavailable": 503}


@dataclass
class Options:
    """Everything one batch run needs besides its paths."""

    server: str | None
    endpoint: str
    params: dict[str, str] = field(default_factory=dict)
    concurrency: int = DEFAULT_CONCURRENCY
    per_request: int = DEFAULT_PER_REQUEST
    out: Path | None = None  # None: stdout
    draw_dir: Path | None = None
    progress: bool | None = None  # None: when stderr is a terminal
    retries: int = 5
    timeout: float = 60.0
    quiet: bool = False  # no summary
    max_answer_bytes: int = MAX_ANSWER_BYTES


class Stop(Exception):
    """Nothing more will pass (the server is unreachable, or says its model is not loaded)."""


class Abandoned(Exception):
    """The run is stopping while a request waits to be retried: its images go unrecorded."""


def final(record: dict[str, Any]) -> bool:
    """An answer that another run would get again: the image is done."""
    status = record.get("status")
    return isinstance(status, int) and status < 500 and status not in RESEND


def good(record: dict[str, Any]) -> bool:
    """An answer that is the image's result, not an error."""
    status = record.get("status")
    return isinstance(status, int) and 200 <= status < 300


def answered(out: Path) -> dict[str, bool]:
    """Paths with a final answer in an earlier run's output, each with whether that answer is good.
    A last line cut short by a crash is dropped from the file (its image is sent again), so the
    file stays valid JSON Lines."""
    done: dict[str, bool] = {}
    if not out.exists():
        return done
    good_end = 0
    with out.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            good_end += len(raw)
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("path"), str) and final(record):
                done[record["path"]] = good(record)
    if good_end < out.stat().st_size:
        with out.open("r+b") as f:
            f.truncate(good_end)
    return done


class Summary:
    """What the run did, for the lines printed at its end."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()
        self.answered = 0
        self.skipped = 0
        self.skipped_errors = 0  # skipped images whose answer in the output file is an error
        self.boxes = 0
        self.errors: Counter[str] = Counter()
        self.stopped = ""  # why the run ended early, if it did

    def add(self, record: dict[str, Any]) -> bool:
        """Count one record; true when it is an error."""
        self.answered += 1
        self.boxes += record.get("boxes", 0)
        status = record.get("status")
        if isinstance(status, int) and status < 400:
            return False
        self.errors[str(status) if status is not None else record.get("error_kind", "no answer")] += 1
        return True

    def lines(self, out: Path | None, seen: int) -> list[str]:
        wall = time.perf_counter() - self.started
        cpu = time.process_time() - self.cpu_started
        errors = sum(self.errors.values())
        where = f" in {out}" if out else ""
        earlier = f"; {self.skipped_errors} of them errors" if self.skipped_errors else ""
        text = [f"images: {self.answered} answered ({self.answered - errors} ok, {errors} errors)"
                + (f", {self.skipped} skipped (already answered{where}{earlier})" if self.skipped else ""),
                f"boxes found: {self.boxes}"]
        if errors:
            text.append("errors by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())))
        rate = self.answered / wall if wall > 0 else 0.0
        text.append(f"throughput: {rate:.2f} images/s ({self.answered} in {wall:.1f} s; client CPU {cpu:.1f} s)")
        if self.stopped:
            text.append(f"stopped: {self.stopped} after {seen} images (answered or skipped); "
                        "run the same command again to go on: answered images are skipped")
        return text


class Worker:
    """Sends one job (a list of paths) and turns the answer into one record per image."""

    def __init__(self, options: Options, route: Route, stop: threading.Event | None = None) -> None:
        self.options = options
        self.route = route
        self.stop = stop or threading.Event()
        self.client = Client(options.server, retries=options.retries, timeout=options.timeout, sleep=self._wait,
                             max_answer_bytes=options.max_answer_bytes)

    def _wait(self, seconds: float) -> None:
        """Wait before a retry, unless the run is stopping: then give the image up (a resumed run sends it)."""
        if self.stop.wait(seconds):
            raise Abandoned

    def records(self, paths: list[str]) -> list[dict[str, Any]]:
        """One record per path, in order; raises ``Stop`` (with the records so far) when nothing will pass."""
        ready: list[tuple[str, bytes]] = []
        unreadable: list[dict[str, Any]] = []
        for path in paths:
            try:
                ready.append((path, Path(path).read_bytes()))
            except OSError as exc:
                unreadable.append({"path": path, "status": None, "error_kind": "unreadable",
                                   "error": f"cannot read the file: {exc.strerror or exc}"})
        if len(ready) >= 2:
            return unreadable + self._packed(ready)
        return unreadable + [self._single(path, data) for path, data in ready]

    def _single(self, path: str, data: bytes) -> dict[str, Any]:
        params = dict(self.options.params)
        if self.route.answers_image and self.options.draw_dir and path.lower().endswith(".png"):
            params.setdefault("format", "png")
        started = time.perf_counter()
        try:
            response = self.client.request("POST", self.route.path, images=[(_name(path), data)], params=params)
        except ConnectFailed as exc:
            raise Stop(str(exc), [_no_answer(path, exc)]) from None
        except NoAnswer as exc:  # this image's request failed; the next may pass
            return {"path": path, "status": None, "error_kind": "no answer", "error": str(exc)}
        ms = (time.perf_counter() - started) * 1000
        body = json_or_none(response)
        if body is None:  # a picture (an edge map), or a proxy's HTML error page
            kind = response.headers.get("Content-Type", "")
            body = {"content_type": kind, "bytes": len(response.content)}
        record = {"path": path, "status": response.status_code, "answer": body, "ms": round(ms, 1),
                  "boxes": self.route.count_boxes(body)}
        if self.options.draw_dir is not None and response.ok:
            if self.route.answers_image:
                record["drawn"] = str(self._write(path, response.content, response.headers))
            elif self.route.draws:
                self._draw(path, data, record)
        if response.status_code == 503 and model_not_loaded(response):
            raise Stop(f"the server answered {path} with: {body.get('message', '')}", [record])
        return record

    def _packed(self, ready: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Several images in one request (repeated ``image`` fields); one at a time if the pack is refused."""
        started = time.perf_counter()
        try:
            response = self.client.request("POST", self.route.path, params=self.options.params,
                                           images=[(_name(p), d) for p, d in ready])
        except ConnectFailed as exc:
            raise Stop(str(exc), [_no_answer(p, exc) for p, _ in ready]) from None
        except NoAnswer as exc:
            return [{"path": p, "status": None, "error_kind": "no answer", "error": str(exc)} for p, _ in ready]
        ms = (time.perf_counter() - started) * 1000
        body = json_or_none(response)
        results = body.get("results") if isinstance(body, dict) else None
        if not response.ok or not isinstance(results, list) or len(results) != len(ready):
            # Refused as a pack (e.g. 413: too many pixels together): each image on its own.
            return [self._single(p, d) for p, d in ready]
        records = []
        for (path, data), answer in zip(ready, results):
            status = _item_status(answer)
            record = {"path": path, "status": status, "answer": answer, "ms": round(ms, 1),
                      "per_request": len(ready), "boxes": self.route.count_boxes(answer)}
            if self.options.draw_dir is not None and status == 200 and self.route.draws:
                self._draw(path, data, record)
            records.append(record)
        return records

    def _draw(self, path: str, data: bytes, record: dict[str, Any]) -> None:
        """Ask the server for the picture with its detections drawn (``?output=image``) and save it."""
        fmt = "png" if path.lower().endswith(".png") else "jpeg"
        params = {**self.options.params, "output": "image", "format": fmt}
        try:
            response = self.client.request("POST", self.route.path, images=[(_name(path), data)], params=params)
        except ClientError as exc:  # the answer itself is recorded already; only its drawing failed
            record["draw_error"] = printable(str(exc))
            return
        if response.ok and response.headers.get("Content-Type", "").startswith("image/"):
            record["drawn"] = str(self._write(path, response.content, response.headers))
        else:
            body = json_or_none(response)
            message = body.get("message", "") if isinstance(body, dict) else response.text[:200]
            record["draw_error"] = f"{response.status_code}: {message}"

    def _write(self, path: str, picture: bytes, headers: Any) -> Path:
        assert self.options.draw_dir is not None
        target = self.options.draw_dir / drawn_name(path, headers.get("Content-Type", "image/jpeg"))
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".part")
        temporary.write_bytes(picture)
        os.replace(temporary, target)  # a picture is whole or absent, even after a crash
        return target


def drawn_name(path: str, content_type: str) -> PurePath:
    """Where a photo's drawn copy goes under the draw folder: the same relative path (no root, no
    ``..``), and a suffix that says the picture's format (``a/b.png`` → ``a/b.png``, ``a/b.tif`` → ``a/b.tif.jpg``)."""
    parts = [("_up" if p == ".." else p) for p in PurePath(path).parts if p not in ("/", ".") and not p.endswith(":\\")]
    name = PurePath(*parts) if parts else PurePath("image")
    suffix = ".png" if content_type == "image/png" else ".jpg"
    if name.suffix.lower() == suffix or (suffix == ".jpg" and name.suffix.lower() == ".jpeg"):
        return name
    return name.with_name(name.name + suffix)


def run(options: Options, args: list[str], *, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    """Send every image the arguments name; 0 when every one has a good answer in the output (this
    run's or, for a skipped one, an earlier run's), 1 when some have an error, 3 when the server could
    not be reached, 130 when interrupted."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    route = route_for(options.endpoint)
    done = answered(options.out) if options.out else {}
    bar = Progress(stderr, enabled=stderr.isatty() if options.progress is None else options.progress)
    summary = Summary()
    out = options.out.open("a", encoding="utf-8") if options.out else stdout
    stop = threading.Event()
    jobs: queue.Queue[list[str] | None] = queue.Queue(maxsize=2 * options.concurrency)
    results: queue.Queue[tuple[str, Any]] = queue.Queue()
    threads = [threading.Thread(target=_feed, args=(args, stdin, done, options, jobs, results, stop), daemon=True)]
    threads += [threading.Thread(target=_work, args=(Worker(options, route, stop), jobs, results, stop), daemon=True)
                for _ in range(options.concurrency)]
    if bar.enabled:
        threads.append(threading.Thread(target=_count, args=(args, bar, stop), daemon=True))
    for t in threads:
        t.start()
    seen = 0
    restore = _interrupt_on_sigterm()
    try:
        seen = _collect(results, options.concurrency + 1, out, bar, summary, stop, stderr)
    finally:
        restore()
        bar.close()
        if options.out:
            out.close()
        else:
            out.flush()
    if not options.quiet:
        for line in summary.lines(options.out, seen):
            print(line, file=stderr)
    if summary.stopped.startswith("interrupted"):
        return 130
    if summary.stopped.startswith("unreachable"):
        return 3
    return 1 if summary.errors or summary.skipped_errors else 0


def _interrupt_on_sigterm() -> Callable[[], object]:
    """SIGTERM (a service manager, ``timeout``, ``kill``) stops the run as Ctrl-C does; a function to undo it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, before)


def _collect(results: queue.Queue[tuple[str, Any]], producers: int, out: TextIO, bar: Progress,
             summary: Summary, stop: threading.Event, stderr: TextIO) -> int:
    """Write records as they arrive until every producer has finished; the images seen."""
    seen, running, interrupts = 0, producers, 0
    while running:
        try:
            kind, item = results.get(timeout=0.25)
        except queue.Empty:
            bar.update()
            continue
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts > 1:
                summary.stopped = "interrupted (twice: requests in flight abandoned)"
                break
            summary.stopped = summary.stopped or "interrupted"
            stop.set()
            print("\nstopping: finishing the requests in flight (Ctrl-C again to abandon them)",
                  file=stderr, flush=True)
            continue
        if kind == "exit":
            running -= 1
        elif kind == "skip":
            seen += 1
            summary.skipped += 1
            summary.skipped_errors += not item
            bar.advance(done=1, skipped=1)
        elif kind == "stop":
            summary.stopped = summary.stopped or item
            stop.set()
        else:
            for record in item:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                seen += 1
                bar.advance(done=1, errors=int(summary.add(record)))
            out.flush()  # each answer is on disk before the next is awaited: a crash loses nothing
    return seen


def _feed(args: list[str], stdin: TextIO | None, done: dict[str, bool], options: Options,
          jobs: queue.Queue[list[str] | None], results: queue.Queue[tuple[str, Any]], stop: threading.Event) -> None:
    """Walk the paths, skip the answered ones, queue the rest in packs of ``per_request``."""
    route = route_for(options.endpoint)
    size = options.per_request if route.several else 1
    try:
        for pack in _packs((p for p in imagepaths.expand(args, stdin) if _new(p, done, results)), size):
            if not _put(jobs, pack, stop):
                return
        for _ in range(options.concurrency):
            _put(jobs, None, stop)
    except Exception as exc:  # noqa: BLE001 - e.g. stdin that is not text: end the run and say why
        results.put(("stop", f"reading the paths failed: {exc}"))
        stop.set()
    finally:
        results.put(("exit", None))


def _new(path: str, done: dict[str, bool], results: queue.Queue[tuple[str, Any]]) -> bool:
    if path in done:
        results.put(("skip", done[path]))
        return False
    return True


def _packs(paths: Iterable[str], size: int) -> Iterator[list[str]]:
    pack: list[str] = []
    for path in paths:
        pack.append(path)
        if len(pack) == size:
            yield pack
            pack = []
    if pack:
        yield pack


def _put(jobs: queue.Queue[list[str] | None], item: list[str] | None, stop: threading.Event) -> bool:
    """Queue ``item``, waiting for room, unless the run is stopping."""
    while not stop.is_set():
        try:
            jobs.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _work(worker: Worker, jobs: queue.Queue[list[str] | None], results: queue.Queue[tuple[str, Any]],
          stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            try:
                job = jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            if job is None:
                return
            try:
                results.put(("records", worker.records(job)))
            except Abandoned:
                return
            except Stop as exc:
                message, records = exc.args
                results.put(("records", records))
                kind = "unreachable" if records and records[0].get("error_kind") == "unreachable" else "refused"
                results.put(("stop", f"{kind}: {printable(message)}"))
                stop.set()
            except Exception as exc:  # noqa: BLE001 - a job that fails is its images' records; the thread goes on
                results.put(("records", [_failed(path, exc) for path in job]))
    finally:
        results.put(("exit", None))


def _count(args: list[str], bar: Progress, stop: threading.Event) -> None:
    """Count the paths for the bar's total with a second walk, keeping only the number."""
    if "-" in args:
        return  # stdin can be read once; the bar shows done and rate without a total
    n = 0
    for n, _ in enumerate(imagepaths.expand(args), start=1):
        if stop.is_set():
            return
        if n % 1000 == 0:
            bar.counted(n, final=False)
    bar.counted(n, final=True)


def _no_answer(path: str, exc: Exception) -> dict[str, Any]:
    return {"path": path, "status": None, "error_kind": "unreachable", "error": str(exc)}


def _item_status(answer: Any) -> int:
    """The HTTP status an image of a packed request would have had on its own."""
    if not isinstance(answer, dict) or answer.get("status") == "ok":
        return 200
    return STATUS_WORDS.get(str(answer.get("status", "")), 400)


def _failed(path: str, exc: Exception) -> dict[str, Any]:
    """The record of an image whose job failed in the client: an answer it could not use, or a fault here."""
    kind = "client error" if isinstance(exc, ClientError) else "client fault"
    message = str(exc) if isinstance(exc, ClientError) else f"{type(exc).__name__}: {exc}"
    return {"path": path, "status": None, "error_kind": kind, "error": printable(message)[:500]}


def _name(path: str) -> str:
    return upload_name(os.path.basename(path))
