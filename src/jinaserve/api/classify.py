"""Classification endpoints: `POST /v1/classify` (zero-shot and few-shot), `POST /v1/train`,
`GET|POST /v1/classifiers`, `DELETE /v1/classifiers/{id}` (hosted Jina API shapes; docs/classify.md)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..classify import ANONYMOUS, MAX_INPUTS, ClassifyEngine, ClassifyResult, LabelSet
from ..engine.registry import ModelRegistry
from ..engine.service import ModelService
from ..store import open_database
from ..store.classifiers import ClassifierRecord, SQLiteClassifierStore
from .auth import check_api_key
from .protocols.jina import parse_inputs
from .protocols.jina_classify import ClassifyRequest, TrainRequest, parse_train_items
from .responses import JSONBytes, dumps

router = APIRouter(dependencies=[Depends(check_api_key)], tags=["classification"])
DEFAULT_NUM_ITERS = 10  # hosted default
INLINE_MAX_SCORES = 2048  # (input, label) scores serialised on the event loop; bigger bodies in a thread


def classify_engine(request: Request) -> ClassifyEngine:
    """The app's engine (label cache + classifier store), made on first use; the store's database is
    opened only when a classifier is trained, listed or used."""
    state = request.app.state
    engine = getattr(state, "classify_engine", None)
    if engine is None:
        settings = state.settings
        registry: ModelRegistry = state.registry
        engine = ClassifyEngine(
            label_cache_bytes=int(settings.classify_label_cache_mb * 1024 * 1024),
            store_factory=lambda: SQLiteClassifierStore(open_database(settings.data_dir)),
            max_classifiers=settings.max_classifiers,
            image_models=lambda: sorted(s.id for s in registry.services.values()
                                        if s.kind == "embedding" and s.family.embeds_images))
        state.classify_engine = engine
    return engine


def owner_of(request: Request) -> str:
    """Who owns the classifiers a request creates: a UUID derived from its API key (hash, never the key),
    or one shared owner when the server has no keys."""
    if not request.app.state.settings.api_keys:
        return ANONYMOUS
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return str(uuid.UUID(bytes=hashlib.sha256(token.encode()).digest()[:16]))


def _resolver(request: Request):
    registry: ModelRegistry = request.app.state.registry

    def resolve(model: str) -> ModelService:
        return registry.get(model, "embedding")

    return resolve


@router.post("/v1/classify", summary="Classify text or images: zero-shot with labels, or with a trained classifier")
async def classify(request: Request, body: ClassifyRequest) -> Response:
    body.check_mode()
    settings = request.app.state.settings
    engine = classify_engine(request)
    labels = LabelSet.parse(body.labels) if body.labels is not None else None
    inputs = parse_inputs(body.input, max_inputs=MAX_INPUTS, max_chars=settings.max_input_chars)
    result: ClassifyResult
    if labels is not None:
        service = request.app.state.registry.get(body.model, "embedding")
        request.state.model = service.id
        result = await engine.zero_shot(service, inputs, labels)
    else:
        result = await engine.few_shot(owner=owner_of(request), classifier_id=str(body.classifier_id),
                                       inputs=inputs, resolve=_resolver(request))
    request.state.model = result.model
    request.state.inputs = len(inputs)
    request.state.tokens = result.total_tokens

    def body() -> bytes:
        return dumps({"usage": {"total_tokens": result.total_tokens}, "data": result.items()})

    # 512 inputs × 512 labels is 262,144 {label, score} objects (~12 MB): built off the event loop
    return JSONBytes(body() if result.size <= INLINE_MAX_SCORES else await asyncio.to_thread(body))


@router.post("/v1/train", summary="Train a few-shot classifier, or keep training one (classifier_id)")
async def train(request: Request, body: TrainRequest) -> Response:
    settings = request.app.state.settings
    engine = classify_engine(request)
    inputs, labels = parse_train_items(body.input, max_items=MAX_INPUTS, max_chars=settings.max_input_chars)
    service = None
    if body.classifier_id is None:
        service = request.app.state.registry.get(body.model, "embedding")
    result = await engine.train(
        owner=owner_of(request), inputs=inputs, labels=labels, service=service, classifier_id=body.classifier_id,
        num_iters=DEFAULT_NUM_ITERS if body.num_iters is None else body.num_iters, access=body.access or "public",
        resolve=_resolver(request))
    request.state.model = result.model
    request.state.inputs = len(inputs)
    request.state.tokens = result.total_tokens
    return JSONBytes(dumps({"classifier_id": result.classifier_id, "num_samples": result.num_samples,
                            "usage": {"total_tokens": result.total_tokens}}))


@router.get("/v1/classifiers", summary="List the caller's trained classifiers")
@router.post("/v1/classifiers", include_in_schema=False)
async def list_classifiers(request: Request) -> Response:
    """List the caller's trained classifiers."""
    records = await classify_engine(request).list_classifiers(owner_of(request))
    return JSONBytes(dumps([_summary(r) for r in records]))


@router.delete("/v1/classifiers/{classifier_id}", summary="Delete a trained classifier")
async def delete_classifier(request: Request, classifier_id: str) -> Response:
    await classify_engine(request).delete(owner_of(request), classifier_id)
    return JSONBytes(dumps({"classifier_id": classifier_id, "deleted": True}))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _summary(r: ClassifierRecord) -> dict:
    """The hosted `ClassifierSummary` fields (metadata_: the facts jinaserve adds)."""
    return {"classifier_id": r.id, "user_id": r.owner, "model": r.model, "labels": r.labels, "access": r.access,
            "updated_number": r.updated_number, "used_number": r.used_number, "created_at": _iso(r.created_at),
            "updated_at": _iso(r.updated_at), "used_at": _iso(r.used_at), "is_active": True, "is_latest": True,
            "metadata_": {"num_samples": r.num_samples, "dims": r.dims, "input_task": r.input_task}}
