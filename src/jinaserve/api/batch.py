"""Batch job endpoints: the Jina batch API here, OpenAI's Files and Batch APIs in `openai_batch.py`.

`GET /v1/batches` is both Jina's list (a bare JSON array of BatchStatus) and OpenAI's (a cursor page of
Batch objects); the two cannot be told apart by path or body, so OpenAI's shape is sent to OpenAI clients
(the SDK's `X-Stainless-Lang` header, an `after` cursor, or `?format=openai`) and Jina's to everyone else.

The router's lifespan starts the job worker (resuming jobs left `processing` by a crash) and stops it before
the models are closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from starlette.responses import FileResponse, Response

from ..batch.manager import BatchManager
from ..batch.object_store import check_object_url, is_object_url
from ..errors import ConflictError, FieldError, InvalidInputError, ResourceNotFoundError, ValidationFailedError
from ..netguard import check_url
from ..store.jobs import FINAL_STATUSES, Job
from . import openai_batch
from .auth import check_api_key
from .protocols.batch import BatchEmbeddingRequest, jina_status, openai_list
from .protocols.batch import openai_batch as openai_batch_body
from .responses import JSONBytes, dumps


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    manager = BatchManager(app.state.settings, app.state.registry)
    app.state.batch_manager = manager
    await asyncio.to_thread(manager.start)
    try:
        yield
    finally:
        await asyncio.to_thread(manager.stop)


router = APIRouter(lifespan=lifespan)
router.include_router(openai_batch.router)


def manager_of(request: Request) -> BatchManager:
    return request.app.state.batch_manager


def get_job(request: Request, batch_id: str) -> Job:
    job = manager_of(request).store.get_job(batch_id)
    if job is None:
        raise ResourceNotFoundError(f"No batch job with id {batch_id!r}; list jobs with GET /v1/batches")
    return job


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post("/v1/batch/embeddings", dependencies=[Depends(check_api_key)], tags=["batch"],
             summary="Create a batch embedding job (Jina)")
async def create_batch(request: Request, body: BatchEmbeddingRequest) -> Response:
    settings = request.app.state.settings
    if (body.input is None) == (body.input_url is None):
        raise ValidationFailedError([FieldError("body -> input", "Give exactly one of input (inline lines) or "
                                                "input_url", "value_error", None)])
    if body.input is not None and not body.input:
        raise ValidationFailedError([FieldError("body -> input", "List should have at least 1 item", "too_short",
                                                [])])
    service = request.app.state.registry.get(body.model, "embedding")
    if service.kind != "embedding":  # refused now, not on every line of the job
        raise InvalidInputError(f"Model {service.id!r} is a reranker; a batch embedding job needs an embedding "
                                "model. To rerank in bulk, create an OpenAI batch (POST /v1/batches) of "
                                "/v1/rerank lines.")
    defaults = body.line_defaults()
    options = _options_of(defaults, service)
    service.family.check_embed_options(options)  # a bad task or dimensions fails now, not on every line
    allow = settings.batch_allow_private_urls
    for name, url in (("input_url", body.input_url), ("webhook_url", body.webhook_url)):
        if url is not None and name == "input_url" and is_object_url(url):
            check_object_url(url, what=name, allowed=settings.batch_allow_object_store)
        elif url is not None:
            await asyncio.to_thread(check_url, url, what=name, allow_private=allow)
    defaults["model"] = service.id
    job = await asyncio.to_thread(manager_of(request).create_jina_job, model=service.id, defaults=defaults,
                                  items=body.input, input_url=body.input_url, webhook_url=body.webhook_url,
                                  base_url=base_url(request))
    return JSONBytes(dumps(jina_status(job, base_url(request))))


def _options_of(defaults: dict, service):
    from ..batch.lines import validated
    from .protocols.jina import EmbeddingsRequest

    return validated(EmbeddingsRequest, {**defaults, "input": "x"}).to_options(service.spec.task_names)


@router.get("/v1/batch/{batch_id}", dependencies=[Depends(check_api_key)], tags=["batch"],
            summary="Status of a batch job (Jina)")
async def batch_status(request: Request, batch_id: str) -> Response:
    return JSONBytes(dumps(jina_status(get_job(request, batch_id), base_url(request))))


@router.delete("/v1/batch/{batch_id}", dependencies=[Depends(check_api_key)], tags=["batch"],
               summary="Cancel a batch job (Jina)")
async def cancel_batch(request: Request, batch_id: str) -> Response:
    get_job(request, batch_id)
    job = await asyncio.to_thread(manager_of(request).cancel, batch_id)
    return JSONBytes(dumps(jina_status(job, base_url(request))))  # type: ignore[arg-type]


def _job_file(request: Request, batch_id: str, which: str) -> Response:
    job = get_job(request, batch_id)
    if job.status not in FINAL_STATUSES:
        raise ConflictError(f"Batch job {batch_id!r} is {job.status}; its {which} file is ready when it has "
                            f"finished (poll GET /v1/batch/{batch_id})")
    file_id = job.output_file_id if which == "output" else job.error_file_id
    rec = manager_of(request).store.get_file(file_id) if file_id else None
    if rec is None or not rec.path.exists():
        return Response(b"", media_type="application/jsonl")  # nothing succeeded / nothing failed
    return FileResponse(rec.path, media_type="application/jsonl", filename=rec.filename)


@router.get("/v1/batch/{batch_id}/output", dependencies=[Depends(check_api_key)], tags=["batch"],
            summary="Output JSONL of a finished batch job (Jina)")
async def batch_output(request: Request, batch_id: str) -> Response:
    return _job_file(request, batch_id, "output")


@router.get("/v1/batch/{batch_id}/errors", dependencies=[Depends(check_api_key)], tags=["batch"],
            summary="Error JSONL of a finished batch job (Jina)")
async def batch_errors(request: Request, batch_id: str) -> Response:
    return _job_file(request, batch_id, "errors")


@router.get("/v1/batches", dependencies=[Depends(check_api_key)], tags=["batch"],
            summary="List batch jobs (Jina: a JSON array; OpenAI clients: a cursor page)")
async def list_batches(request: Request, limit: int = Query(default=20, ge=1, le=100), after: str | None = None,
                       format: str | None = Query(default=None, pattern="^(jina|openai)$")) -> Response:
    openai_client = format == "openai" or (format is None and (after is not None or
                                                               "x-stainless-lang" in request.headers))
    jobs = await asyncio.to_thread(manager_of(request).store.list_jobs, limit=limit + 1, after=after)
    page, has_more = jobs[:limit], len(jobs) > limit
    if openai_client:
        return JSONBytes(dumps(openai_list([openai_batch_body(j) for j in page], has_more)))
    return JSONBytes(dumps([jina_status(j, base_url(request)) for j in page]))
