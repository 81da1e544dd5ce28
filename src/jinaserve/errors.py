"""Typed errors raised anywhere below the HTTP layer; `api/errors.py` maps them to responses.

Each error carries the HTTP status, the hosted API's error code and a human message. Nothing here
knows about HTTP frameworks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldError:
    field: str
    message: str
    type: str = "value_error"
    input: Any = None


class JinaServeError(Exception):
    """Base class: a user-facing failure with a status, a code and a message."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    error_type: str = "server_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class ModelNotFoundError(JinaServeError):
    status = 400
    code = "INPUT_MODEL_NOT_FOUND"
    error_type = "invalid_request_error"


class ResourceNotFoundError(JinaServeError):
    """404: a path that names something that does not exist or is not the caller's: GET /v1/models/{unknown},
    a trained classifier, a batch job, a file."""

    status = 404
    code = "RESOURCE_NOT_FOUND"
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ModelNotReadyError(JinaServeError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    error_type = "server_error"


class ModelLoadError(JinaServeError):
    """A named model could not be loaded (missing weights, unknown layout, no network)."""

    status = 503
    code = "MODEL_LOAD_FAILED"
    error_type = "server_error"


class InvalidInputError(JinaServeError):
    status = 400
    code = "INPUT_INVALID"
    error_type = "invalid_request_error"


class TokenLimitExceededError(InvalidInputError):
    code = "INPUT_TOKEN_LIMIT_EXCEEDED"


class PayloadTooLargeError(JinaServeError):
    status = 413
    code = "INPUT_TOO_LARGE"
    error_type = "invalid_request_error"


class ValidationFailedError(JinaServeError):
    """422 with per-field errors, the hosted API's validation shape."""

    status = 422
    code = "INPUT_VALIDATION_FAILED"
    error_type = "invalid_request_error"

    def __init__(self, errors: list[FieldError]) -> None:
        parts = "; ".join(f"{e.field}: {e.message}" for e in errors)
        super().__init__(f"Validation errors in {len(errors)} field{'s' if len(errors) != 1 else ''}. "
                         f"Field errors: {parts}")
        self.errors = errors


class LabelLimitError(ValidationFailedError):
    """Too many labels or classes: a 422 validation error under the hosted API's label-limit code."""

    code = "INPUT_LABEL_LIMIT_EXCEEDED"


class InvalidLabelsError(InvalidInputError):
    """Training labels that cannot make a classifier (e.g. a new classifier with only one label)."""

    code = "INPUT_INVALID_LABELS"


class ConflictError(JinaServeError):
    """409: the resource was changed meanwhile, or is not in a state that allows the request (e.g. output of
    a running job); the client may retry."""

    status = 409
    code = "CONFLICT_RESOURCE_BUSY"
    error_type = "invalid_request_error"


class ResourceLimitError(JinaServeError):
    """A configured cap on stored resources (e.g. `max_classifiers`) is reached."""

    status = 403
    code = "AUTHZ_RESOURCE_LIMIT_EXCEEDED"
    error_type = "invalid_request_error"


class AuthError(JinaServeError):
    status = 401
    code = "AUTH_INVALID_API_KEY"
    error_type = "authentication_error"


class OverloadedError(JinaServeError):
    status = 429
    code = "RATE_CONCURRENCY_LIMIT_EXCEEDED"
    error_type = "rate_limit_error"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class ShuttingDownError(JinaServeError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    error_type = "server_error"

    def __init__(self, message: str = "Server is shutting down") -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class InferenceError(JinaServeError):
    status = 500
    code = "INTERNAL_ERROR"
    error_type = "server_error"


@dataclass
class ErrorBody:
    """What a client sees; built by the API layer from a JinaServeError."""

    detail: str
    code: str
    type: str
    request_id: str | None = None
    errors: list[FieldError] = field(default_factory=list)
