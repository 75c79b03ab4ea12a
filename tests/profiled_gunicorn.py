"""gunicorn's settings as the Procfile runs them, plus a profiler in every process: for each call of
a watched function, the mysite modules that ran code during it, one JSON line per call, written to
files in ``MYSITE_TEST_MODULES_DIR`` (``test_request_modules.py`` reads them).

Set here, in the master, before gunicorn forks: the workers' threads (``threading.setprofile``)
and the pool's processes (forked from a thread that has it) inherit the profiler.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from types import FrameType
from typing import Any

from mysite.server.gunicorn_conf import *  # noqa: F403 - the Procfile's settings, hooks included

# The web worker's view, and what a CV process runs.
WATCH = {("mysite.web.api", "handle"), ("mysite.pipeline", "run_job")}
FOLDER = os.environ["MYSITE_TEST_MODULES_DIR"]
_calls = threading.local()


def _profile(frame: FrameType, event: str, arg: Any) -> None:
    name = frame.f_globals.get("__name__", "")
    key = (name, frame.f_code.co_name)
    seen = _calls.__dict__
    if event == "call":
        if key in WATCH:
            seen["depth"] = seen.get("depth", 0) + 1
            seen.setdefault("modules", set())
        if seen.get("depth") and (name == "mysite" or name.startswith("mysite.")):
            seen["modules"].add(name)
    elif event == "return" and key in WATCH:
        seen["depth"] -= 1
        if not seen["depth"]:
            line = json.dumps({"at": time.time(), "watched": key[1], "modules": sorted(seen.pop("modules"))})
            with open(os.path.join(FOLDER, f"{os.getpid()}.jsonl"), "a") as out:
                out.write(line + "\n")


sys.setprofile(_profile)
threading.setprofile(_profile)
