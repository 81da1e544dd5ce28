"""Classification on top of a model service: zero-shot (labels) and few-shot (trained classifiers).

Used by the HTTP layer (`api/classify.py`) and the in-process API (`Embedder.classify`); it knows no
HTTP. Embeddings come from the model's own `ModelService` (same batcher as /v1/embeddings); trained
classifiers live in a `ClassifierStore`.

* Zero-shot: inputs and labels are embedded with the tasks the model's catalog row names
  (`classify_tasks`); each label's embedding is cached per (model, task, label). A label group's scores
  are softmax(cosine(input, label)) over its labels (temperature 1, see docs/classify.md).
* Few-shot: `SoftmaxClassifier` (classify/linear.py) on the inputs' embeddings.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..engine.service import ModelService
from ..errors import (
    ConflictError,
    FieldError,
    InvalidInputError,
    InvalidLabelsError,
    LabelLimitError,
    ResourceNotFoundError,
    ValidationFailedError,
)
from ..jobs import EmbedInput, EmbedOptions
from ..outputs import cosine_similarity
from ..store.classifiers import ClassifierRecord, ClassifierStore
from .label_cache import LabelCache, LabelKey, LabelVector
from .labels import LabelSet, label_problem
from .linear import SoftmaxClassifier, softmax

MAX_INPUTS = 512  # items per /v1/classify and /v1/train request (hosted OpenAPI: "up to 512 items")
MAX_CLASSES = 256  # labels one trained classifier may have (hosted plans allow 16; see docs/classify.md)
MAX_NUM_ITERS = 100  # L-BFGS iterations per /v1/train request (hosted default 10)
ANONYMOUS = "00000000-0000-0000-0000-000000000000"  # the owner when the server has no API keys


def classify_tasks(spec: ModelSpec) -> tuple[str | None, str | None]:
    """(task for inputs, task for labels) from the catalog row (`extra["classify_input_task"]`,
    `extra["classify_label_task"]`); a row without them, or whose tasks lack them, uses its default task."""
    names = spec.task_names

    def pick(key: str) -> str | None:
        task = spec.extra.get(key)
        return task if task in names else spec.default_task

    return pick("classify_input_task"), pick("classify_label_task")


@dataclass
class ClassifyResult:
    """Scores per label group: (group name or None, labels, inputs × labels probabilities)."""

    groups: list[tuple[str | None, list[str], np.ndarray]]
    total_tokens: int
    model: str  # the served model that embedded the inputs

    @property
    def size(self) -> int:
        """(input, label) scores in the result."""
        return sum(scores.size for _, _, scores in self.groups)

    def items(self) -> list[dict[str, Any]]:
        """One `{object, index, prediction, score, predictions}` per input, as the hosted API answers
        (dicts keyed by group name for grouped labels; predictions in label order)."""
        n = self.groups[0][2].shape[0] if self.groups else 0
        out = []
        for i in range(n):
            per = {name: _one(labels, scores[i]) for name, labels, scores in self.groups}
            if len(per) == 1 and None in per:
                prediction, score, predictions = per[None]
            else:
                prediction = {g: v[0] for g, v in per.items()}
                score = {g: v[1] for g, v in per.items()}
                predictions = {g: v[2] for g, v in per.items()}
            out.append({"object": "classification", "index": i, "prediction": prediction, "score": score,
                        "predictions": predictions})
        return out


def _one(labels: list[str], scores: np.ndarray) -> tuple[str, float, list[dict[str, Any]]]:
    best = int(np.argmax(scores))  # ties: the first label
    return labels[best], float(scores[best]), [{"label": lab, "score": float(s)} for lab, s in zip(labels, scores,
                                                                                                   strict=True)]


@dataclass
class TrainResult:
    classifier_id: str
    num_samples: int
    total_tokens: int
    model: str


class ClassifyEngine:
    def __init__(self, *, label_cache_bytes: int, store_factory: Callable[[], ClassifierStore] | None = None,
                 max_classifiers: int = 1000, in_process: bool = False,
                 image_models: Callable[[], list[str]] | None = None) -> None:
        self.labels = LabelCache(label_cache_bytes)
        self._store_factory = store_factory
        self._store: ClassifierStore | None = None
        self._store_lock = threading.Lock()
        self.max_classifiers = max_classifiers
        self.in_process = in_process
        self._image_models = image_models

    # ------------------------------------------------------------------ zero-shot
    async def zero_shot(self, service: ModelService, inputs: list[EmbedInput], labels: LabelSet) -> ClassifyResult:
        self._check(service, inputs)
        input_task, label_task = classify_tasks(service.spec)
        unique = labels.unique()
        keys = [LabelKey(service.id, label_task, label) for label in unique]

        async def compute(missing: list[LabelKey]) -> list[LabelVector]:
            opts = self._options(label_task)
            results = await asyncio.gather(*(service.embed([EmbedInput(text=k.label)], opts) for k in missing))
            return [LabelVector(r.vectors[0], r.total_tokens) for r in results]

        (x, input_tokens), label_vectors = await asyncio.gather(
            self._embed(service, inputs, input_task), self.labels.get_many(keys, compute))
        by_label = dict(zip(unique, label_vectors, strict=True))

        def score() -> list[tuple[str | None, list[str], np.ndarray]]:
            return [(name, list(group), softmax(cosine_similarity(
                x, np.stack([by_label[label].vector for label in group])).astype(np.float64)))
                for name, group in labels.groups]

        groups = await _off_loop(score, x.shape[0] * len(unique) * x.shape[1])
        return ClassifyResult(groups, input_tokens + sum(v.n_tokens for v in label_vectors), service.id)

    # ------------------------------------------------------------------ few-shot
    async def train(self, *, owner: str, inputs: list[EmbedInput], labels: list[str], num_iters: int,
                    service: ModelService | None = None, classifier_id: str | None = None,
                    access: str = "public", resolve: Callable[[str], ModelService] | None = None) -> TrainResult:
        """Create a classifier on `service`'s model, or (with `classifier_id`) keep training one."""
        if not 1 <= num_iters <= MAX_NUM_ITERS:
            raise ValidationFailedError([FieldError("body -> num_iters", f"num_iters must be between 1 and "
                                                    f"{MAX_NUM_ITERS}", "value_error", num_iters)])
        errors = [FieldError(f"body -> input -> {i} -> label", problem, "value_error")
                  for i, problem in enumerate(map(label_problem, labels)) if problem]
        if errors:
            raise ValidationFailedError(errors[:10])
        store = self.store()
        record: ClassifierRecord | None = None
        if classifier_id is not None:
            record = await asyncio.to_thread(store.get, classifier_id)
            if record is None or record.owner != owner:
                raise _not_found(classifier_id)
            service = self._service_of(record, resolve)
            clf = await asyncio.to_thread(SoftmaxClassifier.from_bytes, record.labels, record.state or b"")
            task = record.input_task
        else:
            if service is None:
                raise InvalidInputError("Name the model to train on (field `model`), or send the classifier_id "
                                        "of a classifier to update")
            if len(set(labels)) < 2:
                raise InvalidLabelsError("Invalid training labels: a new classifier needs examples of at least two "
                                         "different labels")
            clf = None
            task = classify_tasks(service.spec)[0]
        classes = set(labels) | set(record.labels if record else ())
        if len(classes) > MAX_CLASSES:
            raise LabelLimitError([FieldError("body -> input", f"Label limit exceeded: {len(classes)} labels, at "
                                              f"most {MAX_CLASSES} allowed per classifier", "too_long")])
        self._check(service, inputs)
        x, tokens = await self._embed(service, inputs, task)
        if clf is None:
            clf = SoftmaxClassifier.empty(x.shape[1])
        else:
            _check_dims(record, x)
        await asyncio.to_thread(clf.fit, x, labels, num_iters)

        now = time.time()
        if record is None:
            record = ClassifierRecord(
                id=str(uuid.uuid4()), owner=owner, model=service.id, input_task=task, dims=clf.dims,
                labels=clf.labels, access=access, state=clf.to_bytes(), num_samples=len(labels), created_at=now,
                updated_at=now)
            await asyncio.to_thread(store.create, record, max_per_owner=self.max_classifiers)
        else:
            version = record.version
            record.labels, record.state = clf.labels, clf.to_bytes()
            record.num_samples += len(labels)
            record.updated_at, record.updated_number = now, record.updated_number + 1
            if not await asyncio.to_thread(store.replace, record, expected_version=version):
                raise ConflictError(f"Classifier '{record.id}' was changed or deleted by another request while "
                                    f"this one trained it; send the training request again")
        return TrainResult(record.id, len(labels), tokens, service.id)

    async def few_shot(self, *, owner: str, classifier_id: str, inputs: list[EmbedInput],
                       resolve: Callable[[str], ModelService]) -> ClassifyResult:
        store = self.store()
        record = await asyncio.to_thread(store.get, classifier_id)
        if record is None or (record.owner != owner and record.access != "public"):
            raise _not_found(classifier_id)
        service = self._service_of(record, resolve)
        self._check(service, inputs)
        x, tokens = await self._embed(service, inputs, record.input_task)
        _check_dims(record, x)
        clf = SoftmaxClassifier.from_bytes(record.labels, record.state or b"")
        probs = await _off_loop(lambda: clf.predict_proba(x), x.shape[0] * len(clf.labels) * x.shape[1])
        await asyncio.to_thread(store.mark_used, record.id, time.time())
        return ClassifyResult([(None, list(clf.labels), probs)], tokens, service.id)

    async def list_classifiers(self, owner: str) -> list[ClassifierRecord]:
        return await asyncio.to_thread(self.store().owned_by, owner)

    async def delete(self, owner: str, classifier_id: str) -> None:
        if not await asyncio.to_thread(self.store().delete, classifier_id, owner):
            raise _not_found(classifier_id)

    # ------------------------------------------------------------------ helpers
    def store(self) -> ClassifierStore:
        """The classifier store, opened on first use (servers that never train never create it)."""
        if self._store is None:
            if self._store_factory is None:
                raise InvalidInputError("Trained classifiers need a store; none is configured here")
            with self._store_lock:
                if self._store is None:
                    self._store = self._store_factory()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        self.labels.clear()

    def _options(self, task: str | None) -> EmbedOptions:
        # Inputs longer than the model's context are cut to it (classify has no `truncate` field).
        return EmbedOptions(task=task, truncate=True, normalized=True, in_process=self.in_process)

    async def _embed(self, service: ModelService, inputs: list[EmbedInput], task: str | None) -> tuple[np.ndarray, int]:
        result = await service.embed(inputs, self._options(task))
        return np.stack(result.vectors), result.total_tokens

    def _check(self, service: ModelService, inputs: list[EmbedInput]) -> None:
        if service.kind != "embedding":
            raise InvalidInputError(f"Model {service.id!r} is a reranker; classification needs an embedding model")
        if service.family.multi_vector_only:
            raise ValidationFailedError([FieldError(
                "body -> model", f"Model {service.id!r} returns one vector per token (multi-vector); classification "
                "needs a model with one vector per input", "value_error", service.id)])
        images = [i for i, x in enumerate(inputs) if x.image is not None]
        if images and not service.family.embeds_images:
            others = self._image_models() if self._image_models else []
            hint = (f"models served here that take images: {', '.join(others)}" if others
                    else "no model served here takes images")
            raise ValidationFailedError([FieldError(
                f"body -> input -> {images[0]}", f"Model {service.id!r} embeds text only and cannot classify "
                f"images; {hint}", "value_error")])

    @staticmethod
    def _service_of(record: ClassifierRecord, resolve: Callable[[str], ModelService] | None) -> ModelService:
        if resolve is None:
            raise InvalidInputError(f"Classifier '{record.id}' uses model {record.model!r}, which is not available")
        return resolve(record.model)


INLINE_MAX_OPS = 2_000_000  # multiply-adds done on the event loop itself (~1 ms); more goes to a thread


async def _off_loop(fn: Callable[[], Any], ops: int) -> Any:
    return fn() if ops <= INLINE_MAX_OPS else await asyncio.to_thread(fn)


def _check_dims(record: ClassifierRecord | None, x: np.ndarray) -> None:
    if record is not None and x.shape[1] != record.dims:
        raise InvalidInputError(
            f"Classifier '{record.id}' was trained on {record.dims}-dimensional embeddings of {record.model!r}, "
            f"but that model now gives {x.shape[1]} dimensions (different weights under the same name); train a "
            f"new classifier")


def _not_found(classifier_id: str) -> ResourceNotFoundError:
    shown = classifier_id if len(classifier_id) <= 100 else classifier_id[:100] + "..."
    return ResourceNotFoundError(f"Classifier '{shown}' not found or access denied. List yours with "
                         f"GET /v1/classifiers; train one with POST /v1/train.")
