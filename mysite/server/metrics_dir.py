"""The folder where every process of a gunicorn instance writes its metrics (``metrics.py``).

``prometheus_client`` picks file-backed values when it is first imported, and only if
``PROMETHEUS_MULTIPROC_DIR`` is set by then; a child process inherits the variable. So the
gunicorn master calls ``prepare()`` from its config, before the app (and the library) is
loaded: an operator's folder is emptied of the last run's files, else a fresh temporary folder
is made (and removed by ``remove()`` when gunicorn exits). Standard library only, on purpose:
importing ``prometheus_client`` here would be too early.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import MutableMapping
from pathlib import Path

from mysite.server import tempdirs

ENV = "PROMETHEUS_MULTIPROC_DIR"
_made: list[Path] = []  # a folder this process created, removed at exit


def prepare(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` (if unset) to a new folder, or empty the one it names; the folder."""
    if "prometheus_client" in sys.modules and not environ.get(ENV):
        # Too late for this process: its values would stay in memory, and /metrics would show no files.
        raise RuntimeError(f"prometheus_client was imported before {ENV} was set")
    given = environ.get(ENV, "").strip()
    if given:
        # Its real path, checked and then used: a symlink on the way could be pointed elsewhere later.
        folder = Path(os.path.realpath(given))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tempdirs.check_private(str(folder))  # files another user put there would be read as ours, or written through
        environ[ENV] = str(folder)
        for stale in folder.glob("*.db"):  # the last run's processes are gone; their counts would add up again
            stale.unlink(missing_ok=True)
    else:
        folder = Path(tempdirs.private_folder("mysite-metrics-"))  # no other user's files among ours
        _made.append(folder)
        environ[ENV] = str(folder)
    return folder


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: the worker's queue and running gauges no longer count."""
    from mysite.server.metrics import process_dead

    process_dead(pid)


def remove() -> None:
    """Remove the folder ``prepare()`` made (an operator's own folder stays)."""
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)
