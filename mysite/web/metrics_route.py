"""``GET /metrics``: the Prometheus text exposition of ``mysite/server/metrics.py``, as ``MYSITE_METRICS`` allows.

- ``on``: anyone may read it (the default when ``MYSITE_API_KEYS`` is unset: the figures say
  no more than ``GET /`` already does, and a scraper needs no secret).
- ``key``: only with one of ``MYSITE_API_KEYS``, in ``X-API-Key`` or as
  ``Authorization: Bearer <key>`` (what Prometheus' ``authorization`` scrape setting sends);
  the default when keys are set, so a private site keeps its traffic figures private too.
- ``off``: no ``/metrics`` route, and nothing is counted.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from mysite.server import metrics
from mysite.settings import Settings
from mysite.web.security import KEY_FIELD, KEY_HEADER, Unauthorized, key_matches


def register(app: Flask, settings: Settings) -> None:
    """Add ``/metrics`` unless it is off."""
    access = settings.metrics_access
    if access == "off":
        return
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    def metrics_text() -> Response:
        """Counts and latencies in Prometheus' text format (every process of this instance)"""
        if access == "key":
            check_scraper_key(settings.api_keys)
        response = Response(metrics.render(), content_type=metrics.CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response

    app.register_blueprint(bp)


def check_scraper_key(keys: tuple[str, ...]) -> None:
    """Return if the request carries one of ``keys`` (``X-API-Key`` or a bearer token); else a 401."""
    if KEY_FIELD in request.args or KEY_HEADER.lower() in (k.lower() for k in request.args):
        raise Unauthorized(f"send the API key in the {KEY_HEADER} header or as Authorization: Bearer, "
                           "never in the URL (URLs are written to access logs)")
    given = request.headers.get(KEY_HEADER)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if given is None and scheme.lower() == "bearer":
        given = token.strip()
    if not given:
        raise Unauthorized(f"/metrics wants an API key: send it in the {KEY_HEADER} header "
                           "or as Authorization: Bearer <key>")
    if not key_matches(given, keys):
        raise Unauthorized("the API key is not valid")
