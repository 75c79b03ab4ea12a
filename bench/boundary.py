"""``python -m bench.boundary``: what the process boundary itself costs a request.

Starts the CV pool (``mysite/server/pool.py``) in this process with no models and sends it a
job that does nothing but return the size of the bytes it was given, from one thread, with
payloads of the sizes photos are sent at. The time per call is the boundary's whole cost: the
queue's round trip, handing the connection and the job to a CV process, and the bytes both
ways. Beside the wall time, the CPU time per call of the caller (the web side's share) and of
the pool (dispatcher and CV process), which a busy machine does not inflate as much.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from bench.server import cpu_of
from mysite.server import pool


def size_of(models: Any, data: bytes) -> int:
    """The job: nothing but touching what crossed."""
    return len(data)


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.boundary", description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    client = pool.start(None, processes=1, queue_deadline=10, work_deadline=10, memory_mb=512)
    try:
        client.call(size_of, b"")
        children = Path(f"/proc/{client.dispatcher}/task/{client.dispatcher}/children").read_text().split()
        family = [client.dispatcher, *map(int, children)]
        print(f"load average {os.getloadavg()[0]:.2f}\n")
        print("| payload | median ms | p90 ms | CPU ms per call: caller / pool |")
        print("| --- | --- | --- | --- |")
        for size in (0, 100_000, 1_000_000, 4_000_000, 10_000_000):
            data = os.urandom(size)
            reps = args.reps if size < 4_000_000 else max(20, args.reps // 5)
            times = []
            own, theirs = _own_cpu(), cpu_of(set(family))
            for _ in range(reps):
                t = time.perf_counter()
                assert client.call(size_of, data) == size
                times.append((time.perf_counter() - t) * 1000)
            own, theirs = (_own_cpu() - own) * 1000 / reps, (cpu_of(set(family)) - theirs) * 1000 / reps
            times.sort()
            print(f"| {size / 1e6:g} MB | {statistics.median(times):.2f} | {times[int(0.9 * (len(times) - 1))]:.2f} | "
                  f"{own:.2f} / {theirs:.2f} |")
    finally:
        pool.stop()


if __name__ == "__main__":
    main()
