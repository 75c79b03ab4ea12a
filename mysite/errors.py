"""Errors that carry their HTTP meaning without importing Flask.

Vision and input code raise these; the web layer turns any of them into the
book's JSON error shape ``{"status": ..., "message": ..., "reason": ...}``:
``message`` is for people and may change, ``reason`` (one of ``REASONS``) is for
programs and does not.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a request failed, as a program reads it: a stable snake_case word on every error body."""

    BAD_REQUEST = "bad_request"  # a request malformed in a way no other reason names
    MISSING_IMAGE = "missing_image"  # neither an image nor a url was sent
    BAD_PARAMETER = "bad_parameter"  # a parameter with a wrong type, range or value
    BAD_IMAGE = "bad_image"  # bytes that claim to be an image but cannot be read
    UNSUPPORTED_MEDIA = "unsupported_media"  # not an image format the server reads
    TOO_LARGE = "too_large"  # body, image, pixels or work over the server's limits
    UNPROCESSABLE = "unprocessable"  # a valid image the model cannot answer for (e.g. no digit in it)
    URL_REFUSED = "url_refused"  # ?url= refused by policy (scheme, address, redirects, turned off)
    URL_FAILED = "url_failed"  # ?url= allowed, but fetching it failed
    TIMEOUT = "timeout"  # a deadline passed (fetching a url, reading the body, the proxy)
    UNAUTHORIZED = "unauthorized"  # no API key, or one that is not valid
    MODEL_NOT_LOADED = "model_not_loaded"  # the endpoint's model is not on this server
    UNAVAILABLE = "unavailable"  # the service is restarting or overloaded
    STORE_FULL = "store_full"  # the face store holds as many faces as it may (MYSITE_FACES_MAX)
    BUSY = "busy"  # no detection process became free in time: retry after Retry-After (a second)
    NOT_FOUND = "not_found"  # no such route
    METHOD_NOT_ALLOWED = "method_not_allowed"  # the route does not take this method
    INTERNAL_ERROR = "internal_error"  # a bug on the server (logged there, never detailed)
    HTTP_ERROR = "http_error"  # any other HTTP error status

    def __str__(self) -> str:
        return self.value


# Every reason an error body may carry: the one list docs/api.md and the API description read.
REASONS: tuple[str, ...] = tuple(r.value for r in Reason)

# The reason an HTTP status gets when nothing more specific is known (werkzeug's own errors).
REASON_BY_CODE: dict[int, Reason] = {
    400: Reason.BAD_REQUEST, 401: Reason.UNAUTHORIZED, 404: Reason.NOT_FOUND,
    405: Reason.METHOD_NOT_ALLOWED, 408: Reason.TIMEOUT, 413: Reason.TOO_LARGE,
    414: Reason.TOO_LARGE, 415: Reason.UNSUPPORTED_MEDIA, 422: Reason.UNPROCESSABLE,
    431: Reason.TOO_LARGE, 500: Reason.INTERNAL_ERROR, 502: Reason.UNAVAILABLE,
    503: Reason.UNAVAILABLE, 504: Reason.TIMEOUT,
}


def reason_for(code: int) -> Reason:
    """The default reason of an HTTP error status."""
    return REASON_BY_CODE.get(code, Reason.HTTP_ERROR)


class ApiError(Exception):
    """An error the client caused (or a model that is not there), never a bug."""

    code: int = 400
    status: str = "bad request"
    reason: Reason = Reason.BAD_REQUEST

    def __init__(self, message: str, *, headers: dict[str, str] | None = None,
                 reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if reason is not None:
            self.reason = reason

    def body(self) -> dict[str, str]:
        return {"status": self.status, "message": self.message, "reason": self.reason.value}

    def parts(self) -> tuple[int, str, str, str, dict[str, str]]:
        """What ``from_parts`` needs to raise this error again in another process."""
        return self.code, self.status, self.message, self.reason.value, dict(self.headers)

    @staticmethod
    def from_parts(code: int, status: str, message: str, reason: str, headers: dict[str, str]) -> ApiError:
        error = ApiError(message, headers=headers, reason=Reason(reason))
        error.code, error.status = code, status
        return error


class BadRequest(ApiError):
    code, status, reason = 400, "bad request", Reason.BAD_REQUEST


class TooLarge(ApiError):
    code, status, reason = 413, "too large", Reason.TOO_LARGE


class UnsupportedMedia(ApiError):
    code, status, reason = 415, "unsupported media type", Reason.UNSUPPORTED_MEDIA


class Unprocessable(ApiError):
    code, status, reason = 422, "unprocessable", Reason.UNPROCESSABLE


class Unavailable(ApiError):
    code, status, reason = 503, "unavailable", Reason.MODEL_NOT_LOADED


class Busy(Unavailable):
    """The request could not be taken in time (no CV process, or no room for its body): come back in a moment."""

    status, reason = "busy", Reason.BUSY
