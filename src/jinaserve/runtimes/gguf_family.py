"""`gguf_text`: text-embedding models published only as GGUF (jina-embeddings-v4-text-*), and GGUF files
outside the catalog. The family logic is the shared `TextEmbeddingFamily` (task prefix, batching, pooling
over the mask, cosine rerank); the backbone is llama.cpp's (`runtimes.llamacpp_runtime`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..catalog import ModelSpec
from ..errors import ModelLoadError
from ..models.text_embedding import TextEmbeddingFamily


class GGUFTextFamily(TextEmbeddingFamily):
    family_name = "gguf_text"

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: Any) -> GGUFTextFamily:
        raise ModelLoadError(f"Model {spec.id!r} is published only as GGUF: serve it with --runtime llamacpp "
                             f"(pip install 'jinaserve[gguf]')")
