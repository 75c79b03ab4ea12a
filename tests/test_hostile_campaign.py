"""``python -m bench.hostile --quick`` against the Procfile's gunicorn: every goal of the campaign holds.

1,000 hostile inputs over every route, 20 clients for 10 s with /healthz probed, four uploads at
30 B/s and two ``?url=`` fetches from a dripping loopback origin (deadlines of 3 s), gunicorn's
own size limits. The full campaign (10,000 requests, 50 clients for 60 s, 20 s deadlines) is
in docs/reliability-security.md. About 35 s.
"""

from __future__ import annotations

import subprocess
import sys

from live_server import PROJECT


def test_quick_campaign_meets_every_goal():
    run = subprocess.run([sys.executable, "-m", "bench.hostile", "--quick"], cwd=PROJECT, capture_output=True,
                         text=True, timeout=300)
    table = run.stdout
    assert "| goal | measured | met? |" in table, run.stderr[-3000:]
    assert "FAIL" not in table and run.returncode == 0, table
    assert "| slow uploads | 408: 4 |" in table and "| dripping origin | 422: 2 |" in table, table
