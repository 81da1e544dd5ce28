"""In-process API: the same engine as the server, without HTTP.

    from jinaserve import Embedder, Reranker
    emb = Embedder("jina-embeddings-v3")
    vectors = emb.encode(["hello", "world"], task="retrieval.passage", dimensions=256)
    ranked = Reranker("jina-reranker-v3").rerank("query", ["doc a", "doc b"], top_n=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import Settings
from .engine.registry import load_service
from .engine.service import ModelService
from .jobs import EmbedInput, EmbedOptions, RerankDocument, RerankJob, RerankOptions
from .outputs import cosine_similarity

__all__ = ["Embedder", "Reranker", "cosine_similarity"]


class _InProcessModel:
    def __init__(self, model: str, *, device: str = "auto", dtype: str | None = None, threads: int | None = None,
                 offline: bool = False, cache_dir: str | None = None, **settings: Any) -> None:
        # dtype None: JINASERVE_DTYPE if set, else auto (the server's own precedence)
        if dtype is not None:
            settings["dtype"] = dtype
        self.settings = Settings(models=[model], device=device, threads=threads, offline=offline,
                                 cache_dir=cache_dir, **settings)
        self._service: ModelService = load_service(model, self.settings)

    @property
    def model_id(self) -> str:
        return self._service.id

    @property
    def spec(self):
        return self._service.spec

    @property
    def device(self) -> str:
        return self._service.family.device

    def close(self) -> None:
        self._service.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Embedder(_InProcessModel):
    """Embeds text (and images, for multimodal models) into numpy arrays."""

    def encode(self, texts: str | Sequence[str], task: str | None = None, dimensions: int | None = None,
               normalized: bool = True, truncate: bool = True, late_chunking: bool = False) -> np.ndarray:
        """One row per text (a single string gives a 1-D vector)."""
        single = isinstance(texts, str)
        items = [EmbedInput(text=t) for t in ([texts] if single else texts)]
        out = self._run(items, task, dimensions, normalized, truncate, late_chunking=late_chunking)
        return out[0] if single else out

    encode_text = encode

    def encode_image(self, images: Any, task: str | None = None, dimensions: int | None = None,
                     normalized: bool = True) -> np.ndarray:
        """Images as local paths, URLs, base64 / data URIs, bytes or PIL images (multimodal models)."""
        single = not isinstance(images, list | tuple)
        items = [EmbedInput(image=i) for i in ([images] if single else images)]
        out = self._run(items, task, dimensions, normalized, True)
        return out[0] if single else out

    def encode_multivector(self, texts: str | Sequence[str] | None = None, task: str | None = None,
                           images: Any = None) -> list[np.ndarray]:
        """Per-token vectors (models with multi-vector output): one (tokens × dims) array per text, then
        one per image (paths, URLs, base64 / data URIs, bytes or PIL images)."""
        items = [EmbedInput(text=t) for t in ([texts] if isinstance(texts, str) else (texts or []))]
        if images is not None:
            items += [EmbedInput(image=i) for i in (images if isinstance(images, list | tuple) else [images])]
        opts = EmbedOptions(task=task, truncate=True, return_multivector=True, in_process=True)
        return self._service.embed_sync(items, opts).vectors

    def _run(self, items: list[EmbedInput], task: str | None, dimensions: int | None, normalized: bool,
             truncate: bool, late_chunking: bool = False) -> np.ndarray:
        opts = EmbedOptions(task=task, dimensions=dimensions, normalized=normalized, truncate=truncate,
                            late_chunking=late_chunking, in_process=True)
        result = self._service.embed_sync(items, opts)
        if not result.vectors:
            return np.zeros((0, dimensions or (self.spec.dims or 0)), dtype=np.float32)
        return np.stack(result.vectors)


class Reranker(_InProcessModel):
    """Scores documents against a query; results sorted best first."""

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None,
               return_documents: bool = True, instruction: str | None = None,
               max_doc_length: int | None = None) -> list[dict[str, Any]]:
        docs = [RerankDocument(text=d, original=d) for d in documents]
        opts = RerankOptions(top_n=top_n, return_documents=return_documents, instruction=instruction,
                             max_doc_length=max_doc_length)
        result = self._service.rerank_sync(RerankJob(self.model_id, query, docs, opts))
        order = sorted(range(len(docs)), key=lambda i: (-float(result.scores[i]), i))
        if top_n is not None:
            order = order[:top_n]
        out = []
        for i in order:
            item: dict[str, Any] = {"index": i, "relevance_score": float(result.scores[i])}
            if return_documents:
                item["document"] = {"text": documents[i]}
            out.append(item)
        return out

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Scores in document order."""
        docs = [RerankDocument(text=d, original=d) for d in documents]
        return self._service.rerank_sync(RerankJob(self.model_id, query, docs)).scores
