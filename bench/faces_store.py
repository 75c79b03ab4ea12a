"""``python -m bench.faces_store``: what the registered faces cost as the store grows.

For each size (``--sizes``, default 1,000, 10,000 and 100,000 faces) a fresh SQLite store is
filled with random unit vectors, 100 faces per name (``--longest-names``: one face per name, each
name as long as a name may be in astral characters, the most a store of that size can cost). Every process of an instance keeps the
whole store in memory and reads it again after any change (``mysite/faces/index.py``), and a
search compares each face with all of them: so the table gives, per size, the database file,
the time one process takes to read the store again, the memory that copy keeps and peaks at
(Python's allocations, numpy's arrays included), and the time of a search for one face and for
17. ``MYSITE_FACES_MAX`` (default 10,000) bounds all of these. Benchmark, not test: nothing fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from mysite.faces.index import FaceIndex
from mysite.faces.store import DIMENSIONS, MAX_NAME, FaceStore

PER_NAME = 100


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIMENSIONS)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _median_ms(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _name(i: int, longest: bool) -> str:
    return "\U0001F600" * (MAX_NAME - 10) + f"{i:010d}" if longest else f"person {i}"


def measure(size: int, folder: Path, longest: bool = False) -> dict[str, float]:
    """The figures of one store of ``size`` faces, made in ``folder``."""
    path = folder / f"faces-{size}.sqlite3"
    store = FaceStore(f"sqlite:///{path}")
    rng = np.random.default_rng(size)
    each = 1 if longest else PER_NAME
    for k in range(0, size, each):
        store.add(_name(k // each, longest), list(_unit(rng, min(each, size - k))))
    reload_ms = _median_ms(store.snapshot, 3)
    tracemalloc.start()
    snapshot = store.snapshot()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del snapshot
    index = FaceIndex(store)
    one, seventeen = list(_unit(rng, 1)), list(_unit(rng, 17))
    index.search(one)  # reads the store once
    return {"faces": size, "file_mb": os.path.getsize(path) / 2**20, "reload_ms": reload_ms,
            "kept_mb": kept / 2**20, "peak_mb": peak / 2**20,
            "search1_ms": _median_ms(lambda: index.search(one), 20),
            "search17_ms": _median_ms(lambda: index.search(seventeen), 20)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated numbers of faces")
    parser.add_argument("--longest-names", action="store_true",
                        help=f"one face per name, each {MAX_NAME} characters of four UTF-8 bytes")
    args = parser.parse_args(argv)
    print("| faces | database file | read again after a change | memory kept / peak per process "
          "| search: 1 face / 17 faces |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="mysite-faces-bench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            r = measure(size, Path(tmp), args.longest_names)
            print(f"| {size:,} | {r['file_mb']:.1f} MB | {r['reload_ms']:.0f} ms | {r['kept_mb']:.1f} / "
                  f"{r['peak_mb']:.1f} MB | {r['search1_ms']:.2f} / {r['search17_ms']:.2f} ms |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
