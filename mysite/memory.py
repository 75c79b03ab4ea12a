"""The process's resident memory, and giving freed memory back to the system.

glibc keeps freed blocks in its heaps for reuse: after a request that decoded a large
image, the worker's RSS stays where the peak left it unless the heaps are trimmed
(measured: ``python -m bench.memory``). ``malloc_trim`` does that; it exists only in glibc,
so elsewhere (musl, macOS) ``trim`` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _malloc_trim():  # type: ignore[no-untyped-def]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_TRIM = _malloc_trim()


def rss() -> int:
    """This process's resident set size in bytes (0 where /proc is absent)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def trim() -> bool:
    """Return free heap memory to the system; whether anything was released."""
    return bool(_TRIM(0)) if _TRIM is not None else False
