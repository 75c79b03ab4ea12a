"""The process memory helpers (``mysite/server/memory.py``) on this machine's C library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Faults taking and writing a 4 MB buffer twice, after ``reuse_buffers`` or not: in a fresh interpreter,
# whose heap has no history.
SCRIPT = """
import resource, sys
from mysite.server import memory
if sys.argv[1] == "reuse":
    assert memory.reuse_buffers()
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = bytearray(4 << 20)
    buffer[::4096] = b"\\x01" * len(buffer[::4096])
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
print(faults())
"""


def _second_faults(mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_buffer_is_reused_by_the_next_request_without_faulting_its_pages_in_again() -> None:
    assert _second_faults("default") > 512  # glibc maps a 4 MB buffer afresh each time: 1,024 pages
    assert _second_faults("reuse") < 64
