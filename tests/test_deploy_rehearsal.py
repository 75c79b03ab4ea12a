"""The scale-out rehearsal, short: two Procfile instances behind Debian's nginx on loopback lose no
request when one is killed, when both restart in turn, or on SIGHUP; nginx's own errors are JSON.

Needs nginx (``.ci/install-nginx``): skipped without it on a laptop, a failure under ``CI=true``.
About 20 s.
"""

from __future__ import annotations

import pytest
from tests_helpers import require

from bench import deploy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rehearsal():
    require("nginx")
    return deploy.rehearse(quick=True, clients=3)


def test_no_request_fails_in_any_scenario(rehearsal):
    rows, _ = rehearsal
    assert [r["scenario"][:3] for r in rows] == ["bas", "(a)", "(b)", "(c)"]
    for row in rows:
        assert row["requests"] >= 5, row  # the load really ran through each scenario
        assert row["failed"] == 0, f"{row['failed']} failed, first: {row['first_failure']}; nginx: {deploy.NGINX_ERRORS}"


def test_nginx_answers_json_over_the_body_limit_and_with_every_instance_down(rehearsal):
    _, answers = rehearsal
    assert (answers["413"], answers["413_type"], answers["413_json"]) == (413, "application/json", True)
    assert (answers["all_down"], answers["all_down_type"], answers["all_down_json"]) == (502, "application/json", True)
    assert answers["all_down_retry_after"] == "5"
    assert len(answers["restart_to_serving_ms"]) == 3  # one kill-and-start, two rolling restarts
