"""The hostile campaign, quick, against the Procfile's gunicorn: every goal of the campaign holds.

1,000 hostile inputs over every image route, 100 more over the face routes (with dlib's model
from the shared folder: always under CI), 20 clients for 10 s with /healthz probed, four uploads
at 30 B/s, two ``?url=`` fetches from a dripping loopback origin (deadlines of 3 s) and two gzip
bombs from it, gunicorn's own size limits. The full campaign (``python -m bench.hostile``: 10,000
requests, 50 clients for 60 s, 20 s deadlines) is in docs/reliability-security.md. About 50 s.
"""

from __future__ import annotations

import os

import pytest

from bench import hostile

pytestmark = pytest.mark.slow


def test_quick_campaign_meets_every_goal():
    campaign = hostile.run(hostile.parse_args(["--quick"]))
    rows, met = campaign.goals()
    assert met, [row for row in rows if not row[2]]
    assert campaign.tally.by_phase["slow uploads"] == {408: 4}
    assert campaign.tally.by_phase["dripping origin"] == {422: 2}
    assert campaign.tally.by_phase["gzip-bomb origin"] == {200: 1, 413: 1}
    if campaign.args.face_model or os.environ.get("CI") == "true":  # CI has the model: the face routes were tried
        faces = campaign.tally.by_phase["faces"]
        assert sum(faces.values()) >= 100 and faces.get(200, 0) > 0, faces
