"""Timing, statistics and recall: the small pieces every benchmark table is made of."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from testkit.boxes import Box, iou, recall  # noqa: F401 - the benchmarks' tables use them from here


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


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
