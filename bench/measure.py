"""Timing, statistics and recall: the small pieces every benchmark table is made of."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Box = Sequence[float]


@dataclass(frozen=True)
class Timing:
    """Repeated wall-clock times of one operation, in milliseconds, and the CPU time it used.

    CPU time (all threads) barely moves when other processes load the machine; wall time does.
    """

    ms: tuple[float, ...]
    cpu_ms: tuple[float, ...] = ()

    @property
    def cpu(self) -> float:
        return float(np.median(self.cpu_ms)) if self.cpu_ms else float("nan")

    @property
    def median(self) -> float:
        return float(np.median(self.ms))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.ms, 90))

    def __str__(self) -> str:
        return f"{self.median:.0f} / {self.p90:.0f}"


def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> tuple[Timing, Any]:
    """Run ``fn`` ``warmup`` + ``reps`` times; the times of the last ``reps`` and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    ms = []
    for _ in range(reps):
        started = time.perf_counter()
        result = fn()
        ms.append((time.perf_counter() - started) * 1000)
    return Timing(tuple(ms)), result


def interleaved(fns: dict[str, Callable[[], Any]], reps: int,
                cpu: dict[str, Callable[[], float]] | None = None) -> dict[str, tuple[Timing, Any]]:
    """Time several operations in turn, rep by rep, so a busy machine slows them alike.

    One warm-up call each; answers each one's times and last result. ``cpu`` names, per
    operation, a clock of the CPU seconds it spends (default: this process's).
    """
    clocks = {name: (cpu or {}).get(name, time.process_time) for name in fns}
    results = {name: fn() for name, fn in fns.items()}
    ms: dict[str, list[float]] = {name: [] for name in fns}
    cpu_ms: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            c0, started = clocks[name](), time.perf_counter()
            results[name] = fn()
            ms[name].append((time.perf_counter() - started) * 1000)
            cpu_ms[name].append((clocks[name]() - c0) * 1000)
    return {name: (Timing(tuple(ms[name]), tuple(cpu_ms[name])), results[name]) for name in fns}


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def recall(reference: Sequence[Box], found: Sequence[Box], threshold: float = 0.5) -> tuple[int, int]:
    """How many reference boxes some found box overlaps with IoU >= ``threshold``, out of how many."""
    hit = sum(any(iou(r, f) >= threshold for f in found) for r in reference)
    return hit, len(reference)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
