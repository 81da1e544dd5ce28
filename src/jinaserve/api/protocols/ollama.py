"""Ollama protocol: `/api/embed`, `/api/embeddings` (legacy), `/api/tags`, `/api/show`, `/api/ps`, `/api/version`.

Model names follow Ollama's `name:tag` form. A served model answers to its own name and to `name:latest`
(the model's default task); for a model with tasks, `name:<task>` (e.g. `jina-embeddings-v3:retrieval.query`)
selects the task, since Ollama requests carry no task field. `/api/tags` lists every such name.

Errors: `{"error": str}` with Ollama's statuses (400 bad request, 404 unknown model, 503 full queue).
Wire facts: `ollama/ollama` `api/types.go`, `server/routes.go`, `docs/api.md` and `ollama/ollama-python`
(docs/protocols.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ... import __version__
from ...engine.service import ModelService
from ...errors import ModelNotFoundError
from ...jobs import EmbedOptions
from ..auth import check_api_key
from ..responses import JSONBytes, dumps
from . import common
from .failures import Failure, ProtocolError, route_class

# The Ollama API level spoken here (its /api/version): the first release with every field implemented, the
# newest being `dimensions` on /api/embed ("New `dimensions` field added to embed requests", Ollama v0.11.11
# release notes, github.com/ollama/ollama/releases/tag/v0.11.11; ollama/ollama#12242).
OLLAMA_API_VERSION = "0.11.11"
DEFAULT_TAG = "latest"
_STARTED = datetime.fromtimestamp(time.time(), tz=UTC).isoformat()

_STATUS = {"model_not_found": 404, "auth": 401, "overloaded": 503, "unavailable": 503, "internal": 500,
           "not_found": 404}


def render(f: Failure) -> Response:
    return JSONBytes(dumps({"error": f.text}), status_code=_STATUS.get(f.kind, 400), headers=f.headers)


router = APIRouter(route_class=route_class(render), dependencies=[Depends(check_api_key)], tags=["ollama"],
                   include_in_schema=False)


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: Any = None  # str | [str]; checked by hand to answer Ollama's "invalid input type"
    truncate: bool | None = None
    dimensions: int | None = None
    keep_alive: float | str | None = None  # accepted: served models stay loaded
    options: dict[str, Any] | None = None  # accepted: Modelfile runtime options do not apply


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: str | None = None
    keep_alive: float | str | None = None
    options: dict[str, Any] | None = None


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = Field(default=None, validation_alias="model")
    name: str | None = None  # Ollama's deprecated spelling
    verbose: bool | None = None


def resolve(request: Request, name: str | None, *, embedding: bool = True) -> tuple[ModelService, str | None]:
    """The served model and task an Ollama model name stands for."""
    if not name:
        raise ProtocolError("invalid", "model is required")
    try:
        service, task = common.service_for(request, name, "embedding"), None
    except ModelNotFoundError:
        base, sep, tag = name.rpartition(":")
        try:
            service = common.service_for(request, base, "embedding") if sep and base else None
        except ModelNotFoundError:
            service = None
        if service is None or (tag != DEFAULT_TAG and tag not in service.spec.task_names):
            raise ProtocolError("model_not_found", f"model '{name}' not found", 404) from None
        task = None if tag == DEFAULT_TAG else tag
    if embedding and service.kind != "embedding":
        raise ProtocolError("capability", f"model '{name}' does not support embeddings")
    return service, task


def _texts(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return raw
    raise ProtocolError("invalid", "invalid input type")


@router.post("/api/embed")
async def embed(request: Request, body: EmbedRequest) -> Response:
    """Ollama embed: one normalised vector per input (name:task picks a task)."""
    started = time.perf_counter_ns()
    service, task = resolve(request, body.model)
    texts = _texts(body.input)
    if not texts:
        return JSONBytes(dumps({"model": body.model, "embeddings": []}))
    dims = body.dimensions
    if dims is not None and (dims <= 0 or (service.spec.dims is not None and dims >= service.spec.dims)):
        dims = None  # Ollama cuts only for 0 < dimensions < the model's width
    options = EmbedOptions(task=task, dimensions=dims, truncate=True if body.truncate is None else body.truncate)
    result = await common.embed(request, service, common.text_inputs(texts, request, "input"), options)
    return JSONBytes(dumps({"model": body.model, "embeddings": result.vectors,
                            "total_duration": time.perf_counter_ns() - started,
                            "prompt_eval_count": result.total_tokens}))


@router.post("/api/embeddings")
async def embeddings(request: Request, body: EmbeddingsRequest) -> Response:
    """Legacy: one vector, not normalised (as Ollama's own)."""
    service, task = resolve(request, body.model)
    if not body.prompt:
        return JSONBytes(dumps({"embedding": []}))
    inputs = common.text_inputs([body.prompt], request, "prompt")
    result = await common.embed(request, service, inputs, EmbedOptions(task=task, normalized=False, truncate=True))
    return JSONBytes(dumps({"embedding": result.vectors[0]}))


def _details(service: ModelService) -> dict[str, Any]:
    spec = service.spec
    out: dict[str, Any] = {"parent_model": "", "family": spec.family, "families": [spec.family]}
    if spec.params:
        out["parameter_size"] = spec.params
    return out


def _names(service: ModelService) -> list[str]:
    return [f"{service.id}:{DEFAULT_TAG}", *(f"{service.id}:{t}" for t in service.spec.task_names)]


def _embedders(request: Request) -> list[ModelService]:
    return [s for s in common.served(request) if s.kind == "embedding"]


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> Response:
    """Ollama: the served models, as name:latest and name:task."""
    models = [{"name": name, "model": name, "modified_at": _STARTED, "details": _details(s)}
              for s in _embedders(request) for name in _names(s)]
    return JSONBytes(dumps({"models": models}))


@router.get("/api/ps")
async def ps(request: Request) -> Response:
    """Ollama: the loaded models."""
    models = [{"name": f"{s.id}:{DEFAULT_TAG}", "model": f"{s.id}:{DEFAULT_TAG}", "details": _details(s),
               "context_length": s.spec.max_tokens} for s in _embedders(request)]
    return JSONBytes(dumps({"models": models}))


@router.post("/api/show")
async def show(request: Request, body: ShowRequest) -> Response:
    """Ollama: one model's details."""
    service, task = resolve(request, body.model or body.name, embedding=False)
    spec = service.spec
    arch = spec.family
    info: dict[str, Any] = {"general.architecture": arch, f"{arch}.context_length": spec.max_tokens,
                            "jinaserve.tasks": spec.task_names, "jinaserve.task": task or spec.default_task}
    if spec.dims is not None:
        info[f"{arch}.embedding_length"] = spec.dims
    return JSONBytes(dumps({"license": spec.licence, "details": _details(service), "model_info": info,
                            "capabilities": ["embedding"] if service.kind == "embedding" else [],
                            "modified_at": _STARTED}))


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> Response:
    """Ollama: the API version spoken here."""
    return JSONBytes(dumps({"version": OLLAMA_API_VERSION, "jinaserve": __version__}))
