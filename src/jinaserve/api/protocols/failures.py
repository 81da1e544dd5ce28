"""Errors in each protocol's own shape.

Below the API, failures are typed exceptions (`jinaserve.errors`) and the Jina/OpenAI paths turn them into the
hosted Jina body in `api/errors.py`. A protocol module (TEI, Cohere, Ollama, Voyage) instead gives a `render`
function that turns a neutral `Failure` into its reference server's body and status; its routes use
`route_class(render)`, and the shared paths (`api/dispatch.py`) call `answer(render, ...)` once they know the
protocol. Either way every exception (validation, typed errors, HTTP errors, the unexpected) is caught in the
one function `failure_from`, so a protocol never answers in another protocol's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ...errors import (
    AuthError,
    FieldError,
    InvalidInputError,
    JinaServeError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    ShuttingDownError,
    TokenLimitExceededError,
    ValidationFailedError,
)
from ..errors import validation_errors

log = logging.getLogger("jinaserve.api")
M = TypeVar("M", bound=BaseModel)

Kind = Literal["validation", "json", "empty", "invalid", "token_limit", "model_not_found", "capability", "auth",
               "too_large", "overloaded", "unavailable", "not_found", "internal"]


@dataclass
class Failure:
    """What went wrong, independent of any wire format. `status` is the Jina API's status for it."""

    kind: Kind
    message: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The message, safe to encode (a lone surrogate a client sent, echoed in a message, becomes '?')."""
        return self.message.encode("utf-8", "replace").decode("utf-8")


class ProtocolError(JinaServeError):
    """A failure a protocol module raises itself, with its kind (e.g. TEI's `Empty`, a model that lacks a
    capability the endpoint needs)."""

    def __init__(self, kind: Kind, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


Renderer = Callable[[Failure], Response]


def failure_from(exc: Exception) -> Failure:
    if isinstance(exc, ProtocolError):
        return Failure(exc.kind, exc.message, exc.status, exc.headers)
    if isinstance(exc, RequestValidationError):
        errs = validation_errors(exc)
        if any(e.type == "json_invalid" for e in errs):
            return Failure("json", "Request body is not valid JSON", 400)
        return _validation(ValidationFailedError(errs))
    if isinstance(exc, ValidationFailedError):
        return _validation(exc)
    if isinstance(exc, JinaServeError):
        return Failure(_KINDS.get(type(exc), _kind_of_status(exc.status)), exc.message, exc.status, exc.headers)
    if isinstance(exc, StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return Failure(_kind_of_status(exc.status_code), message, exc.status_code,
                       dict(getattr(exc, "headers", None) or {}))
    log.error("unhandled error", exc_info=exc)
    return Failure("internal", "Internal server error; the request id is in the server log", 500)


def _validation(exc: ValidationFailedError) -> Failure:
    return Failure("validation", exc.message, exc.status, exc.headers, list(exc.errors))


_KINDS: dict[type, Kind] = {
    AuthError: "auth", ModelNotFoundError: "model_not_found", ModelNotReadyError: "unavailable",
    ShuttingDownError: "unavailable", OverloadedError: "overloaded", TokenLimitExceededError: "token_limit",
    InvalidInputError: "invalid", PayloadTooLargeError: "too_large",
}


def _kind_of_status(status: int) -> Kind:
    return {401: "auth", 404: "not_found", 413: "too_large", 429: "overloaded",
            503: "unavailable"}.get(status, "invalid" if status < 500 else "internal")


async def answer(render: Renderer, call: Callable[[], Awaitable[Response]]) -> Response:
    """Run a handler; any failure is answered in `render`'s shape."""
    try:
        return await call()
    except Exception as exc:
        return render(failure_from(exc))


def route_class(render: Renderer) -> type[APIRoute]:
    """An APIRoute whose every failure (body validation, auth, typed errors, the unexpected) is answered in
    `render`'s shape instead of the Jina one."""

    class ProtocolRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                return await answer(render, lambda: handler(request))

            return handle

    return ProtocolRoute


def validate(model: type[M], raw: Any) -> M:
    """Validate an already-parsed JSON body; errors are reported as FastAPI reports body errors."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
