"""The quick hostile campaign (``python -m bench.hostile --quick``) against the Procfile's gunicorn on loopback.

Every generated, mutated and bomb input, the SSRF forms as ``?url=`` values, a short load,
one slow upload and one dripping ``?url=`` origin: never a 5xx, no worker killed or restarted,
every answer JSON (or the image, page or text the route answers). About 40 s on 2 CPUs.
"""

from __future__ import annotations

from bench import hostile


def test_quick_campaign_no_5xx_no_kills_all_json():
    result = hostile.run(hostile.QUICK)
    table = hostile.report(result)
    assert result.hostile.total >= hostile.QUICK.hostile, table
    assert result.five_xx == 0, table
    assert result.kills == 0 and result.restarts == 0, table
    assert result.non_json == 0, table
    assert not any(result.hostile.problems.values()) and not any(result.load.problems.values()), table
    assert result.hostile.statuses["reset"] == 0 and result.load.statuses["reset"] == 0, table
    # The campaign covered the ground: answers and refusals of each kind, the SSRF forms all refused.
    s = result.hostile.statuses
    assert s["200"] > 50 and s["400"] > 50 and s["413"] > 0 and s["415"] > 0 and s["422"] > 0 and s["405"] > 0, table
    assert sum(result.hostile.ssrf.values()) > 100 and set(result.hostile.ssrf) <= {"400", "422"}, table
    assert result.drip_honest.status == 200, "the loopback origin is reachable through ?url=: " + table
    assert result.load.statuses["200"] > 0, table
    assert max(result.rss_peak.values()) > 0, table
