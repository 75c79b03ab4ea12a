"""``.ebextensions/01-mysite.config`` read as namespace -> option -> value (its YAML is that flat).

The deploy rehearsal takes its health checks from it; the tests check every option against AWS's
documentation and the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from testkit.net import ROOT

EB_CONFIG = ROOT / ".ebextensions" / "01-mysite.config"
PROCESS = "aws:elasticbeanstalk:environment:process:default"


def eb_options() -> dict[str, dict[str, str]]:
    """``option_settings`` of the config file."""
    options: dict[str, dict[str, str]] = {}
    namespace = None
    for raw in EB_CONFIG.read_text().splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip() or line == "option_settings:":
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":") if indent == 2 else line.strip().partition(": ")
        if indent == 2:
            namespace = line.strip().rstrip(":")
            options[namespace] = {}
        else:
            if indent != 4 or not namespace:
                raise ValueError(f"unexpected line in {EB_CONFIG.name}: {raw!r}")
            options[namespace][key.strip()] = value.strip().strip('"')
    return options


@dataclass(frozen=True)
class HealthCheck:
    """The load balancer's target health check (seconds and counts as the ALB takes them)."""

    path: str
    interval: float
    timeout: float
    healthy: int
    unhealthy: int

    @classmethod
    def configured(cls, scale: float = 1.0) -> HealthCheck:
        """As ``.ebextensions`` sets it; ``scale`` < 1 shortens the times alike (a quick rehearsal)."""
        p = eb_options()[PROCESS]
        return cls(p["HealthCheckPath"], float(p["HealthCheckInterval"]) * scale,
                   float(p["HealthCheckTimeout"]) * scale, int(p["HealthyThresholdCount"]),
                   int(p["UnhealthyThresholdCount"]))
