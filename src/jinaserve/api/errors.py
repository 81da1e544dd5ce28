"""The one place errors become HTTP responses.

Body (every error, every status): {"detail": str, "code": str, "request_id": str,
"error": {"message", "type", "code"}} plus "errors": [{field, message, type, input}] on 422.
`detail` is always a string (Jina clients, Elasticsearch and Weaviate read it); `error.message` is
what the OpenAI SDK shows.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..errors import FieldError, JinaServeError, ValidationFailedError
from .context import request_id_var

log = logging.getLogger("jinaserve.api")

_STATUS_CODES = {400: "INPUT_INVALID", 401: "AUTH_INVALID_API_KEY", 403: "AUTHZ_FORBIDDEN",
                 404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "INPUT_TOO_LARGE",
                 415: "UNSUPPORTED_MEDIA_TYPE", 422: "INPUT_VALIDATION_FAILED",
                 429: "RATE_CONCURRENCY_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE"}
_STATUS_TYPES = {401: "authentication_error", 429: "rate_limit_error", 500: "server_error",
                 503: "server_error"}


def error_body(status: int, message: str, *, code: str | None = None, error_type: str | None = None,
               errors: list[FieldError] | None = None) -> dict[str, Any]:
    code = code or _STATUS_CODES.get(status, "INPUT_INVALID" if status < 500 else "INTERNAL_ERROR")
    error_type = error_type or _STATUS_TYPES.get(status, "invalid_request_error")
    body: dict[str, Any] = {"detail": message, "code": code, "request_id": request_id_var.get(),
                            "error": {"message": message, "type": error_type, "code": code}}
    if errors is not None:
        body["errors"] = [{"field": e.field, "message": e.message, "type": e.type, "input": e.input}
                          for e in errors]
    return body


def error_response(status: int, message: str, *, code: str | None = None, error_type: str | None = None,
                   errors: list[FieldError] | None = None, headers: dict[str, str] | None = None) -> Response:
    body = error_body(status, message, code=code, error_type=error_type, errors=errors)
    return Response(dumps_error(body), status_code=status, media_type="application/json", headers=headers)


def dumps_error(body: Any, option: int = 0) -> bytes:
    """orjson, or — for what orjson refuses (integers beyond 64 bits, lone surrogates, echoed from the
    request in validation errors) — the same body with those values made safe. Never raises. Batch jobs
    write their output lines with it too (`option`: orjson options, e.g. numpy arrays, a newline)."""
    try:
        return orjson.dumps(body, default=str, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(_json_safe(body), default=str, option=option)


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:  # lone surrogates: shown as their escape, \ud800
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {_json_safe(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "__array__") and hasattr(value, "dtype"):  # numpy vectors: orjson writes them (option)
        return value
    return _json_safe(str(value))


def exception_body(exc: JinaServeError) -> dict[str, Any]:
    """The JSON body `from_exception` sends (batch jobs write it into their error files)."""
    errors = exc.errors if isinstance(exc, ValidationFailedError) else None
    return error_body(exc.status, exc.message, code=exc.code, error_type=exc.error_type, errors=errors)


def from_exception(exc: JinaServeError) -> Response:
    errors = exc.errors if isinstance(exc, ValidationFailedError) else None
    return error_response(exc.status, exc.message, code=exc.code, error_type=exc.error_type, errors=errors,
                          headers=exc.headers)


def _loc(loc: tuple[Any, ...]) -> str:
    return " -> ".join(str(p) for p in loc)


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    out = []
    for e in exc.errors():
        inp = e.get("input")
        if isinstance(inp, str | int | float | bool) or inp is None:
            safe = inp if not isinstance(inp, str) or len(inp) <= 200 else inp[:200] + "..."
        else:
            safe = None
        out.append(FieldError(_loc(tuple(e.get("loc", ()))), str(e.get("msg", "invalid")),
                              str(e.get("type", "value_error")), safe))
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(JinaServeError)
    async def _jinaserve_error(request: Request, exc: JinaServeError) -> Response:
        return from_exception(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errs = validation_errors(exc)
        if any(e.type == "json_invalid" for e in errs):
            return error_response(400, "Request body is not valid JSON", code="INPUT_INVALID_JSON")
        return from_exception(ValidationFailedError(errs))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"Not found: {request.method} {request.url.path}"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "Internal server error; the request id is in the server log")
