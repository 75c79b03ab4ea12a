"""How many CPUs this process may use: its affinity, capped by a cgroup CPU quota (``docker run
--cpus``, a Kubernetes limit), which affinity does not show. Standard library only: gunicorn's
settings size the worker pool with it, and the nginx configuration its ``worker_processes``."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def quota(cpu_max: Path | None = None, v1: tuple[Path, Path] | None = None) -> float | None:
    """The cgroup's CPU quota in CPUs (``cpu.max`` "200000 100000" -> 2.0), or None without one."""
    cpu_max, v1 = cpu_max or CGROUP_V2, v1 or CGROUP_V1
    try:
        q, _, period = cpu_max.read_text().strip().partition(" ")
        if q != "max":
            return int(q) / int(period or "100000")
        return None
    except (OSError, ValueError, ZeroDivisionError):
        pass
    try:
        q_us, period_us = (int(p.read_text().strip()) for p in v1)
        return q_us / period_us if q_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def available(cpu_max: Path | None = None, v1: tuple[Path, Path] | None = None) -> int:
    """CPUs to size a pool by: affinity, capped by the quota rounded up (1.5 CPUs -> 2), at least 1."""
    cpus = _affinity()
    q = quota(cpu_max, v1)
    if q is not None:
        cpus = min(cpus, math.ceil(q))
    return max(1, cpus)


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of process ``pid`` on ``cpus`` (threads started later inherit it); nothing off Linux."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(int(tid), cpus)


class Share:
    """The CPUs each running job holds, so that jobs side by side each have their own.

    A job started alone is given every CPU (OpenCV's threads spread it over them); one started
    beside it takes a CPU from the job holding the most, whose threads are moved off it
    (``pin``): without that, the first job's threads would take two CPUs' worth of turns from
    the second job's one thread. When a job ends, its CPUs go back to a job that had to give some.
    With a quota below the affinity, CPUs cannot be told apart: the count is shared, nothing pinned.
    """

    def __init__(self, count: int, ids: frozenset[int] | None = None) -> None:
        ids = frozenset(os.sched_getaffinity(0)) if ids is None and hasattr(os, "sched_getaffinity") else ids
        self.count = count
        self.ids = ids if ids is not None and len(ids) == count else frozenset()
        self.held: dict[int, frozenset[int]] = {}
        self.wanted: dict[int, int] = {}

    def take(self, pid: int) -> int:
        """Process ``pid`` starts a job: pin it to the CPUs it is given; how many threads it should use."""
        if not self.ids:
            threads = max(1, self.count - len(self.wanted))
            self.wanted[pid] = threads
            return threads
        free = self.ids.difference(*self.held.values())
        if not free and self.held:
            richest = max(self.held, key=lambda p: len(self.held[p]))
            if len(self.held[richest]) > 1:
                given = max(self.held[richest])
                self.held[richest] -= {given}
                pin(richest, self.held[richest])
                free = frozenset({given})
        self.held[pid] = free
        self.wanted[pid] = max(1, len(free))
        pin(pid, free or self.ids)  # none free (more processes than CPUs): anywhere, with one thread
        return self.wanted[pid]

    def release(self, pid: int) -> None:
        """Process ``pid``'s job ended (or the process did): its CPUs go back to a job that gave some up."""
        self.wanted.pop(pid, None)
        freed = self.held.pop(pid, frozenset())
        for other, cpus in self.held.items():
            short = self.wanted[other] - len(cpus)
            if freed and short > 0 and cpus:
                back = frozenset(sorted(freed)[:short])
                freed -= back
                self.held[other] = cpus | back
                pin(other, self.held[other])
