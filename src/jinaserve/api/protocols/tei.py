"""Hugging Face Text Embeddings Inference (TEI) protocol: `/embed`, `/embed_all`, `/rerank` (TEI's `texts`
shape, chosen on the shared path by `api/dispatch.py`), `/tokenize`, `/info`, and `POST /` (TEI's default
route). TEI serves one model and its bodies name none: here the routes serve the first embedding (or rerank)
model, another one by `?model=NAME`, or under the prefix `/tei/NAME/...`, so a TEI client reaches any served
model by its base URL alone (`http://host:8080/tei/NAME`).

Errors: TEI's `{"error": str, "error_type": "Validation" | "Empty" | "Backend" | "Overloaded" | "Unhealthy"}`
with TEI's statuses (422 validation, 400 empty, 424 backend, 429 overloaded, 503 unhealthy).
Wire facts: TEI v1.9.3 `router/src/http/{server,types}.rs`, `router/src/lib.rs`, `core/src/tokenization.rs`
(see docs/protocols.md).
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from ... import __version__
from ...engine.service import ModelService
from ...jobs import EmbedInput, EmbedOptions, RerankOptions
from ..auth import check_api_key
from ..responses import JSONBytes, dumps, ranked
from . import common
from .failures import Failure, ProtocolError, route_class, validate

# TEI's `prompt_name` is a key of the sentence-transformers `prompts` of the checkpoint. The published Jina
# configs name them `query` / `document` (v5) and `<task>_query` / `<task>_document` (code models); each model's
# own task names are accepted as prompt names too. Candidates are tried in order against the row's tasks.
PROMPT_TASKS: dict[str, tuple[str, ...]] = {
    "query": ("retrieval.query", "*.query"),
    "document": ("retrieval.passage", "*.passage"),
    "passage": ("retrieval.passage", "*.passage"),
}
_ROLE_SUFFIX = {"query": ".query", "document": ".passage", "passage": ".passage"}

_STATUS: dict[str, tuple[int, str]] = {
    "validation": (422, "Validation"), "invalid": (422, "Validation"), "token_limit": (422, "Validation"),
    "model_not_found": (422, "Validation"), "json": (400, "Validation"), "empty": (400, "Empty"),
    "capability": (424, "Backend"), "too_large": (413, "Validation"), "overloaded": (429, "Overloaded"),
    "unavailable": (503, "Unhealthy"), "auth": (401, "Unauthorized"), "not_found": (404, "Validation"),
    "internal": (500, "Backend"),
}


def render(f: Failure) -> Response:
    status, error_type = _STATUS[f.kind]
    return JSONBytes(dumps({"error": f.text, "error_type": error_type}), status_code=status, headers=f.headers)


router = APIRouter(route_class=route_class(render), dependencies=[Depends(check_api_key)], tags=["tei"],
                   include_in_schema=False)

Direction = Literal["Left", "Right", "left", "right"]


class _TeiBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    truncate: bool | None = None
    truncation_direction: Direction | None = None
    prompt_name: str | None = None


class EmbedAllRequest(_TeiBody):
    inputs: str | list[int] | list[str | list[int]]


class EmbedRequest(EmbedAllRequest):
    normalize: bool | None = None
    dimensions: int | None = None


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str
    texts: list[str]
    truncate: bool | None = None
    truncation_direction: Direction | None = None
    raw_scores: bool | None = None
    return_text: bool | None = None


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: str | list[str]
    add_special_tokens: bool | None = None
    prompt_name: str | None = None


# ------------------------------------------------------------------ request → job
def _service(request: Request, model: str | None, kind: str) -> ModelService:
    if model is None and kind == "any":  # /info, /tokenize: the first embedding model, else the first reranker
        kinds = {s.kind for s in common.served(request)}
        kind = "embedding" if "embedding" in kinds or not kinds else "rerank"
    return common.service_for(request, model, "embedding" if kind == "any" else kind)


def task_for_prompt(prompt_name: str | None, task_names: list[str], model_id: str) -> str | None:
    if prompt_name is None:
        return None
    if prompt_name in task_names:
        return prompt_name
    task = common.pick_task(task_names, PROMPT_TASKS.get(prompt_name, ()))
    base, _, role = prompt_name.rpartition("_")
    if task is None and base and role in _ROLE_SUFFIX and base + _ROLE_SUFFIX[role] in task_names:
        task = base + _ROLE_SUFFIX[role]
    if task is None:
        available = ", ".join(task_names) or "none (the model has no prompts)"
        raise ProtocolError("validation", f"Prompt name `{prompt_name}` was not found for model `{model_id}`. "
                            f"Available prompts: {available}")
    return task


def _check_direction(direction: str | None) -> None:
    if direction is not None and direction.lower() == "left":
        raise ProtocolError("validation", "`truncation_direction: Left` is not supported: jinaserve cuts long "
                            "inputs at the end (Right); send Right or leave it out")


def _inputs(raw: Any, request: Request) -> list[EmbedInput]:
    one = isinstance(raw, str) or (raw and all(isinstance(t, int) for t in raw))  # a text, or one id list
    items = [raw] if one else list(raw)
    if not items:
        raise ProtocolError("empty", "`inputs` cannot be empty")
    limit = common.settings_of(request).max_inputs_per_request
    if len(items) > limit:
        raise ProtocolError("validation", f"batch size {len(items)} > maximum allowed batch size {limit}")
    texts = [x for x in items if isinstance(x, str)]
    common.text_inputs(texts, request, "inputs")  # length limits
    if any(isinstance(x, list) and not x for x in items):
        raise ProtocolError("validation", "a token-id input cannot be empty")
    if not common.settings_of(request).allow_token_ids and any(isinstance(x, list) for x in items):
        i = next(i for i, x in enumerate(items) if isinstance(x, list))
        raise ProtocolError("validation", f"`inputs` item {i} is an array of token ids, but this server takes text "
                            "(ids from another tokenizer would give wrong vectors): send the text. An operator can "
                            "accept ids of the served model's own vocabulary with the allow_token_ids setting.")
    return [EmbedInput(text=x) if isinstance(x, str) else EmbedInput(token_ids=list(x)) for x in items]


def _embed_options(body: _TeiBody, service: ModelService, **kw: Any) -> EmbedOptions:
    _check_direction(body.truncation_direction)
    task = task_for_prompt(body.prompt_name, service.spec.task_names, service.id)
    return EmbedOptions(task=task, truncate=True if body.truncate is None else body.truncate, **kw)


# ------------------------------------------------------------------ routes
@router.post("/tei/{model:path}/embed")
@router.post("/embed")
async def embed(request: Request, body: EmbedRequest, model: str | None = None) -> Response:
    """TEI embed: one vector per input (first embedding model, ?model=, or /tei/{model})."""
    return await _embed(request, body, model)


async def _embed(request: Request, body: EmbedRequest, model: str | None) -> Response:
    service = _service(request, model, "embedding")
    if body.dimensions is not None and body.dimensions == 0:
        raise ProtocolError("validation", "`dimensions` should be positive")
    options = _embed_options(body, service, dimensions=body.dimensions,
                             normalized=True if body.normalize is None else body.normalize)
    result = await common.embed(request, service, _inputs(body.inputs, request), options)
    return JSONBytes(dumps(result.vectors))


@router.post("/tei/{model:path}/embed_all")
@router.post("/embed_all")
async def embed_all(request: Request, body: EmbedAllRequest, model: str | None = None) -> Response:
    """TEI embed_all: per-token vectors (multi-vector models)."""
    service = _service(request, model, "embedding")
    if "return_multivector" not in service.spec.options:
        raise ProtocolError("capability", f"Model `{service.id}` does not return per-token embeddings; "
                            "/embed_all needs a multi-vector model (e.g. jina-embeddings-v4)", 400)
    options = _embed_options(body, service, return_multivector=True)
    result = await common.embed(request, service, _inputs(body.inputs, request), options)
    return JSONBytes(dumps(result.vectors))


async def rerank(request: Request, raw: dict[str, Any], model: str | None = None) -> Response:
    """TEI `/rerank` (`query` + `texts`); reached through `api/dispatch.py` on the shared path."""
    body = validate(RerankRequest, raw)
    service = _service(request, model if model is not None else request.query_params.get("model"), "rerank")
    if not body.texts:
        raise ProtocolError("empty", "`texts` cannot be empty")
    if body.raw_scores:
        raise ProtocolError("validation", "`raw_scores: true` is not supported: jinaserve's rerankers return "
                            "their calibrated scores (in [0, 1] for cross-encoders); leave raw_scores out")
    _check_direction(body.truncation_direction)
    limit = common.settings_of(request).max_documents_per_request
    if len(body.texts) > limit:
        raise ProtocolError("validation", f"batch size {len(body.texts)} > maximum allowed batch size {limit}")
    docs = common.documents(body.texts, request, "texts")
    options = RerankOptions(return_documents=False, truncate=True if body.truncate is None else body.truncate)
    result = await common.rerank(request, service, body.query, docs, options)
    out = []
    for i, score in ranked(result.scores, None):
        out.append({"index": i, "text": body.texts[i], "score": score} if body.return_text
                   else {"index": i, "score": score})
    return JSONBytes(dumps(out))


@router.post("/tei/{model:path}/rerank")
async def rerank_prefixed(request: Request, model: str) -> Response:
    """TEI rerank (query + texts) on the model the prefix names."""
    return await rerank(request, await common.json_body(request), model)


@router.post("/tei/{model:path}/tokenize")
@router.post("/tokenize")
async def tokenize(request: Request, body: TokenizeRequest, model: str | None = None) -> Response:
    """TEI tokenize: tokens with UTF-8 byte offsets, prompt included."""
    service = _service(request, model, "any")
    tokenizer = getattr(service.family, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise ProtocolError("capability", f"Model `{service.id}` has no fast tokenizer to answer /tokenize", 400)
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts:
        raise ProtocolError("empty", "`inputs` cannot be empty")
    common.text_inputs(texts, request, "inputs")
    task = task_for_prompt(body.prompt_name, service.spec.task_names, service.id)
    task = service.family.resolve_task(task)
    t = service.spec.task(task)
    prefix = t.prefix if t is not None else ""
    special = True if body.add_special_tokens is None else body.add_special_tokens
    plain = _fixed_state_copy(tokenizer)
    out = await asyncio.to_thread(lambda: [_tokens(plain, prefix + text, special) for text in texts])
    return JSONBytes(dumps(out))


@functools.lru_cache(maxsize=16)
def _fixed_state_copy(tokenizer: Any) -> Any:
    """A private copy of a fast tokenizer's Rust backend without truncation or padding: calling the shared
    tokenizer would re-configure its state under the feet of the threads that plan batches."""
    from tokenizers import Tokenizer

    plain = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain


def _tokens(plain: Any, text: str, add_special_tokens: bool) -> list[dict[str, Any]]:
    """TEI `SimpleToken`s: special tokens without offsets; others with their text and UTF-8 byte offsets."""
    enc = plain.encode(text, add_special_tokens=add_special_tokens)
    byte_at = [0]
    for ch in text:
        byte_at.append(byte_at[-1] + len(ch.encode("utf-8")))
    out = []
    for tid, (start, stop), is_special, piece in zip(enc.ids, enc.offsets, enc.special_tokens_mask, enc.tokens,
                                                     strict=True):
        if is_special:
            out.append({"id": tid, "text": piece, "special": True, "start": None, "stop": None})
        else:
            out.append({"id": tid, "text": text[start:stop], "special": False, "start": byte_at[start],
                        "stop": byte_at[stop]})
    return out


@router.get("/tei/{model:path}/info")
@router.get("/info")
async def info(request: Request, model: str | None = None) -> Response:
    """TEI info: the model's id, type, limits and version."""
    service = _service(request, model, "any")
    settings = common.settings_of(request)
    spec = service.spec
    net = getattr(service.family, "model", None)
    dtype = getattr(net, "dtype", None)
    if service.kind == "rerank":
        config = getattr(net, "config", None)
        id2label = {str(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
        model_type: dict[str, Any] = {"reranker": {"id2label": id2label,
                                                   "label2id": {v: int(k) for k, v in id2label.items()}}}
    else:
        model_type = {"embedding": {"pooling": spec.pooling}}
    return JSONBytes(dumps({
        "model_id": spec.hf_repo or service.id, "model_sha": spec.revision,
        "model_dtype": str(dtype).removeprefix("torch.") if dtype is not None else settings.dtype,
        "served_model_name": service.id, "model_type": model_type,
        "max_concurrent_requests": settings.max_queue_items, "max_input_length": spec.max_tokens,
        "max_batch_tokens": settings.max_batch_tokens, "max_batch_requests": settings.max_batch_size,
        "max_client_batch_size": settings.max_inputs_per_request, "auto_truncate": True,
        # planning (tokenisation) runs on asyncio's default executor: ThreadPoolExecutor's default size
        "tokenization_workers": min(32, (os.cpu_count() or 1) + 4),
        "version": __version__, "sha": None, "docker_label": None,
    }))


@router.post("/tei/{model:path}")
@router.post("/")
async def default_route(request: Request, model: str | None = None) -> Response:
    """TEI's `POST /` (what `huggingface_hub.InferenceClient(base_url=...)` posts to): rerank for a
    `query` + `texts` body, embed otherwise."""
    raw = await common.json_body(request)
    if isinstance(raw, dict) and "texts" in raw and "query" in raw:
        return await rerank(request, raw, model)
    return await _embed(request, validate(EmbedRequest, raw), model)

