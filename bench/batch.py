"""The batch client against the Procfile's gunicorn (2 workers) on loopback: is the client ever the bottleneck?

    python -m bench.batch [--photos 200] [--paths 10000] [--quick]

Prints what docs/page-and-client.md's "The batch client measured" section shows, for two sets of photos (the
book's group photo ``--photos`` times, and as many photos of four subjects at four sizes,
0.1-1.9 MP):

1. the server's capacity: raw ``http.client`` threads posting bodies already in memory;
2. ``python -m mysite.client detect FOLDER`` with its defaults, as a subprocess (its own
   throughput figure, wall time with start-up, CPU time, peak RSS);
3. a one-at-a-time loop (``Client.request`` per photo, in this process);
4. concurrency and ``--per-request`` sweeps on the first 60 mixed photos (the defaults' reasons);
5. a run interrupted by SIGINT, then resumed: the server's access log counts what each sent;
6. client peak RSS with 1,000 and ``--paths`` tiny photos;
7. 1-3 again on the group photo with ``MYSITE_CV_THREADS=1``, where a lone request cannot
   already use both CPUs.

Load average and CPU seconds (client and server workers) are printed beside each figure:
the machine may be shared. Bounded: every client run has a 10-minute deadline; the whole
takes about 7 minutes on an idle 2-core machine (``--quick``: 60 photos, 2,000 paths, about
2.5 minutes). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.server import ROOT, Server, multipart, request
from mysite.client import Client
from testkit.interrupts import interruptible

DATA = ROOT / "tests" / "data"
SUBJECTS = ("group_17_faces.jpg", "cat.jpg", "car.jpg", "astronaut.png")
WIDTHS = (320, 640, 1024, 1600)  # 0.1 to 1.9 MP: thumbnails to a camera's web export
RUN_DEADLINE = 600.0  # seconds any one client run may take before it is stopped


@dataclass
class Pass:
    """One measured run: images, wall seconds, CPU seconds (client, server workers), load before/after."""

    label: str
    images: int
    wall: float
    client_cpu: float
    server_cpu: float
    load: tuple[float, float]
    rate: float = 0.0  # images/s; the client's own figure where it prints one
    rss_mb: float = float("nan")
    text: str = ""  # what the client printed on stderr
    returncode: int = 0

    def row(self, capacity: float | None = None) -> str:
        share = f"{100 * self.rate / capacity:.0f} %" if capacity else ""
        return (f"| {self.label} | {self.images} | {self.rate:.2f} | {share} | {self.wall:.1f} | "
                f"{self.client_cpu:.1f} | {self.server_cpu:.1f} | {self.rss_mb:.0f} | "
                f"{self.load[0]:.1f} → {self.load[1]:.1f} |")


HEADER = ("| run | images | images/s | of capacity | wall s | client CPU s | server CPU s | client peak RSS MB "
          "| load avg (1 min) before → after |\n|---|---|---|---|---|---|---|---|---|")


def build_photos(folder: Path, count: int, mixed: bool) -> list[Path]:
    """``count`` JPEGs in ``folder``: the group photo as it is, or four subjects at four widths,
    every other one mirrored so no two files are the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    group = (DATA / "group_17_faces.jpg").read_bytes()
    sources = {name: cv2.imread(str(DATA / name), cv2.IMREAD_COLOR) for name in SUBJECTS}
    paths = []
    for i in range(count):
        path = folder / f"photo_{i:04d}.jpg"
        if not mixed:
            path.write_bytes(group)
        else:
            name, width = SUBJECTS[i % 4], WIDTHS[(i // 4) % 4]
            picture = sources[name]
            height = round(picture.shape[0] * width / picture.shape[1])
            resized = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
            if i % 8 >= 4:
                resized = cv2.flip(resized, 1)
            ok, buf = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            path.write_bytes(buf.tobytes())
        paths.append(path)
    return paths


def capacity(srv: Server, paths: list[Path], clients: int = 6) -> Pass:
    """The server's throughput with a client that costs nothing: bodies built beforehand, raw sockets."""
    bodies = [multipart(p.read_bytes()) for p in paths]
    index = iter(range(len(bodies)))
    lock = threading.Lock()
    failures: list[int] = []

    def client() -> None:
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                return
            status, _ = request(srv.port, "POST", "/detect", *bodies[i])
            if status != 200:
                failures.append(status)

    def go() -> None:
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=RUN_DEADLINE)

    p = _measure(f"server capacity ({clients} raw clients)", srv, len(paths), go)
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: {failures[:5]}")
    return p


def one_at_a_time(srv: Server, paths: list[Path]) -> Pass:
    """The shell loop a user writes, in-process (no interpreter start-up counted): one request, then the next."""
    client = Client(f"http://127.0.0.1:{srv.port}")

    def go() -> None:
        for path in paths:
            assert client.request("POST", "/detect", image=path).status_code == 200

    return _measure("one at a time (Client.request loop)", srv, len(paths), go)


def batch_cli(srv: Server, label: str, args: list[str], images: int, interrupt_after: float | None = None) -> Pass:
    """``python -m mysite.client`` as a subprocess: its throughput line, wall, CPU (wait4) and peak RSS.

    Peak RSS is the child's own VmHWM, polled: wait4's ru_maxrss would report this
    process's size, which the child had between fork and exec.
    """
    argv = [sys.executable, "-m", "mysite.client", "--server", f"http://127.0.0.1:{srv.port}", "detect", *args,
            "--no-progress"]
    load0, cpu0, started = os.getloadavg()[0], srv.cpu_seconds(), time.perf_counter()
    with tempfile.TemporaryFile() as err:
        # SIGINT at its default (the timer's interrupt works even when this benchmark runs as a background job).
        proc = subprocess.Popen(interruptible(argv), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        timer = threading.Timer(interrupt_after or RUN_DEADLINE, proc.send_signal, (signal.SIGINT,))
        timer.daemon = True
        timer.start()
        peak = [0.0]
        watcher = threading.Thread(target=_watch_hwm, args=(proc.pid, peak), daemon=True)
        watcher.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C on the benchmark: leave no client behind
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    if proc.returncode not in (0, 130):
        raise RuntimeError(f"{label}: exit {proc.returncode}\n{text[-2000:]}")
    answered = re.search(r"images: (\d+) answered", text)
    rate = re.search(r"throughput: ([\d.]+) images/s", text)
    return Pass(label, int(answered.group(1)) if answered else images, wall, usage.ru_utime + usage.ru_stime,
                srv.cpu_seconds() - cpu0, (load0, os.getloadavg()[0]), float(rate.group(1)) if rate else 0.0,
                peak[0], text, proc.returncode)


def _watch_hwm(pid: int, peak: list[float]) -> None:
    """Keep ``peak[0]`` at the process's VmHWM (MB) until it ends; every 50 ms, and HWM only grows."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return
        match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
        if match is None:  # a zombie: it has ended
            return
        peak[0] = max(peak[0], int(match.group(1)) / 1024)
        time.sleep(0.05)


def _measure(label: str, srv: Server, images: int, go) -> Pass:  # type: ignore[no-untyped-def]
    load0, cpu0, client0, started = os.getloadavg()[0], srv.cpu_seconds(), time.process_time(), time.perf_counter()
    go()
    wall = time.perf_counter() - started
    return Pass(label, images, wall, time.process_time() - client0, srv.cpu_seconds() - cpu0,
                (load0, os.getloadavg()[0]), images / wall)


def posts(srv: Server) -> int:
    """POST requests to /detect the server's access log (JSON lines) has recorded so far."""
    count = 0
    for line in srv.log().splitlines():
        try:
            entry = json.loads(line) if line.startswith("{") else {}
        except ValueError:  # a line still being written
            continue
        count += entry.get("method") == "POST" and str(entry.get("path", "")).startswith("/detect")
    return count


def resume(srv: Server, folder: Path, count: int, tmp: Path) -> list[str]:
    """Interrupt a run part-way (SIGINT), resume it; what each run sent, counted by the server."""
    out = tmp / "resume.jsonl"
    before = posts(srv)
    first = batch_cli(srv, "interrupted", [str(folder), "--out", str(out)], count, interrupt_after=max(2.0, count / 40))
    sent_first = posts(srv) - before
    lines_first = sum(1 for _ in out.open())
    batch_cli(srv, "resumed", [str(folder), "--out", str(out)], count)
    sent_second = posts(srv) - before - sent_first
    records = [line.split('"path":', 1)[1].split(",", 1)[0] for line in out.open()]
    return [
        f"first run, stopped by SIGINT after {first.wall:.1f} s: {lines_first} answers written, "
        f"{sent_first} requests reached the server (exit {first.returncode})",
        f"resumed run: {sent_second} requests for the {count - lines_first} photos left; "
        f"output {len(records)} lines, {len(set(records))} distinct photos, {count} photos in the folder",
        f"re-sent by the resumed run: {sent_first + sent_second - count} "
        f"(requests in flight at the interrupt are finished and written, not abandoned)",
    ]


def rss_flat(srv: Server, tmp: Path, sizes: tuple[int, ...]) -> list[str]:
    """Client peak RSS as the number of paths grows: tiny photos in 100-file folders, default options."""
    tiny = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
    lines = []
    for n in sizes:
        folder = tmp / f"tiny_{n}"
        for i in range(n):
            sub = folder / f"d{i // 100:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"t{i:05d}.jpg").write_bytes(tiny)
        p = batch_cli(srv, f"{n} paths", [str(folder), "--out", str(tmp / f"tiny_{n}.jsonl")], n)
        lines.append(f"| {n} | {p.rss_mb:.0f} | {p.rate:.0f} | {p.wall:.1f} | {p.client_cpu:.1f} | "
                     f"{p.load[0]:.1f} → {p.load[1]:.1f} |")
    return ["| paths | client peak RSS MB | images/s | wall s | client CPU s | load avg |", "|---|---|---|---|---|---|",
            *lines]


def sweep(srv: Server, folder: Path, count: int, cap: float) -> list[str]:
    """Concurrency and per-request packing on the same photos."""
    rows = [HEADER]
    for c in (1, 2, 4, 8):
        rows.append(batch_cli(srv, f"--concurrency {c}", [str(folder), "-c", str(c)], count).row(cap))
    for c, k in ((2, 4), (4, 4), (4, 8)):
        rows.append(batch_cli(srv, f"--concurrency {c} --per-request {k}",
                              [str(folder), "-c", str(c), "-k", str(k)], count).row(cap))
    return rows


def compare(srv: Server, name: str, paths: list[Path], tmp: Path, rounds: int) -> float:
    """Capacity, the client with its defaults and a one-at-a-time loop on the same photos; the capacity.

    The photos go in ``rounds`` slices, each slice through the three in turn (the order
    rotating), so a machine whose load changes slows all three alike.
    """
    runs: dict[str, list[Pass]] = {"cap": [], "cli": [], "loop": []}
    for r in range(rounds):
        part = paths[r * len(paths) // rounds:(r + 1) * len(paths) // rounds]
        folder = tmp / f"{name.split()[0]}_round{r}"
        folder.mkdir()
        for p in part:
            os.link(p, folder / p.name)
        todo = {
            "cap": lambda part=part: capacity(srv, part),
            "cli": lambda part=part, folder=folder: batch_cli(srv, "python -m mysite.client (defaults)",
                                                              [str(folder)], len(part)),
            "loop": lambda part=part: one_at_a_time(srv, part),
        }
        order = list(todo)[r % 3:] + list(todo)[:r % 3]
        for key in order:
            runs[key].append(todo[key]())
    cap, cli, loop = (_combine(runs[k]) for k in ("cap", "cli", "loop"))
    print(f"\n#### {name}, {rounds} rounds taken in turn\n\n{HEADER}")
    for p in (cap, cli, loop):
        print(p.row(cap.rate))
    print(f"\nclient ÷ one at a time: {cli.rate / loop.rate:.2f}×; client ÷ capacity: "
          f"{100 * cli.rate / cap.rate:.0f} % (with interpreter start-up in the wall time: "
          f"{cli.images / cli.wall:.2f} images/s); client CPU per image "
          f"{1000 * cli.client_cpu / cli.images:.1f} ms, server CPU per image {1000 * cli.server_cpu / cli.images:.0f} ms")
    return cap.rate


def _combine(passes: list[Pass]) -> Pass:
    """Several runs of one kind as one: images over the time spent answering them (the client's own
    figure where it prints one, which leaves out its interpreter's start-up)."""
    images = sum(p.images for p in passes)
    answering = sum(p.images / p.rate for p in passes)
    return Pass(passes[0].label, images, sum(p.wall for p in passes), sum(p.client_cpu for p in passes),
                sum(p.server_cpu for p in passes), (passes[0].load[0], passes[-1].load[1]), images / answering,
                max(p.rss_mb for p in passes))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--paths", type=int, default=10_000, help="paths for the RSS run (and 1,000 beside it)")
    ap.add_argument("--rounds", type=int, default=5, help="slices of the photos, each measured three ways in turn")
    ap.add_argument("--quick", action="store_true", help="60 photos, 2,000 paths, 3 rounds")
    args = ap.parse_args(argv)
    if args.quick:
        args.photos, args.paths, args.rounds = 60, 2000, 3
    n = args.photos
    print(f"# python -m bench.batch: {os.cpu_count()} CPUs, load average {os.getloadavg()}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "default").mkdir()
        (tmp / "cv1").mkdir()
        group, mixed = tmp / "group", tmp / "mixed"
        group_paths, mixed_paths = build_photos(group, n, False), build_photos(mixed, n, True)
        subset = tmp / "mixed60"
        subset.mkdir()
        for p in mixed_paths[:60]:
            os.link(p, subset / p.name)
        with Server(workers=2, cv_threads=-1) as srv:
            print("\n### Procfile defaults: 2 workers, OpenCV's threads (2 per worker)")
            compare(srv, f"group photo ×{n}", group_paths, tmp / "default", args.rounds)
            cap = compare(srv, f"mixed sizes ×{n}", mixed_paths, tmp / "default", args.rounds)
            print("\n#### concurrency and packing, first 60 mixed photos\n")
            print("\n".join(sweep(srv, subset, 60, cap)))
            print("\n#### interrupted and resumed (mixed photos)\n")
            print("\n".join(resume(srv, mixed, n, tmp)))
            print("\n#### client memory as paths grow (64×48 photos, defaults)\n")
            print("\n".join(rss_flat(srv, tmp, (1000, args.paths))))
        with Server(workers=2, cv_threads=1) as srv:
            print("\n### 2 workers, MYSITE_CV_THREADS=1 (a lone request cannot use both CPUs)")
            compare(srv, f"group photo ×{n}", group_paths, tmp / "cv1", args.rounds)
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
