"""A command that a test or a benchmark stops with Ctrl-C (SIGINT), started with that signal at its default.

A test run started as a background job of a non-interactive shell (``pytest ... &`` in a script)
ignores SIGINT and SIGQUIT, and every process it starts inherits that: Python then never raises
KeyboardInterrupt, and bash cannot trap a signal that was ignored when it started. A container's
first process, or a command typed at a terminal, has both at their defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# Runs before the command and becomes it (exec: the same process id, so its process group is the same).
_DEFAULTS = ("import os, signal, sys\n"
             "for s in (signal.SIGINT, signal.SIGQUIT): signal.signal(s, signal.SIG_DFL)\n"
             "os.execvp(sys.argv[1], sys.argv[1:])")


def interruptible(argv: Sequence[str]) -> list[str]:
    """``argv`` run with SIGINT and SIGQUIT at their defaults, whatever this process ignores."""
    return [sys.executable, "-c", _DEFAULTS, *argv]
