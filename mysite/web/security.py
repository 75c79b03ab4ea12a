"""What every answer carries and who may ask: security headers, OPTIONS, API keys and CORS.

- Every answer: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy``; HTML pages also
  refuse to be framed (``Content-Security-Policy: frame-ancestors 'none'``, ``X-Frame-Options``)
  and run only the site's own scripts.
- ``OPTIONS`` answers JSON with the ``Allow`` header (Flask's own answer is an empty text/html).
- ``MYSITE_API_KEYS``: the image endpoints want a key (header ``X-API-Key`` or form field
  ``api_key``, as DeepStack clients send it); never in the URL, where access logs would keep it.
- ``MYSITE_CORS_ORIGINS``: browsers on those origins may call the API; without it no
  ``Access-Control-*`` header is ever sent.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import Flask, Request, Response, current_app, jsonify, request

from mysite.errors import ApiError, Reason
from mysite.settings import Settings
from mysite.web.inputs import body_is_form
from mysite.web.state import current_settings

KEY_HEADER = "X-API-Key"
KEY_FIELD = "api_key"
# The API's own pages may run only their own scripts; nobody may frame them (clickjacking).
PAGE_POLICY = "frame-ancestors 'none'; script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
# Headers a cross-origin browser request may send (a preflight asks), and those its script may read.
CORS_REQUEST_HEADERS = ("Content-Type", KEY_HEADER, "Accept")
CORS_EXPOSED_HEADERS = ("Server-Timing",)
CORS_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer
SHORT_KEY = 16  # characters: a key shorter than this can be guessed by a patient script

log = logging.getLogger(__name__)


class Unauthorized(ApiError):
    code, status, reason = 401, "unauthorized", Reason.UNAUTHORIZED

    def __init__(self, message: str) -> None:
        # Says how to send a key (RFC 9110 requires the header on a 401), never which keys there are.
        super().__init__(message, headers={
            "WWW-Authenticate": f'ApiKey realm="mysite", header="{KEY_HEADER}", form-field="{KEY_FIELD}"'})


def register(app: Flask, protected: set[str]) -> None:
    """Install the hooks on ``app``; ``protected``: the blueprints whose routes want a key when keys are set."""
    settings = current_settings(app)
    # Said once at start, so an operator sees whether the site is open (never the keys themselves).
    if settings.api_keys:
        log.info("API keys required on the image endpoints (%d keys)", len(settings.api_keys))
        if any(len(k) < SHORT_KEY for k in settings.api_keys):
            log.warning("MYSITE_API_KEYS holds a key shorter than %d characters: easy to guess", SHORT_KEY)
    if settings.cors_origins:
        log.info("CORS allowed for %s", ", ".join(settings.cors_origins))

    @app.before_request
    def _options_and_keys() -> Response | None:
        if request.method == "OPTIONS" and request.routing_exception is None:
            return options_answer(settings)
        if settings.api_keys and request.blueprint in protected:
            check_key(request, settings.api_keys + settings.admin_keys)  # an admin key opens them too
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        add_headers(response, settings)
        return response


def options_answer(settings: Settings) -> Response:
    """The methods this URL takes, as JSON and in ``Allow`` (a CORS preflight also gets its headers)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    methods = sorted(set(adapter.allowed_methods(request.path)) | {"OPTIONS"})
    response = jsonify({"status": "ok", "path": request.path, "methods": methods})
    response.headers["Allow"] = ", ".join(methods)
    origin = request.headers.get("Origin")
    if origin and request.headers.get("Access-Control-Request-Method") and allowed_origin(origin, settings):
        response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        response.headers["Access-Control-Allow-Headers"] = ", ".join(CORS_REQUEST_HEADERS)
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
    return response


def check_key(req: Request, keys: tuple[str, ...]) -> None:
    """Return if ``req`` carries one of ``keys``; else raise a 401 saying how to send one."""
    if KEY_FIELD in req.args or KEY_HEADER.lower() in (k.lower() for k in req.args):
        raise Unauthorized(f"send the API key in the {KEY_HEADER} header or an {KEY_FIELD} form field, "
                           "never in the URL (URLs are written to access logs)")
    given = req.headers.get(KEY_HEADER)
    if given is None and req.method == "POST" and req.mimetype in ("multipart/form-data",
                                                                   "application/x-www-form-urlencoded"):
        if body_is_form(req):
            given = req.form.get(KEY_FIELD)
    if not given:
        raise Unauthorized(f"this server wants an API key: send it in the {KEY_HEADER} header "
                           f"or an {KEY_FIELD} form field")
    if not key_matches(given, keys):
        raise Unauthorized("the API key is not valid")


def key_matches(given: str, keys: tuple[str, ...]) -> bool:
    """Whether ``given`` is one of ``keys``, compared in constant time against every key (no early exit)."""
    # Digests first: equal lengths, so the comparison's time says nothing about a key's length either.
    sent = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    matches = [hmac.compare_digest(sent, hashlib.sha256(key.encode("utf-8")).digest()) for key in keys]
    return any(matches)


def allowed_origin(origin: str, settings: Settings) -> bool:
    return "*" in settings.cors_origins or origin.rstrip("/") in settings.cors_origins


def add_headers(response: Response, settings: Settings) -> None:
    """The headers every answer gets, the page headers on HTML, and CORS's when it is on."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        headers["Content-Security-Policy"] = PAGE_POLICY
        headers["X-Frame-Options"] = "DENY"
    if not settings.cors_origins:
        return
    headers.add("Vary", "Origin")  # the answer depends on who asks: caches must keep one per origin
    origin = request.headers.get("Origin")
    if origin and allowed_origin(origin, settings):
        headers["Access-Control-Allow-Origin"] = "*" if "*" in settings.cors_origins else origin
        headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSED_HEADERS)
