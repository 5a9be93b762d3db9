"""Coded, actionable errors shared by every package.

Each error has a stable code (``E1xx`` input, ``E2xx`` models, ``E3xx`` storage,
``E4xx`` moderation, ``E5xx`` recommender) so that logs, API responses and docs can
point at one place. ``status`` is the HTTP status the API answers with.
"""

from __future__ import annotations

from typing import Any


class ReelsiftError(Exception):
    code = "E000"
    status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InvalidInput(ReelsiftError):
    """The request is well-formed JSON but its content breaks a rule."""

    code = "E101"
    status = 422


class PayloadTooLarge(ReelsiftError):
    code = "E102"
    status = 413


class UnsupportedMediaType(ReelsiftError):
    code = "E103"
    status = 415


class NotFound(ReelsiftError):
    code = "E104"
    status = 404


class Conflict(ReelsiftError):
    code = "E105"
    status = 409


class Unauthorized(ReelsiftError):
    code = "E106"
    status = 401


class Forbidden(ReelsiftError):
    code = "E107"
    status = 403


class ContentNotAnalyzable(ReelsiftError):
    """The analyzers failed on this content (not a passing fault): the item is stored as
    ``failed`` with the reason; post it again, `reelsift retry-failed` or
    ``POST /v1/items/{id}/retry`` analyzes it again."""

    code = "E109"
    status = 422


class ModelNotAvailable(ReelsiftError):
    """A model could not be resolved from any configured source."""

    code = "E201"
    status = 503


class ModelLoadFailed(ReelsiftError):
    code = "E202"
    status = 503


class ServiceUnavailable(ReelsiftError):
    """A passing fault (a model service or the database did not answer in time, after
    bounded retries). Nothing is lost: the item stays retryable; the client retries after
    ``retry_after_s`` seconds (sent as ``Retry-After``)."""

    code = "E203"
    status = 503

    def __init__(self, message: str, *, retry_after_s: int = 2, **details: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class InvalidConfig(ReelsiftError):
    code = "E301"
    status = 500
