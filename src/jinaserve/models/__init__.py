"""Model families: one module per family; `FAMILIES` maps a catalog row's `family` to its class."""

from __future__ import annotations

import importlib
from typing import Any

# family name -> "module:Class" (imported lazily so torch-free code paths stay light)
FAMILIES: dict[str, str] = {
    "sentence_transformer": "jinaserve.models.sentence_transformer:SentenceTransformerFamily",
    "cross_encoder": "jinaserve.models.cross_encoder:CrossEncoderFamily",
    "jina_v4": "jinaserve.models.jina_v4:JinaV4Family",
    "jina_v3": "jinaserve.models.jina_v3:JinaV3Family",
    "jina_v5": "jinaserve.models.jina_v5:JinaV5Family",
    "jina_code": "jinaserve.models.jina_code:JinaCodeFamily",
    "jina_v2": "jinaserve.models.jina_v2:JinaV2Family",
    "jina_reranker_v3": "jinaserve.models.jina_reranker_v3:JinaRerankerV3Family",
    "jina_reranker_m0": "jinaserve.models.jina_reranker_m0:JinaRerankerM0Family",
    "jina_clip": "jinaserve.models.jina_clip:JinaCLIPFamily",
    "jina_colbert": "jinaserve.models.jina_colbert:JinaColBERTFamily",
    "jina_reranker_v1": "jinaserve.models.jina_reranker_v1:JinaRerankerV1Family",
    "gguf_text": "jinaserve.models.gguf:GGUFTextFamily",
}


def family_class(name: str) -> Any:
    try:
        target = FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
