"""Every error as JSON ``{"status": ..., "message": ..., "reason": ...}``, in the book's words where it has them."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from mysite.errors import ApiError, Reason, reason_for
from mysite.web.inputs import body_too_large
from mysite.web.respond import error_fields, error_status
from mysite.web.state import current_registry

log = logging.getLogger(__name__)


def public_text(message: str) -> str:
    """``message`` with server paths named relative to their folders (all of them with MYSITE_DEBUG=1)."""
    namer = current_registry().namer
    return namer.scrub(message) if namer is not None else message


def _json(code: int, status: str, message: str, reason: Reason | None = None) -> Response:
    # An endpoint's clients may read more than status and message (the Keras client's "success");
    # programs read the stable reason, people the message.
    message = public_text(message)
    fields = {"status": status, "message": message, "reason": (reason or reason_for(code)).value}
    response = jsonify({**fields, **error_fields(request.path, message)})
    response.status_code = error_status(request.path, code)
    return response


def register(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        response = _json(exc.code, exc.status, exc.message, exc.reason)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound) -> Response:
        return _json(404, "not found", "route not found")

    @app.errorhandler(MethodNotAllowed)
    def method_not_allowed(exc: MethodNotAllowed) -> Response:
        response = _json(405, "failure", f"{request.method} method not supported for API")
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods or ()))
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        return _json(413, "too large", body_too_large(request.content_length, app.config["MAX_CONTENT_LENGTH"],
                                                       app.config["MYSITE_MAX_UPLOAD_MB"]))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        status = "not ok" if code == 400 else (exc.name or "error").lower()
        return _json(code, status, exc.description or exc.name)

    @app.errorhandler(MemoryError)
    def out_of_memory(exc: MemoryError) -> Response:
        # Without the CV pool a decode runs here: its allocation failed, and what it held is given back.
        log.warning("out of memory on %s %s: %s", request.method, request.path, exc)
        return _json(413, "too large", "this image needs more memory than the server could give it; "
                     "send a smaller image", Reason.TOO_LARGE)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        # A real bug: the traceback goes to the log, never to the client.
        log.exception("unhandled error on %s %s", request.method, request.path)  # the log format adds the request id
        return _json(500, "internal error", "internal error occurred in server")
