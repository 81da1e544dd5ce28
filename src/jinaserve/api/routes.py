"""HTTP routes: translate requests into jobs, call the model service, shape the response."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from .. import metrics
from ..engine.registry import ModelRegistry, public_name
from ..errors import ModelNotFoundError, ResourceNotFoundError
from ..jobs import RerankJob
from . import dispatch
from .auth import check_api_key
from .protocols.jina import EmbeddingsRequest, RerankRequest, parse_inputs
from .protocols.openai import model_card
from .responses import JSONBytes, dumps, embeddings_body, rerank_body

router = APIRouter()
_STARTED = int(time.time())


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


@router.post("/v1/embeddings", dependencies=[Depends(check_api_key)], tags=["embeddings"],
             summary="Create embeddings (Jina and OpenAI compatible; Voyage bodies too)",
             openapi_extra=dispatch.documented(EmbeddingsRequest))
@router.post("/embeddings", dependencies=[Depends(check_api_key)], include_in_schema=False)
async def create_embeddings(request: Request) -> Response:
    return await dispatch.embeddings(request, jina=_jina_embeddings)


async def _jina_embeddings(request: Request, body: EmbeddingsRequest) -> Response:
    return await _embed(request, body, multivector=False)


@router.post("/v1/multi-vector", dependencies=[Depends(check_api_key)], tags=["embeddings"],
             summary="Multi-vector embeddings (legacy alias: /v1/embeddings with return_multivector=true)")
@router.post("/multi-vector", dependencies=[Depends(check_api_key)], include_in_schema=False)
async def create_multi_vector(request: Request, body: EmbeddingsRequest) -> Response:
    if body.input_type is None and body.task is None:
        body.input_type = "document"  # the legacy endpoint's default
    return await _embed(request, body, multivector=True)


async def _embed(request: Request, body: EmbeddingsRequest, *, multivector: bool) -> Response:
    settings = request.app.state.settings
    service = _registry(request).get(body.model, "embedding")
    request.state.model = service.id
    inputs = parse_inputs(body.input, max_inputs=settings.max_inputs_per_request,
                          max_chars=settings.max_input_chars, allow_token_ids=settings.allow_token_ids)
    options = body.to_options(service.spec.task_names)
    if multivector:
        options.return_multivector = True
    result = await service.embed(inputs, options)
    request.state.inputs = len(inputs)
    request.state.tokens = result.total_tokens
    return JSONBytes(dumps(embeddings_body(service.id, result, options.embedding_type)))


@router.post("/v1/rerank", dependencies=[Depends(check_api_key)], tags=["rerank"],
             summary="Rerank documents by relevance to a query (Jina compatible; TEI, Voyage and Cohere v1 "
             "bodies too)", openapi_extra=dispatch.documented(RerankRequest))
@router.post("/rerank", dependencies=[Depends(check_api_key)], include_in_schema=False)
async def rerank(request: Request) -> Response:
    return await dispatch.rerank(request, jina=_jina_rerank)


async def _jina_rerank(request: Request, body: RerankRequest) -> Response:
    settings = request.app.state.settings
    service = _registry(request).get(body.model, "rerank")
    request.state.model = service.id
    docs = body.checked_documents(settings.max_documents_per_request, settings.max_input_chars)
    job = RerankJob(service.id, body.query_text(), docs, body.to_options())
    result = await service.rerank(job)
    request.state.inputs = len(docs)
    request.state.tokens = result.total_tokens
    return JSONBytes(dumps(rerank_body(service.id, docs, result, top_n=job.options.top_n,
                                       return_documents=job.options.return_documents,
                                       return_embeddings=job.options.return_embeddings)))


def _card(service) -> dict:
    spec = service.spec
    return model_card(service.id, kind=spec.kind, created=_STARTED, extra={
        "tasks": spec.task_names, "default_task": spec.default_task, "dimensions": spec.dims,
        "max_tokens": spec.max_tokens, "licence": spec.licence, "family": spec.family})


@router.get("/v1/models", dependencies=[Depends(check_api_key)], tags=["models"])
async def list_models(request: Request) -> Response:
    """The served models, in OpenAI's list shape (plus kind, tasks, dimensions, max tokens, licence)."""
    data = [_card(s) for s in _registry(request).services.values()]
    return JSONBytes(dumps({"object": "list", "data": data}))


@router.get("/v1/models/{model_id:path}", dependencies=[Depends(check_api_key)], tags=["models"])
async def get_model(request: Request, model_id: str) -> Response:
    """One served model, by served name, catalog id, repo id or alias."""
    try:
        service = _registry(request).get(model_id, "embedding")
    except ModelNotFoundError as exc:  # a missing resource: 404, as OpenAI answers (the SDK's NotFoundError)
        raise ResourceNotFoundError(exc.message, code="model_not_found") from None
    return JSONBytes(dumps(_card(service)))


@router.get("/health", tags=["health"])
@router.get("/healthz", tags=["health"])
@router.get("/live", include_in_schema=False)
async def health() -> Response:
    """Liveness: `{"status": "ok"}` as soon as the process answers."""
    return JSONBytes(dumps({"status": "ok"}))


@router.get("/readyz", tags=["health"])
@router.get("/ready", include_in_schema=False)
async def ready(request: Request) -> Response:
    """Readiness: 200 when every model is loaded, else 503 naming those that are not."""
    registry = _registry(request)
    statuses = registry.status()
    # served names and short reasons only: /readyz answers without a key, so no local paths or tracebacks
    models = {s.served_id or public_name(s.name): {"state": s.state, **({"error": s.reason} if s.reason else {})}
              for s in statuses}
    not_ready = [name for name, m in models.items() if m["state"] != "ready"]
    if statuses and not not_ready and not request.app.state.shutting_down:
        return JSONBytes(dumps({"status": "ready", "models": models}))
    detail = ("shutting down" if request.app.state.shutting_down
              else f"models not ready: {', '.join(not_ready) or 'none configured'}")
    body = {"status": "not ready", "detail": detail, "models": models}
    return JSONBytes(dumps(body), status_code=503)


@router.get("/metrics", tags=["health"])
async def prometheus_metrics() -> Response:
    """Prometheus metrics (text format)."""
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
