"""Voyage AI protocol. Voyage has no path of its own: its `/v1/embeddings` and `/v1/rerank` bodies are told
apart from Jina/OpenAI ones by their fields in `api/dispatch.py` (the `voyageai` SDK always sends
`output_dtype` to embeddings, `top_k` and `truncation` to rerank).

Errors: `{"detail": str}` (the SDK reads `detail`), 400 for an invalid request as Voyage answers.
Wire facts: `voyage-ai/voyageai-python` (`api_resources/`, `util.py`) and docs.voyageai.com (docs/protocols.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from ...jobs import EmbedOptions, RerankOptions
from ...outputs import quantize, to_base64
from ..responses import JSONBytes, dumps, ranked
from . import common
from .failures import Failure, validate

# `input_type` → task, tried in order against the model's catalog tasks (None: the model's default task).
INPUT_TYPE_TASKS: dict[str, tuple[str, ...]] = {
    "query": ("retrieval.query", "*.query"),
    "document": ("retrieval.passage", "*.passage"),
}

_STATUS = {"auth": 401, "model_not_found": 400, "overloaded": 429, "unavailable": 503, "internal": 500,
           "not_found": 404}


def render(f: Failure) -> Response:
    return JSONBytes(dumps({"detail": f.text}), status_code=_STATUS.get(f.kind, 400), headers=f.headers)


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | list[str]
    model: str | None = None
    input_type: Literal["query", "document"] | None = None
    truncation: bool | None = None
    output_dimension: int | None = None
    output_dtype: Literal["float", "int8", "uint8", "binary", "ubinary"] | None = None
    encoding_format: Literal["base64"] | None = None


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str
    documents: list[str] = Field(min_length=1)
    model: str | None = None
    top_k: int | None = Field(default=None, ge=1)
    return_documents: bool | None = None
    truncation: bool | None = None


async def embeddings(request: Request, raw: dict[str, Any]) -> Response:
    body = validate(EmbedRequest, raw)
    service = common.service_for(request, body.model, "embedding")
    texts = [body.input] if isinstance(body.input, str) else body.input
    common.non_empty(texts, "input")
    task = common.pick_task(service.spec.task_names, INPUT_TYPE_TASKS[body.input_type]) if body.input_type else None
    options = EmbedOptions(task=task, dimensions=body.output_dimension,
                           truncate=True if body.truncation is None else body.truncation)
    result = await common.embed(request, service, common.text_inputs(texts, request, "input"), options)
    dtype = body.output_dtype or "float"
    data = []
    for i, v in enumerate(result.vectors):
        value = v if dtype == "float" else quantize(v, dtype)
        data.append({"object": "embedding", "embedding": to_base64(value) if body.encoding_format else value,
                     "index": i})
    return JSONBytes(dumps({"object": "list", "data": data, "model": service.id,
                            "usage": {"total_tokens": result.total_tokens}}))


async def rerank(request: Request, raw: dict[str, Any]) -> Response:
    body = validate(RerankRequest, raw)
    service = common.service_for(request, body.model, "rerank")
    docs = common.documents(body.documents, request)
    options = RerankOptions(top_n=body.top_k, return_documents=False,
                            truncate=True if body.truncation is None else body.truncation)
    result = await common.rerank(request, service, body.query, docs, options)
    data = [{"index": i, "relevance_score": score, **({"document": body.documents[i]} if body.return_documents
                                                      else {})}
            for i, score in ranked(result.scores, body.top_k)]
    return JSONBytes(dumps({"object": "list", "data": data, "model": service.id,
                            "usage": {"total_tokens": result.total_tokens}}))
