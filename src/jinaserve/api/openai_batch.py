"""OpenAI's Files and Batch APIs for `/v1/embeddings` and `/v1/rerank` lines (the `openai` SDK works with
`base_url` pointed here): `POST/GET /v1/files`, `GET/DELETE /v1/files/{id}`, `GET /v1/files/{id}/content`,
`POST /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel` (`GET /v1/batches` is shared with
the Jina list, in `batch.py`)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from starlette.responses import FileResponse, Response

from ..errors import FieldError, InvalidInputError, ResourceNotFoundError, ValidationFailedError
from .auth import check_api_key
from .protocols.batch import (
    OPENAI_ENDPOINTS,
    CreateBatchRequest,
    openai_batch,
    openai_file,
    openai_list,
    window_seconds,
)
from .responses import JSONBytes, dumps

router = APIRouter()


def _manager(request: Request):
    return request.app.state.batch_manager


def _file(request: Request, file_id: str):
    rec = _manager(request).store.get_file(file_id)
    if rec is None or not rec.path.exists():
        raise ResourceNotFoundError(f"No file with id {file_id!r}")
    return rec


@router.post("/v1/files", dependencies=[Depends(check_api_key)], tags=["batch"],
             summary="Upload a batch input file (OpenAI, purpose 'batch')")
async def upload_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...),
                      expires_after_seconds: int | None = Form(default=None, alias="expires_after[seconds]")
                      ) -> Response:
    if purpose != "batch":
        raise ValidationFailedError([FieldError("body -> purpose", f"purpose {purpose!r} is not supported here; "
                                                "only 'batch' files (batch job inputs) are stored", "value_error",
                                                purpose)])
    store = _manager(request).store

    def save() -> dict:
        with tempfile.NamedTemporaryFile(dir=store.root, prefix="upload-", delete=False) as tmp:
            shutil.copyfileobj(file.file, tmp, 1024 * 1024)
        expires = time.time() + expires_after_seconds if expires_after_seconds else None
        return openai_file(store.add_file(file.filename or "upload.jsonl", purpose, Path(tmp.name),
                                          expires_at=expires))

    return JSONBytes(dumps(await asyncio.to_thread(save)))


@router.get("/v1/files", dependencies=[Depends(check_api_key)], tags=["batch"], summary="List files (OpenAI)")
async def list_files(request: Request, purpose: str | None = None,
                     limit: int = Query(default=10000, ge=1, le=10000)) -> Response:
    recs = _manager(request).store.list_files(purpose=purpose, limit=limit)
    return JSONBytes(dumps(openai_list([openai_file(r) for r in recs], False)))


@router.get("/v1/files/{file_id}", dependencies=[Depends(check_api_key)], tags=["batch"],
            summary="A file's metadata (OpenAI)")
async def get_file(request: Request, file_id: str) -> Response:
    return JSONBytes(dumps(openai_file(_file(request, file_id))))


@router.get("/v1/files/{file_id}/content", dependencies=[Depends(check_api_key)], tags=["batch"],
            summary="A file's content (OpenAI)")
async def file_content(request: Request, file_id: str) -> Response:
    rec = _file(request, file_id)
    return FileResponse(rec.path, media_type="application/jsonl", filename=rec.filename)


@router.delete("/v1/files/{file_id}", dependencies=[Depends(check_api_key)], tags=["batch"],
               summary="Delete a file (OpenAI)")
async def delete_file(request: Request, file_id: str) -> Response:
    _file(request, file_id)
    await asyncio.to_thread(_manager(request).store.delete_file, file_id)
    return JSONBytes(dumps({"id": file_id, "object": "file", "deleted": True}))


@router.post("/v1/batches", dependencies=[Depends(check_api_key)], tags=["batch"],
             summary="Create a batch from an uploaded file (OpenAI)")
async def create_batch(request: Request, body: CreateBatchRequest) -> Response:
    if body.endpoint not in OPENAI_ENDPOINTS:
        raise InvalidInputError(f"endpoint {body.endpoint!r} is not supported here; use one of "
                                f"{', '.join(OPENAI_ENDPOINTS)}")
    window = window_seconds(body.completion_window)
    if window is None:
        raise InvalidInputError(f"completion_window {body.completion_window!r} must look like '24h' or '90m'")
    window = min(window, request.app.state.settings.batch_completion_window_s)  # the operator's cap
    job = await asyncio.to_thread(_manager(request).create_openai_job, input_file_id=body.input_file_id,
                                  endpoint=body.endpoint, window_s=window, window=body.completion_window,
                                  metadata=body.metadata)
    return JSONBytes(dumps(openai_batch(job)))


def _batch(request: Request, batch_id: str):
    job = _manager(request).store.get_job(batch_id)
    if job is None or job.api == "cli":
        raise ResourceNotFoundError(f"No batch with id {batch_id!r}")
    return job


@router.get("/v1/batches/{batch_id}", dependencies=[Depends(check_api_key)], tags=["batch"],
            summary="A batch (OpenAI)")
async def retrieve_batch(request: Request, batch_id: str) -> Response:
    return JSONBytes(dumps(openai_batch(_batch(request, batch_id))))


@router.post("/v1/batches/{batch_id}/cancel", dependencies=[Depends(check_api_key)], tags=["batch"],
             summary="Cancel a batch (OpenAI)")
async def cancel_batch(request: Request, batch_id: str) -> Response:
    _batch(request, batch_id)
    job = await asyncio.to_thread(_manager(request).cancel, batch_id)
    return JSONBytes(dumps(openai_batch(job)))
