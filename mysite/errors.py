"""Errors that carry their HTTP meaning without importing Flask.

Vision and input code raise these; the web layer turns any of them into the
book's JSON error shape ``{"status": ..., "message": ...}``.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error the client caused (or a model that is not there), never a bug."""

    code: int = 400
    status: str = "bad request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"status": self.status, "message": self.message}


class BadRequest(ApiError):
    code, status = 400, "bad request"


class TooLarge(ApiError):
    code, status = 413, "too large"


class UnsupportedMedia(ApiError):
    code, status = 415, "unsupported media type"


class Unprocessable(ApiError):
    code, status = 422, "unprocessable"


class Unavailable(ApiError):
    code, status = 503, "unavailable"
