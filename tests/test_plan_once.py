"""A ``POST /detect`` plans once: the model's plan is made from the header and travels to ``run``.

Every planning function is counted while one request is handled (in-process, as the test
client runs it), and each call is marked by whether it came while the model ran: ``run``
follows the plan it is given and decides nothing again.
"""

from __future__ import annotations

import functools
import io
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from tests_helpers import BOOK_GROUP_BOXES, boxes_of, read

from mysite.vision import budget, fastpath, yunet
from mysite.web.state import current_registry
from testkit import compose

PHOTOS = {"group": lambda: read("group_17_faces.jpg"), "12 MP": functools.cache(lambda: compose.build_jpeg()[0])}


def _count(calls: Counter[tuple[str, str]], name: str, fn: Callable[..., Any], running: list[bool]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def counted(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1).f_globals.get("__name__", "?")
        calls[(name if name != "budget.pyramid" else f"budget.pyramid from {caller}",
               "run" if running[0] else "plan")] += 1
        return fn(*args, **kwargs)
    return counted


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("detector", ["haar", "yunet"])
def test_one_detect_plans_once(app, monkeypatch, detector, photo):
    model = current_registry(app).get({"haar": "face", "yunet": "yunet"}[detector])
    calls: Counter[tuple[str, str]] = Counter()
    running = [False]
    run = model.run

    def watched_run(image: Any, plan: Any) -> Any:
        running[0] = True
        try:
            return run(image, plan)
        finally:
            running[0] = False

    monkeypatch.setattr(model, "run", watched_run)
    monkeypatch.setattr(model, "plan", _count(calls, "model.plan", model.plan, running))
    for mod, name in ((fastpath, "plan"), (fastpath, "smallest"), (fastpath, "reduction"), (yunet, "passes"),
                      (budget, "pyramid")):
        monkeypatch.setattr(mod, name, _count(calls, f"{mod.__name__.rsplit('.', 1)[-1]}.{name}", getattr(mod, name),
                                              running))
    r = app.test_client().post(f"/detect?detector={detector}",
                               data={"image": (io.BytesIO(PHOTOS[photo]()), "photo.jpg")})
    assert r.status_code == 200, r.get_json()
    if detector == "haar" and photo == "group":
        assert sorted(boxes_of(r.get_json())) == BOOK_GROUP_BOXES
    assert calls[("model.plan", "plan")] == 1, calls
    planning = {"fastpath.plan", "fastpath.smallest", "fastpath.reduction", "yunet.passes", "model.plan"}
    assert not [k for k in calls if k[0] in planning and k[1] == "run"], f"run planned again: {calls}"
    assert all(n == 1 for (name, phase), n in calls.items() if name in planning), calls
    if detector == "haar":
        assert calls[("fastpath.plan", "plan")] == 1
        # The cost of the scan is counted once; the levels scanned are those of the working image as decoded.
        assert calls[("budget.pyramid from mysite.vision.cascade", "plan")] == 1, calls
        assert calls[("budget.pyramid from mysite.vision.cascade", "run")] == 1, calls
    else:
        assert calls[("yunet.passes", "plan")] == 1
