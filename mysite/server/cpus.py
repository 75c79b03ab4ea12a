"""How many CPUs this process may use: its affinity, capped by a cgroup CPU quota (``docker run
--cpus``, a Kubernetes limit), which affinity does not show. Standard library only: gunicorn's
settings size the worker pool with it, and the nginx configuration its ``worker_processes``."""

from __future__ import annotations

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
