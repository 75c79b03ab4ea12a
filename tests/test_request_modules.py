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

docs/development.md gives the lists and what each module on the path is for.
"""

from __future__ import annotations

import io
import sys
from types import FrameType
from typing import Any

import pytest
from tests_helpers import read

# Ceilings for the counts as they are: a new module on the path has to be argued for here.
CEILING = {"haar": {"all": 24, "path": 19, "cv": 9}, "yunet": {"all": 23, "path": 18, "cv": 8}}
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
