"""What every protocol module shares: the model look-up, the request limits, the task look-up and the calls
into the model service. Everything goes through the same jobs (`jinaserve.jobs`) as the Jina API."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request

from ...config import Settings
from ...engine.service import ModelService
from ...errors import FieldError, InvalidInputError, ValidationFailedError
from ...jobs import EmbedInput, EmbedOptions, EmbedResult, RerankDocument, RerankJob, RerankOptions, RerankResult
from .failures import ProtocolError


async def json_body(request: Request) -> Any:
    """The request body as JSON, as FastAPI would parse it (errors become the same validation errors)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": type(exc).__name__}}]) from None


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def service_for(request: Request, name: str | None, kind: str) -> ModelService:
    """The served model a request names (None: the first one of `kind`), as the Jina API finds it."""
    service = request.app.state.registry.get(name, kind)
    request.state.model = service.id
    return service


def served(request: Request) -> list[ModelService]:
    return list(request.app.state.registry.services.values())


def non_empty(items: Sequence[Any], field: str) -> None:
    if not items:
        raise ValidationFailedError([FieldError(f"body -> {field}", "List should have at least 1 item", "too_short",
                                                [])])


def check_count(n: int, limit: int, field: str) -> None:
    if n > limit:
        raise ValidationFailedError([FieldError(f"body -> {field}", f"List should have at most {limit} items, "
                                                f"got {n}", "too_long", None)])


def text_inputs(texts: Sequence[str], request: Request, field: str) -> list[EmbedInput]:
    """Texts as embedding inputs, within the server's limits on count and length."""
    settings = settings_of(request)
    check_count(len(texts), settings.max_inputs_per_request, field)
    return [EmbedInput(text=check_length(t, settings.max_input_chars, f"{field} -> {i}"))
            for i, t in enumerate(texts)]


def check_length(text: str, max_chars: int, field: str) -> str:
    if len(text) > max_chars:
        raise ValidationFailedError([FieldError(f"body -> {field}", f"String longer than {max_chars} characters",
                                                "string_too_long", None)])
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"{field} is not valid Unicode: unpaired surrogate at character "
                                    f"{exc.start}") from None
    return text


def pick_task(task_names: Sequence[str], candidates: Sequence[str]) -> str | None:
    """The first candidate the model has: a task name (`retrieval.query`) or a suffix pattern (`*.query`: the
    first of the model's tasks, in its catalog order, that ends with `.query`). None: the model's default."""
    for c in candidates:
        if c.startswith("*"):
            hit = next((t for t in task_names if t.endswith(c[1:])), None)
            if hit is not None:
                return hit
        elif c in task_names:
            return c
    return None


async def embed(request: Request, service: ModelService, inputs: list[EmbedInput],
                options: EmbedOptions) -> EmbedResult:
    if not options.return_multivector and service.family.multi_vector_only:
        # these protocols carry one vector per input (a multi-vector model answers on /v1/embeddings)
        raise ProtocolError("capability", f"Model {service.id!r} returns several vectors per input (one per "
                            "token), which this protocol cannot carry; ask for them with a Jina request: POST "
                            "/v1/multi-vector, or /v1/embeddings without Voyage's output_dtype (TEI clients: "
                            "/embed_all)")
    result = await service.embed(inputs, options)
    request.state.inputs = len(inputs)
    request.state.tokens = result.total_tokens
    return result


def documents(items: Sequence[Any], request: Request, field: str = "documents") -> list[RerankDocument]:
    """Rerank documents given as strings (or already-built RerankDocuments), within the server's limits."""
    settings = settings_of(request)
    check_count(len(items), settings.max_documents_per_request, field)
    out = []
    for i, d in enumerate(items):
        if isinstance(d, RerankDocument):
            out.append(d)
        else:
            out.append(RerankDocument(text=check_length(d, settings.max_input_chars, f"{field} -> {i}"),
                                      original=d))
    return out


async def rerank(request: Request, service: ModelService, query: str, docs: list[RerankDocument],
                 options: RerankOptions) -> RerankResult:
    result = await service.rerank(RerankJob(service.id, query, docs, options))
    request.state.inputs = len(docs)
    request.state.tokens = result.total_tokens
    return result
