"""Response bodies in the hosted API's key order, serialised with orjson (numpy arrays natively)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from ..jobs import EmbedResult, RerankDocument, RerankResult
from ..outputs import encode_vector

_OPTS = orjson.OPT_SERIALIZE_NUMPY
SCORE_DECIMALS = 8


class JSONBytes(Response):
    media_type = "application/json"


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=_OPTS)


def embeddings_body(model: str, result: EmbedResult, embedding_type: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for i, v in enumerate(result.vectors):
        if v.ndim == 2:
            item = {"object": "embeddings", "index": i,
                    "embeddings": [encode_vector(row, embedding_type) for row in v]}
            if result.tokenized is not None:
                item["tokenized_input"] = result.tokenized[i]
            data.append(item)
        else:
            data.append({"object": "embedding", "index": i, "embedding": encode_vector(v, embedding_type)})
    return {"model": model, "object": "list",
            "usage": {"total_tokens": result.total_tokens, "prompt_tokens": result.total_tokens},
            "data": data}


def ranked(scores: Any, top_n: int | None) -> list[tuple[int, float]]:
    """(document index, score) best first, ties in input order, cut to `top_n`. Scores are rounded to 8
    decimals, as the hosted API sends them (the order uses the full-precision scores)."""
    s = np.asarray(scores, dtype=np.float64)
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    if top_n is not None:
        order = order[:top_n]
    return [(i, round(float(s[i]), SCORE_DECIMALS)) for i in order]


def rerank_body(model: str, docs: list[RerankDocument], result: RerankResult, *, top_n: int | None,
                return_documents: bool, return_embeddings: bool) -> dict[str, Any]:
    results = []
    for i, score in ranked(result.scores, top_n):
        item: dict[str, Any] = {"index": i, "relevance_score": score}
        if return_documents:
            d = docs[i]
            item["document"] = {"text": d.text} if d.text is not None else {"image": d.image}
        if return_embeddings and result.embeddings is not None:
            item["embedding"] = np.asarray(result.embeddings[i], dtype=np.float32)
        results.append(item)
    return {"model": model, "object": "list", "usage": {"total_tokens": result.total_tokens},
            "results": results}
