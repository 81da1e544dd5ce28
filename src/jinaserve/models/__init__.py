"""Model families: one module per family; `FAMILIES` maps a catalog row's `family` to its class."""

from __future__ import annotations

import importlib
from typing import Any

# family name -> "module:Class" (imported lazily so torch-free code paths stay light)
FAMILIES: dict[str, str] = {
    "sentence_transformer": "jinaserve.models.sentence_transformer:SentenceTransformerFamily",
    "cross_encoder": "jinaserve.models.cross_encoder:CrossEncoderFamily",
}


def family_class(name: str) -> Any:
    try:
        target = FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
