"""Batch job wire formats: the Jina batch API (`/v1/batch/embeddings`, BatchStatus) and OpenAI's Batch and
Files APIs (Batch, FileObject, JSONL request/response lines). Facts and sources: docs/batch.md.

Only this module knows these spellings; `jinaserve.store.jobs.Job` is the one internal record behind both.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ...store.jobs import CANCELLED, COMPLETED, EXPIRED, FAILED, PENDING, PROCESSING, FileRecord, Job
from .jina import EmbeddingTypeName

INLINE_MAX_ITEMS = 10_000  # hosted: inline input up to 10k items
OPENAI_ENDPOINTS = ("/v1/embeddings", "/v1/rerank")


class BatchEmbeddingRequest(BaseModel):
    """`POST /v1/batch/embeddings` (hosted `BatchEmbeddingRequest`, plus this server's output options)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str = Field(description="A served embedding model (any, not only v5).")
    input: list[Any] | None = Field(
        default=None, max_length=INLINE_MAX_ITEMS,
        description="Inline lines: {'custom_id', 'body': {'input'}} objects as on the hosted API, or plain "
        "inputs (str, {'text'}, {'image'}) whose custom_id is their index. Up to 10,000.")
    input_url: str | None = Field(default=None, description="http(s) URL of a JSONL or plain-text file (s3:// or "
                                   "gs:// where the server allows object storage).")
    webhook_url: str | None = Field(default=None, description="POSTed the job's status when it finishes.")
    task: str | None = Field(default=None, validation_alias=AliasChoices("task", "task_type"))
    dimensions: int | None = Field(default=None, gt=0)
    normalized: bool | None = None
    truncate: bool | None = Field(default=None, validation_alias=AliasChoices("truncate", "truncation"))
    embedding_type: EmbeddingTypeName | None = Field(
        default=None, validation_alias=AliasChoices("embedding_type", "encoding_format", "encoding_type"))

    def line_defaults(self) -> dict[str, Any]:
        """Options every line's request body starts from (a line's own body fields win)."""
        out: dict[str, Any] = {"model": self.model}
        for name in ("task", "dimensions", "normalized", "truncate", "embedding_type"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


class CreateBatchRequest(BaseModel):
    """`POST /v1/batches` (OpenAI)."""

    model_config = ConfigDict(extra="ignore")

    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


_WINDOW = re.compile(r"^\s*(\d+)\s*([hm])\s*$")


def window_seconds(text: str) -> float | None:
    """'24h' → 86400; '90m' → 5400; None if it is not of that form."""
    m = _WINDOW.match(text)
    if not m:
        return None
    n = int(m.group(1))
    return float(n * (3600 if m.group(2) == "h" else 60))


# --------------------------------------------------------------------------- Jina BatchStatus
def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def jina_status(job: Job, base_url: str) -> dict[str, Any]:
    """The hosted `BatchStatus` shape: {batch_id, status, model, created_at, completed_at, expires_at,
    output_url, error_file_url, error, stats: {total, completed, failed, total_tokens}}."""
    base = base_url.rstrip("/")
    finished = job.status in (COMPLETED, FAILED, EXPIRED, CANCELLED)
    return {
        "batch_id": job.id,
        "status": job.status,
        "model": job.model or "",
        "created_at": _iso(job.created_at),
        "completed_at": _iso(job.finished_at) if finished else None,
        "expires_at": _iso(job.expires_at),
        "output_url": f"{base}/v1/batch/{job.id}/output" if job.output_file_id else None,
        "error_file_url": f"{base}/v1/batch/{job.id}/errors" if job.error_file_id else None,
        "error": job.error,
        "stats": {"total": job.total or 0, "completed": job.completed, "failed": job.failed,
                  "total_tokens": job.total_tokens},
    }


# --------------------------------------------------------------------------- OpenAI Batch / FileObject
_OPENAI_STATUS = {PENDING: "validating", PROCESSING: "in_progress", COMPLETED: "completed", FAILED: "failed",
                  EXPIRED: "expired", CANCELLED: "cancelled"}


def _ts(value: float | None) -> int | None:
    return int(value) if value is not None else None


def openai_batch(job: Job) -> dict[str, Any]:
    """OpenAI's Batch object (timestamps in Unix seconds)."""
    status = _OPENAI_STATUS.get(job.status, job.status)
    if job.status == PROCESSING and job.cancel_requested_at is not None:
        status = "cancelling"
    errors = None
    if job.errors:
        errors = {"object": "list", "data": job.errors}
    elif job.status == FAILED and job.error:
        errors = {"object": "list", "data": [{"code": "failed", "message": job.error, "param": None,
                                              "line": None}]}
    finished_at = _ts(job.finished_at)
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "errors": errors,
        "input_file_id": job.input_file_id or "",
        "completion_window": job.params.get("completion_window", "24h"),
        "status": status,
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": int(job.created_at),
        "in_progress_at": _ts(job.started_at),
        "expires_at": _ts(job.expires_at),
        "finalizing_at": finished_at if job.status == COMPLETED else None,
        "completed_at": finished_at if job.status == COMPLETED else None,
        "failed_at": finished_at if job.status == FAILED else None,
        "expired_at": finished_at if job.status == EXPIRED else None,
        "cancelling_at": _ts(job.cancel_requested_at),
        "cancelled_at": finished_at if job.status == CANCELLED else None,
        "request_counts": {"total": job.total or 0, "completed": job.completed, "failed": job.failed},
        "metadata": job.params.get("metadata"),
        "model": job.model,
        "usage": {"input_tokens": job.total_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": job.total_tokens},
    }


def openai_file(rec: FileRecord) -> dict[str, Any]:
    return {"id": rec.id, "object": "file", "bytes": rec.bytes, "created_at": int(rec.created_at),
            "filename": rec.filename, "purpose": rec.purpose, "status": "processed",
            "expires_at": _ts(rec.expires_at), "status_details": None}


def openai_list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}


# --------------------------------------------------------------------------- JSONL result lines
def output_line(job_id: str, line_no: int, custom_id: str, status: int, body: Any) -> dict[str, Any]:
    """One line of an output or error file, OpenAI's shape (also used for Jina jobs):
    {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}."""
    ref = f"{job_id.removeprefix('batch_')}-{line_no}"
    return {"id": f"batch_req_{ref}", "custom_id": custom_id,
            "response": {"status_code": status, "request_id": f"req_{ref}", "body": body}, "error": None}


def failed_line(job_id: str, line_no: int, custom_id: str, code: str, message: str) -> dict[str, Any]:
    """A line that did not run (expired, cancelled): `response` null, `error` {code, message}."""
    ref = f"{job_id.removeprefix('batch_')}-{line_no}"
    return {"id": f"batch_req_{ref}", "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}
