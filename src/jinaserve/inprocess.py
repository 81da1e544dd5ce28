"""In-process API: the same engine as the server, without HTTP.

    from jinaserve import Embedder, Reranker
    emb = Embedder("jina-embeddings-v3")
    vectors = emb.encode(["hello", "world"], task="retrieval.passage", dimensions=256)
    labels = emb.classify(["I loved it"], labels=["positive", "negative"])  # zero-shot, as /v1/classify
    ranked = Reranker("jina-reranker-v3").rerank("query", ["doc a", "doc b"], top_n=1)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

import numpy as np

from .classify import ANONYMOUS, ClassifyEngine, LabelSet
from .config import Settings
from .engine.registry import load_service
from .engine.service import ModelService
from .errors import ModelNotFoundError
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

    @property
    def multi_vector_only(self) -> bool:
        """True for models that embed every input to one vector per token (ColBERT): use
        `encode_multivector()` with them."""
        return bool(self._service.family.multi_vector_only)

    def close(self) -> None:
        self._service.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Embedder(_InProcessModel):
    """Embeds text (and images, for multimodal models) into numpy arrays; classifies them."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._classify_lock = threading.Lock()
        self._engine: ClassifyEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

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
                           images: Any = None, dimensions: int | None = None) -> list[np.ndarray]:
        """Per-token vectors (models with multi-vector output): one (tokens × dims) array per text, then
        one per image (paths, URLs, base64 / data URIs, bytes or PIL images). ColBERT models: task
        "retrieval.query" for queries, "retrieval.passage" (default) for documents; `dimensions` 64/96/128 where
        the model has them (jina-colbert-v2)."""
        items = [EmbedInput(text=t) for t in ([texts] if isinstance(texts, str) else (texts or []))]
        if images is not None:
            items += [EmbedInput(image=i) for i in (images if isinstance(images, list | tuple) else [images])]
        opts = EmbedOptions(task=task, dimensions=dimensions, truncate=True, return_multivector=True,
                            in_process=True)
        return self._service.embed_sync(items, opts).vectors

    # ------------------------------------------------------------------ classification
    def classify(self, inputs: Any, labels: list[str] | dict[str, list[str]] | None = None, *,
                 classifier_id: str | None = None) -> list[dict[str, Any]]:
        """Zero-shot with `labels` (a list, or a dict of named groups), or with a classifier trained by
        `train_classifier` (`classifier_id`): one `{index, prediction, score, predictions}` per input, as
        /v1/classify answers. Inputs: str, {"text": str}, {"image": path | URL | base64 | bytes | PIL image}."""
        items = _classify_inputs(inputs)
        engine = self._classify_engine()
        if (labels is None) == (classifier_id is None):
            raise ValueError("pass labels (zero-shot) or classifier_id (a trained classifier), one of the two")
        if labels is not None:
            result = self._await(engine.zero_shot(self._service, items, LabelSet.parse(labels, "labels")))
        else:
            result = self._await(engine.few_shot(owner=ANONYMOUS, classifier_id=str(classifier_id), inputs=items,
                                                 resolve=self._own_service))
        return [{k: v for k, v in item.items() if k != "object"} for item in result.items()]

    def train_classifier(self, inputs: Any, labels: Sequence[str], *, classifier_id: str | None = None,
                         num_iters: int = 10) -> str:
        """Train a few-shot classifier on this model (or keep training `classifier_id`); returns its id. It is
        kept in the store of `data_dir` (shared with a server on the same data_dir without API keys)."""
        items = _classify_inputs(inputs)
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} inputs but {len(labels)} labels")
        result = self._await(self._classify_engine().train(
            owner=ANONYMOUS, inputs=items, labels=list(labels), num_iters=num_iters,
            service=None if classifier_id else self._service, classifier_id=classifier_id,
            resolve=self._own_service))
        return result.classifier_id

    def delete_classifier(self, classifier_id: str) -> None:
        self._await(self._classify_engine().delete(ANONYMOUS, classifier_id))

    def _own_service(self, model: str) -> ModelService:
        if model != self._service.id:
            raise ModelNotFoundError(f"The classifier was trained on model {model!r}; this Embedder runs "
                                     f"{self._service.id!r}. Load that model to use it.")
        return self._service

    def _classify_engine(self) -> ClassifyEngine:
        with self._classify_lock:
            if self._engine is None:
                from .store import open_database
                from .store.classifiers import SQLiteClassifierStore

                data_dir = self.settings.data_dir
                self._engine = ClassifyEngine(
                    label_cache_bytes=int(self.settings.classify_label_cache_mb * 1024 * 1024),
                    store_factory=lambda: SQLiteClassifierStore(open_database(data_dir)),
                    max_classifiers=self.settings.max_classifiers, in_process=True)
            return self._engine

    def _await(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run an engine coroutine on this Embedder's own event-loop thread (works from any thread, also
        where a loop is already running, e.g. a notebook)."""
        with self._classify_lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(target=self._loop.run_forever, name="embedder-classify",
                                                     daemon=True)
                self._loop_thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        with self._classify_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
            if self._loop is not None and self._loop_thread is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop_thread.join(timeout=10)
                self._loop.close()
                self._loop, self._loop_thread = None, None
        super().close()

    def _run(self, items: list[EmbedInput], task: str | None, dimensions: int | None, normalized: bool,
             truncate: bool, late_chunking: bool = False) -> np.ndarray:
        opts = EmbedOptions(task=task, dimensions=dimensions, normalized=normalized, truncate=truncate,
                            late_chunking=late_chunking, in_process=True)
        result = self._service.embed_sync(items, opts)
        if any(v.ndim != 1 for v in result.vectors):
            raise ValueError(f"{self.model_id} returns one vector per token; use encode_multivector()")
        if not result.vectors:
            return np.zeros((0, dimensions or (self.spec.dims or 0)), dtype=np.float32)
        return np.stack(result.vectors)


def _classify_inputs(inputs: Any) -> list[EmbedInput]:
    items = [inputs] if isinstance(inputs, str | dict) else list(inputs)
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(EmbedInput(text=item))
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            out.append(EmbedInput(text=item["text"]))
        elif isinstance(item, dict) and item.get("image") is not None:
            out.append(EmbedInput(image=item["image"]))
        else:
            raise ValueError(f"classify inputs are str, {{'text': str}} or {{'image': ...}}, got {type(item).__name__}")
    return out


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
