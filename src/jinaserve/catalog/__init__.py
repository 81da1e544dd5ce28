"""The single table of facts about every supported model.

Rows live in one module per model line (`generic`, `jina_text`, `rerankers`, ...); this module joins
them and answers look-ups by id or alias. Nothing else in the code base hard-codes a model name.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import replace

from .spec import Detect, GGUFSpec, Kind, ModelSpec, Pooling, TaskSpec

__all__ = ["CATALOG", "Detect", "GGUFSpec", "Kind", "ModelSpec", "Pooling", "TaskSpec", "all_models", "lookup"]


def _load_rows() -> dict[str, ModelSpec]:
    rows: dict[str, ModelSpec] = {}
    gguf_specs: dict[str, GGUFSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "spec":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for spec in getattr(module, "ROWS", []):
            if spec.id in rows:
                raise RuntimeError(f"duplicate catalog id {spec.id!r} in {info.name}")
            rows[spec.id] = spec
        gguf_specs.update(getattr(module, "GGUF_SPECS", {}))
    # GGUF files of rows defined elsewhere (catalog/gguf.py): same row, one more runtime
    for model_id, gguf in gguf_specs.items():
        if model_id in rows and rows[model_id].gguf is None:
            rows[model_id] = replace(rows[model_id], gguf=gguf)
    return rows


CATALOG: dict[str, ModelSpec] = _load_rows()
_ALIASES: dict[str, str] = {}
for _spec in CATALOG.values():
    for _name in (_spec.id, *_spec.aliases, *([_spec.hf_repo] if _spec.hf_repo else [])):
        _ALIASES.setdefault(_name.lower(), _spec.id)


def lookup(name: str) -> ModelSpec | None:
    """Find a row by catalog id, alias or Hugging Face repo id (case-insensitive)."""
    key = _ALIASES.get(name.lower())
    return CATALOG[key] if key else None


def all_models() -> list[ModelSpec]:
    return sorted(CATALOG.values(), key=lambda s: (s.kind, s.id))
