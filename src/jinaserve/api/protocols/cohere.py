"""Cohere protocol: `/v1/embed`, `/v2/embed`, `/v2/rerank`, and the Cohere v1 `/v1/rerank` shape (bodies with
`rank_fields` or `max_chunks_per_doc`, chosen in `api/dispatch.py`; a plain `{model, query, documents, top_n}`
body gets the Jina answer, which the Cohere v1 client reads as well).

Errors: `{"id": request id, "message": "invalid request: ..."}`; 400 for an invalid request, 404 for an unknown
model. Wire facts: `cohere-ai/cohere-python` (v1/v2 raw clients, types) and Cohere's OpenAPI (docs/protocols.md).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ...engine.service import ModelService
from ...errors import FieldError, ValidationFailedError
from ...jobs import EmbedInput, EmbedOptions, EmbedResult, RerankOptions
from ...outputs import quantize, to_base64
from ..auth import check_api_key
from ..context import request_id_var
from ..responses import JSONBytes, dumps, ranked
from . import common
from .failures import Failure, ProtocolError, route_class, validate

# `input_type` → task, tried in order against the model's catalog tasks (None: the model's default task).
INPUT_TYPE_TASKS: dict[str, tuple[str, ...]] = {
    "search_query": ("retrieval.query", "*.query"),
    "search_document": ("retrieval.passage", "*.passage"),
    "image": ("retrieval.passage", "*.passage"),
    "classification": ("classification",),
    "clustering": ("clustering", "separation"),
}
# "A single search unit is defined as one query with up to 100 documents to be ranked." (cohere.com/pricing FAQ)
DOCS_PER_SEARCH_UNIT = 100

_STATUS = {"model_not_found": 404, "auth": 401, "overloaded": 429, "unavailable": 503, "internal": 500,
           "not_found": 404, "too_large": 413}
_PREFIX = {"token_limit": "too many tokens: ", "model_not_found": "", "auth": "", "overloaded": "",
           "unavailable": "", "internal": "", "not_found": ""}


def render(f: Failure) -> Response:
    message = _PREFIX.get(f.kind, "invalid request: ") + f.text
    return JSONBytes(dumps({"id": request_id_var.get(), "message": message}), status_code=_STATUS.get(f.kind, 400),
                     headers=f.headers)


router = APIRouter(route_class=route_class(render), dependencies=[Depends(check_api_key)], tags=["cohere"],
                   include_in_schema=False)

EmbeddingTypeName = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]
InputType = Literal["search_document", "search_query", "classification", "clustering", "image"]


class TextContent(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str


class ImageContent(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class Input(BaseModel):
    content: list[Annotated[TextContent | ImageContent, Field(discriminator="type")]]


class EmbedV1Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    texts: list[str] | None = None
    images: list[str] | None = None
    input_type: InputType | None = None
    embedding_types: list[EmbeddingTypeName] | None = None
    truncate: Literal["NONE", "START", "END"] | None = None


class EmbedV2Request(EmbedV1Request):
    inputs: list[Input] | None = None
    output_dimension: int | None = None
    max_tokens: int | None = None
    priority: int | None = None  # accepted; every request is served in arrival order


class RerankV2Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    query: str
    documents: list[str]
    top_n: int | None = Field(default=None, ge=1)
    max_tokens_per_doc: int | None = Field(default=None, ge=1)
    priority: int | None = None


class RerankV1Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    query: str
    documents: list[str | dict[str, Any]]
    top_n: int | None = Field(default=None, ge=1)
    rank_fields: list[str] | None = None
    return_documents: bool | None = None
    max_chunks_per_doc: int | None = None  # accepted; long documents are windowed or cut by the model itself


# ------------------------------------------------------------------ embed
def _inputs(body: EmbedV1Request, request: Request) -> tuple[list[EmbedInput], list[str]]:
    given = [name for name in ("texts", "images", "inputs") if getattr(body, name, None) is not None]
    if len(given) != 1:
        raise ProtocolError("invalid", "provide exactly one of texts, images or inputs"
                            + (f" (got {', '.join(given)})" if given else ""))
    if body.texts is not None:
        common.non_empty(body.texts, "texts")
        return common.text_inputs(body.texts, request, "texts"), body.texts
    if body.images is not None:
        common.non_empty(body.images, "images")
        common.check_count(len(body.images), common.settings_of(request).max_inputs_per_request, "images")
        return [EmbedInput(image=uri) for uri in body.images], []
    items: list[Input] = getattr(body, "inputs", None) or []
    common.non_empty(items, "inputs")
    common.check_count(len(items), common.settings_of(request).max_inputs_per_request, "inputs")
    out, texts = [], []
    for i, item in enumerate(items):
        if len(item.content) != 1:
            raise ProtocolError("invalid", f"inputs[{i}] has {len(item.content)} content parts; jinaserve embeds "
                                "one text or one image per input (send the parts as separate inputs)")
        part = item.content[0]
        if isinstance(part, TextContent):
            text = common.check_length(part.text, common.settings_of(request).max_input_chars,
                                       f"inputs -> {i} -> content -> 0 -> text")
            out.append(EmbedInput(text=text))
            texts.append(text)
        else:
            out.append(EmbedInput(image=part.image_url.url))
    return out, texts


def _options(body: EmbedV1Request, service: ModelService) -> EmbedOptions:
    if body.truncate == "START":
        raise ProtocolError("invalid", "truncate=START is not supported: jinaserve cuts long inputs at the end; "
                            "send END (the default) or NONE")
    max_tokens = getattr(body, "max_tokens", None)
    if max_tokens is not None and max_tokens < service.spec.max_tokens:
        raise ProtocolError("invalid", f"max_tokens below the model's limit of {service.spec.max_tokens} tokens "
                            "is not supported; leave it out (with truncate=END inputs are cut at that limit)")
    task = common.pick_task(service.spec.task_names, INPUT_TYPE_TASKS[body.input_type]) if body.input_type else None
    return EmbedOptions(task=task, dimensions=getattr(body, "output_dimension", None),
                        truncate=body.truncate != "NONE")


def _by_type(result: EmbedResult, types: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for t in dict.fromkeys(types):  # in the order asked, each once
        if t == "float":
            out["float"] = list(result.vectors)
        elif t == "base64":
            out["base64"] = [to_base64(v) for v in result.vectors]
        else:
            out[t] = [quantize(v, t) for v in result.vectors]
    return out


def _meta(version: str, **billed: int) -> dict[str, Any]:
    return {"api_version": {"version": version}, "billed_units": {k: v for k, v in billed.items() if v}}


async def _embed(request: Request, body: EmbedV1Request) -> tuple[EmbedResult, list[str], dict[str, Any]]:
    service = common.service_for(request, body.model, "embedding")
    inputs, texts = _inputs(body, request)
    result = await common.embed(request, service, inputs, _options(body, service))
    images = sum(1 for x in inputs if x.image is not None)
    return result, texts, {"input_tokens": result.total_tokens, "images": images}


@router.post("/v2/embed")
async def embed_v2(request: Request, body: EmbedV2Request) -> Response:
    """Cohere v2 embed: texts, images or inputs; every embedding_types encoding."""
    result, texts, billed = await _embed(request, body)
    return JSONBytes(dumps({"id": request_id_var.get(), "embeddings": _by_type(result, body.embedding_types or
                                                                                ["float"]),
                            "texts": texts, "meta": _meta("2", **billed), "response_type": "embeddings_by_type"}))


@router.post("/v1/embed")
async def embed_v1(request: Request, body: EmbedV1Request) -> Response:
    """Cohere v1 embed."""
    result, texts, billed = await _embed(request, body)
    if body.embedding_types:
        return JSONBytes(dumps({"response_type": "embeddings_by_type", "id": request_id_var.get(),
                                "embeddings": _by_type(result, body.embedding_types), "texts": texts,
                                "meta": _meta("1", **billed)}))
    return JSONBytes(dumps({"response_type": "embeddings_floats", "id": request_id_var.get(),
                            "embeddings": list(result.vectors), "texts": texts, "meta": _meta("1", **billed)}))


# ------------------------------------------------------------------ rerank
def _search_units(n_docs: int) -> int:
    return max(1, math.ceil(n_docs / DOCS_PER_SEARCH_UNIT))


@router.post("/v2/rerank")
async def rerank_v2(request: Request, body: RerankV2Request) -> Response:
    """Cohere v2 rerank."""
    service = common.service_for(request, body.model, "rerank")
    if not body.documents:
        raise ProtocolError("invalid", "list of documents must not be empty")
    docs = common.documents(body.documents, request)
    options = RerankOptions(top_n=body.top_n, return_documents=False, max_doc_length=body.max_tokens_per_doc)
    result = await common.rerank(request, service, body.query, docs, options)
    results = [{"index": i, "relevance_score": s} for i, s in ranked(result.scores, body.top_n)]
    return JSONBytes(dumps({"id": request_id_var.get(), "results": results,
                            "meta": _meta("2", search_units=_search_units(len(docs)))}))


def _v1_document(doc: str | dict[str, Any], i: int, rank_fields: list[str] | None) -> str:
    """A v1 document as the text to rank: a string, its `text` field, or its `rank_fields` as `key: value`
    lines in the order given."""
    if isinstance(doc, str):
        return doc
    if rank_fields:
        lines = [f"{k}: {doc[k]}" for k in rank_fields if k in doc and doc[k] is not None]
        if lines:
            return "\n".join(lines)
        raise ValidationFailedError([FieldError(f"body -> documents -> {i}", "the document has none of the "
                                                f"rank_fields {rank_fields}", "value_error", None)])
    if isinstance(doc.get("text"), str):
        return doc["text"]
    raise ValidationFailedError([FieldError(f"body -> documents -> {i}", "an object document needs a string "
                                            "'text' field (or name its fields in rank_fields)", "value_error",
                                            None)])


async def rerank_v1(request: Request, raw: dict[str, Any]) -> Response:
    """Cohere v1 `/v1/rerank`; reached through `api/dispatch.py` on the shared path."""
    body = validate(RerankV1Request, raw)
    service = common.service_for(request, body.model, "rerank")
    if not body.documents:
        raise ProtocolError("invalid", "list of documents must not be empty")
    texts = [_v1_document(d, i, body.rank_fields) for i, d in enumerate(body.documents)]
    docs = common.documents(texts, request)
    result = await common.rerank(request, service, body.query, docs, RerankOptions(top_n=body.top_n,
                                                                                    return_documents=False))
    results = []
    for i, s in ranked(result.scores, body.top_n):
        item: dict[str, Any] = {"index": i, "relevance_score": s}
        if body.return_documents:
            d = body.documents[i]
            item["document"] = d if isinstance(d, dict) else {"text": d}
        results.append(item)
    return JSONBytes(dumps({"id": request_id_var.get(), "results": results,
                            "meta": _meta("1", search_units=_search_units(len(docs)))}))
