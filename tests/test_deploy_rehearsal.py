"""The scale-out rehearsal, short: two Procfile instances behind Debian's nginx shaped like the
ALB (no retries, the health check of ``.ebextensions`` with its times x 0.2) on loopback.

A rolling deploy and SIGHUP lose no request; an instance killed and restarted by its supervisor,
or left dead, costs only the balancer's JSON 502s (and the answers it was sending when killed, cut
short) until it serves again or the health check takes it out, and none after; nginx's own errors
are JSON. Needs nginx (``.ci/install-nginx``): skipped without it on a laptop, a failure under
``CI=true``. About 60 s (75 s at load 16).
"""

from __future__ import annotations

import pytest
from tests_helpers import require

from bench import deploy
from testkit.ebconfig import HealthCheck

pytestmark = pytest.mark.slow
CLIENTS = 3


@pytest.fixture(scope="module")
def rehearsal():
    require("nginx")
    rows, answers = deploy.rehearse(quick=True, clients=CLIENTS)
    return {r["scenario"][:3]: r for r in rows}, answers


def test_every_scenario_ran_under_load(rehearsal):
    rows, _ = rehearsal
    assert list(rows) == ["bas", "(a)", "(b)", "(c)", "(d)"]
    for row in rows.values():
        assert row["requests"] >= 5, row  # the load really ran through each scenario


@pytest.mark.parametrize("scenario", ["bas", "(c)", "(d)"])
def test_no_request_fails_without_a_crash(rehearsal, scenario):
    row = rehearsal[0][scenario]
    assert row["failed"] == 0, f"{row['failed']} failed, first: {row['first_failure']}; nginx: {deploy.NGINX_ERRORS}"


def test_a_crash_costs_only_json_502s_until_the_instance_serves_or_is_out(rehearsal):
    rows, _ = rehearsal
    check = HealthCheck.configured(scale=0.2)
    worst_out = check.interval * (check.unhealthy + 1) + check.timeout  # the check's phase, then its failures
    restarted, dead = rows["(a)"], rows["(b)"]
    for row in (restarted, dead):
        assert row["busy"] == 0 and row["failed"] == row["lost"], row
        assert row["cut"] <= CLIENTS, row  # only what the killed instance was sending: one answer a client at most
        if row["lost"] > row["cut"]:
            assert '"reason": "unavailable"' in row["first_uncut"], row  # the balancer's JSON 502
    assert restarted["lost_until_s"] <= max(restarted["serving_s"], worst_out) + 0.5, restarted
    assert dead["out_s"] <= worst_out, dead
    assert dead["lost_until_s"] <= dead["out_s"] + 0.5, dead  # nothing lost once it is out, nor when back in


def test_nginx_answers_json_over_the_body_limit_and_with_every_instance_down(rehearsal):
    _, answers = rehearsal
    assert (answers["413"], answers["413_type"], answers["413_json"]) == (413, "application/json", True)
    assert (answers["all_down"], answers["all_down_type"], answers["all_down_json"]) == (502, "application/json", True)
    assert answers["all_down_retry_after"] == "5"
    assert len(answers["restart_to_serving_ms"]) == 4  # a restart, a dead one started, two rolling restarts
