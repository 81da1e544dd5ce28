"""GGUF models: a llama.cpp backbone (`runtimes.llamacpp_runtime`) wrapped by the family that knows the model.

The runtime only locates and runs the file (`open_gguf`: token ids in, hidden states out). Which family
wraps it is the family's own business: a family that can run on llama.cpp has a classmethod
`load_gguf(spec, folder, backbone, opts)` (`TextEmbeddingFamily`'s generic one: the HF tokenizer next to the
file or the GGUF vocabulary; sentence-transformers folders add their Pooling / Dense; jina-embeddings-v3 adds
its task LoRA GGUFs; jina-reranker-v3 its projector). A GGUF outside the catalog is a plain text-embedding
model (`gguf_text`) whose pooling comes from the file's metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..catalog import ModelSpec
from ..errors import ModelLoadError
from . import family_class
from .base import ModelFamily
from .text_embedding import TextEmbeddingFamily

log = logging.getLogger("jinaserve.models.gguf")


class GGUFTextFamily(TextEmbeddingFamily):
    """`gguf_text`: text-embedding models published only as GGUF (jina-embeddings-v4-text-*), and GGUF files
    outside the catalog: the shared text-embedding logic on a llama.cpp backbone."""

    family_name = "gguf_text"

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: Any) -> GGUFTextFamily:
        raise ModelLoadError(f"Model {spec.id!r} is published only as GGUF: serve it with --runtime llamacpp "
                             f"(pip install 'jinaserve[gguf]')")


def detect_gguf_spec(served_id: str, backbone: Any) -> ModelSpec:
    """A row for a GGUF file that is not in the catalog: a plain text-embedding model."""
    pooling = backbone.gguf_pooling
    if pooling is None:
        log.warning("%s has no pooling type in its metadata: using mean pooling (name a catalog row with "
                    "--models ROW=/path/file.gguf to use the row's pooling)", backbone.path.name)
        pooling = "mean"
    return ModelSpec(id=served_id, family="gguf_text", kind="embedding", pooling=pooling,  # type: ignore[arg-type]
                     dims=backbone.n_embd, max_tokens=backbone.n_ctx_train,
                     description=f"GGUF {backbone.arch} (detected)")


def load_gguf_family(spec: ModelSpec, local_path: Path | None, opts: Any) -> ModelFamily:
    """Build `spec`'s family around llama.cpp (`opts`: a LoadOptions)."""
    from ..runtimes.llamacpp_runtime import open_gguf

    backbone = open_gguf(spec, local_path, opts)
    try:
        if not spec.family:
            spec = detect_gguf_spec(spec.id, backbone)
        hook = getattr(family_class(spec.family), "load_gguf", None)
        if hook is None:
            raise ModelLoadError(f"model family {spec.family!r} ({spec.id}) has no llama.cpp path; use --runtime "
                                 f"torch")
        family = hook(spec, backbone.path.parent, backbone, opts)
    except Exception:
        backbone.close()
        raise
    log.info("loaded %s from %s via llama.cpp (arch=%s, ctx=%d, batch=%d, seq_max=%d, threads=%d)", spec.id,
             backbone.path.name, backbone.arch, backbone.n_ctx, backbone.n_batch, backbone.n_seq_max,
             backbone.threads)
    family.runtime = "llamacpp"
    family.gguf_file = str(backbone.path)
    return family


__all__ = ["GGUFTextFamily", "detect_gguf_spec", "load_gguf_family"]
