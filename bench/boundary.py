"""``python -m bench.boundary``: what the process boundary itself costs a request.

Starts the CV pool (``mysite/server/pool.py``) in this process with no models and sends it a
job that does nothing but return the size of the bytes it was given, from one thread, with
payloads of the sizes photos are sent at. The time per call is the boundary's whole cost: the
queue's round trip, handing the connection to a CV process, and the bytes both ways.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from mysite.server import pool


def size_of(models: Any, data: bytes) -> int:
    """The job: nothing but touching what crossed."""
    return len(data)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.boundary", description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    client = pool.start(None, processes=1, queue_deadline=10, work_deadline=10, memory_mb=512)
    try:
        print("| payload | median ms | p90 ms |")
        print("| --- | --- | --- |")
        for size in (0, 100_000, 1_000_000, 4_000_000, 10_000_000):
            data = bytes(size)
            times = []
            for _ in range(args.reps if size < 4_000_000 else max(20, args.reps // 5)):
                t = time.perf_counter()
                assert client.call(size_of, data) == size
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            print(f"| {size / 1e6:g} MB | {statistics.median(times):.2f} | {times[int(0.9 * (len(times) - 1))]:.2f} |")
    finally:
        pool.stop()


if __name__ == "__main__":
    main()
