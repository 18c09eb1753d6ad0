"""The one error channel: typed errors with stable string codes. Knows nothing of HTTP.

``api/errors.py`` maps each class to an HTTP status and the OpenAI error envelope.
"""

from __future__ import annotations


class AfinarError(Exception):
    """Base of every error the platform raises on purpose."""

    type: str = "invalid_request_error"
    default_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code


class InvalidRequest(AfinarError):
    """The request itself is wrong (maps to 400)."""


class Unprocessable(InvalidRequest):
    """Well-formed, but it contradicts an earlier request (maps to 422), e.g. a reused Idempotency-Key."""


class AuthenticationFailed(AfinarError):
    default_code = "invalid_api_key"


class PermissionDenied(AfinarError):
    pass


class NotFound(AfinarError):
    pass


class Conflict(AfinarError):
    pass


class RateLimited(AfinarError):
    type = "requests"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class QuotaExceeded(AfinarError):
    type = "insufficient_quota"
    default_code = "insufficient_quota"


class ServerError(AfinarError):
    type = "server_error"


class LeaseLost(AfinarError):
    """A worker tried to write for a job whose lease it no longer holds."""

    type = "server_error"
    default_code = "lease_lost"


class DataError(AfinarError):
    """A problem with the *contents* of a training file; fails the job, not the request."""

    default_code = "invalid_training_file"
