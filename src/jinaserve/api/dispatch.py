"""Paths that several protocols share, and the one rule that picks the protocol from the body's fields.

| path | protocol | when the JSON body has |
|---|---|---|
| `/v1/embeddings`, `/embeddings` | Voyage | an `output_dtype` key (the voyageai SDK always sends it, often null) |
| | Jina / OpenAI (also TEI's OpenAI route) | anything else |
| `/v1/rerank`, `/rerank` | TEI | `texts` and no `documents` |
| | Voyage | `top_k` and `truncation`, and no `top_n` (the voyageai SDK always sends both) |
| | Cohere v1 | `rank_fields` or `max_chunks_per_doc` |
| | Jina (also read by the Cohere v1 client) | anything else |

The routes stay in `api/routes.py` and call in here with their Jina handler. The chosen protocol also answers
the errors (`protocols/failures.py`); the Jina/OpenAI path keeps the hosted Jina error body. A body that is not
a JSON object is a Jina request (and fails Jina's validation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from .protocols import cohere, tei, voyage
from .protocols.common import json_body
from .protocols.failures import answer, validate
from .protocols.jina import EmbeddingsRequest, RerankRequest


def embeddings_protocol(body: Any) -> str:
    return "voyage" if isinstance(body, dict) and "output_dtype" in body else "jina"


def rerank_protocol(body: Any) -> str:
    if not isinstance(body, dict):
        return "jina"
    if "texts" in body and "documents" not in body:
        return "tei"
    if "top_k" in body and "truncation" in body and "top_n" not in body:
        return "voyage"
    if "rank_fields" in body or "max_chunks_per_doc" in body:
        return "cohere"
    return "jina"


async def embeddings(request: Request, *,
                     jina: Callable[[Request, EmbeddingsRequest], Awaitable[Response]]) -> Response:
    body = await json_body(request)
    if embeddings_protocol(body) == "voyage":
        return await answer(voyage.render, lambda: voyage.embeddings(request, body))
    return await jina(request, validate(EmbeddingsRequest, body))


async def rerank(request: Request, *, jina: Callable[[Request, RerankRequest], Awaitable[Response]]) -> Response:
    body = await json_body(request)
    protocol = rerank_protocol(body)
    if protocol == "tei":
        return await answer(tei.render, lambda: tei.rerank(request, body))
    if protocol == "voyage":
        return await answer(voyage.render, lambda: voyage.rerank(request, body))
    if protocol == "cohere":
        return await answer(cohere.render, lambda: cohere.rerank_v1(request, body))
    return await jina(request, validate(RerankRequest, body))


def documented(model: type[BaseModel]) -> dict[str, Any]:
    """The Jina request schema for the OpenAPI document (the body is parsed here, after the dispatch)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
