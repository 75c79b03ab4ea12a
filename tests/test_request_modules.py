"""How many of the package's modules one ``POST /detect`` runs code in, counted with a profiler.

The request is the test client's, in-process (``MYSITE_CV_PROCESSES=0``: the CV work runs in
this thread, behind the gate). A module counts when a Python function defined in it is called
(dataclass-made methods count for the module of their class; C functions do not). Three sets:

- ``all``: from the WSGI call to the last byte, cross-cutting layers included — the request id
  and metrics middleware (``server/observe``, ``server/request_id``), the upload and send
  deadlines, the security headers, the heap trim after the answer (``server/memory``);
- ``path``: while the view (``web/api.handle``) runs, from the request to the response object:
  reading the request, picking and checking the model, admission, the CV work and the answer;
- ``cv``: while ``pipeline.run_job`` runs: the half that runs in a CV process under the pool.

As the Procfile runs the site, the path is split between two processes: a web worker's thread runs
the view up to the pool's client, and a CV process runs ``run_job``. The last test counts each under
a real gunicorn (``profiled_gunicorn.py``).

docs/development.md gives the lists and what each module on the path is for.
"""

from __future__ import annotations

import io
import json
import sys
import time
from types import FrameType
from typing import Any

import pytest
import requests
from tests_helpers import read

# Ceilings for the counts as they are: a new module on the path has to be argued for here.
CEILING = {"haar": {"all": 23, "path": 16, "cv": 9}, "yunet": {"all": 22, "path": 15, "cv": 8}}
# Under gunicorn: the web worker's view, and a CV process's job (its memory hook is the pool's: one more).
# The body is in before the view runs (server/upload_deadline); the settings' sizes are plain values.
PER_PROCESS = {"haar": {"handle": 8, "run_job": 10}, "yunet": {"handle": 8, "run_job": 9}}
WATCH = {("mysite.web.api", "handle"): "path", ("mysite.pipeline", "run_job"): "cv"}


def modules_run(client: Any, url: str, data: bytes) -> dict[str, set[str]]:
    """The mysite modules whose functions run while ``client`` handles one upload to ``url``, by set."""
    found: dict[str, set[str]] = {"all": set(), "path": set(), "cv": set()}
    depth = {"path": 0, "cv": 0}

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        name = frame.f_globals.get("__name__", "")
        watched = WATCH.get((name, frame.f_code.co_name))
        if event == "call":
            if watched:
                depth[watched] += 1
            if name == "mysite" or name.startswith("mysite."):
                found["all"].add(name)
                found["path"].update([name] if depth["path"] else [])
                found["cv"].update([name] if depth["cv"] else [])
        elif event == "return" and watched:
            depth[watched] -= 1

    body = {"image": (io.BytesIO(data), "photo.jpg")}
    sys.setprofile(profile)
    try:
        r = client.post(url, data=body)
    finally:
        sys.setprofile(None)
    assert r.status_code == 200, r.get_json()
    return found


@pytest.fixture(scope="module")
def client():
    from mysite import create_app

    return create_app({"MYSITE_LOG_LEVEL": "WARNING", "MYSITE_CV_PROCESSES": "0"}).test_client()


@pytest.mark.parametrize("detector", ["haar", "yunet"])
def test_modules_one_detect_runs(client, detector):
    data = read("group_17_faces.jpg")
    client.post(f"/detect?detector={detector}", data={"image": (io.BytesIO(data), "warm.jpg")})
    found = modules_run(client, f"/detect?detector={detector}", data)
    print(detector, {k: sorted(v) for k, v in found.items()})
    assert found["cv"] <= found["path"] <= found["all"]
    # The CV half knows nothing of Flask or the server: it runs in a process that has neither.
    assert not [m for m in found["cv"] if m.startswith(("mysite.web", "mysite.server"))], found["cv"]
    for kind, ceiling in CEILING[detector].items():
        assert len(found[kind]) <= ceiling, f"{kind}: {len(found[kind])} modules, {sorted(found[kind])}"


@pytest.mark.slow
def test_modules_per_process_under_gunicorn(tmp_path):
    from live_server import PROJECT, start_gunicorn

    folder = tmp_path / "modules"
    folder.mkdir()
    env = {"MYSITE_TEST_MODULES_DIR": str(folder), "PYTHONPATH": str(PROJECT / "tests")}
    data = read("group_17_faces.jpg")
    with start_gunicorn(env, log_dir=tmp_path, config="profiled_gunicorn") as live:
        for detector, ceilings in PER_PROCESS.items():
            started = time.time()
            for _ in range(2):  # the second request is the one counted: the first may set things up
                r = requests.post(f"{live.url}/detect?detector={detector}", files={"image": ("p.jpg", data)},
                                  timeout=60)
                assert r.status_code == 200, r.text
            calls = [json.loads(line) for f in folder.iterdir() for line in f.read_text().splitlines()]
            for watched, ceiling in ceilings.items():
                last = max((c for c in calls if c["watched"] == watched and c["at"] >= started), key=lambda c: c["at"])
                print(detector, watched, len(last["modules"]), last["modules"])
                assert len(last["modules"]) <= ceiling, (watched, last["modules"])
                if watched == "run_job":  # a CV process runs no web code; the server's part is the pool's own hook
                    assert not [m for m in last["modules"] if m.startswith("mysite.web")], last["modules"]
