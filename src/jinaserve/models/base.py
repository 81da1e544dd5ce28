"""The contract between the engine and a model family.

A family turns a request into `WorkItem`s (tokenised, with a token count for the batcher's budget),
runs batches of item payloads on its runtime, and assembles the per-item outputs back into the
request's result. The engine never looks inside a payload.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import ModelSpec
from ..errors import FieldError, InvalidInputError, ModelLoadError, ValidationFailedError
from ..jobs import EmbedInput, EmbedOptions, RerankJob, RerankResult


@dataclass
class WorkItem:
    """One unit of model work. Items with different `group`s never share a batch."""

    payload: Any
    n_tokens: int
    group: Hashable = None
    # Memory the payload holds besides its token ids, e.g. an image's pixel tensor (the engine caps what
    # all queued items hold: max_queue_image_mb).
    nbytes: int = 0


@dataclass
class EmbedPlan:
    items: list[WorkItem]
    total_tokens: int
    # Maps the per-item outputs (same order as `items`) to one array per request input.
    assemble: Callable[[list[Any]], list[np.ndarray]]
    # Per request input, the token strings its multi-vector rows stand for (only when asked for).
    tokenized: list[list[str]] | None = None


@dataclass
class RerankPlan:
    items: list[WorkItem]
    total_tokens: int
    assemble: Callable[[list[Any]], RerankResult]


class ModelFamily(ABC):
    """Base class of every family. Subclasses implement what their model kind needs."""

    spec: ModelSpec
    device: str = "cpu"
    # Capability: `plan_embed` takes `{"image"}` inputs (multimodal families set it). Code that must know
    # whether a model can embed images (e.g. /v1/classify) asks this, never the model's name.
    embeds_images: bool = False
    # Capability: every input embeds to a matrix (one vector per token, e.g. ColBERT) rather than one vector.
    # Endpoints that need one vector per input (classification, one-vector protocols) refuse such a model
    # before any work is done.
    multi_vector_only: bool = False

    # --- embeddings -------------------------------------------------------------------------
    def plan_embed(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        raise InvalidInputError(f"Model {self.spec.id!r} is a reranker; use /v1/rerank.")

    # --- rerank -----------------------------------------------------------------------------
    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        raise InvalidInputError(f"Model {self.spec.id!r} does not support reranking.")

    # --- execution (worker thread) ----------------------------------------------------------
    @abstractmethod
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        """Run one batch; return one output per payload, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (called on shutdown)."""

    def quantize_int8(self, folder: Path, opts: Any) -> None:
        """Move the backbone to the int8 runtime (`--quantize int8`); families that can, override."""
        raise ModelLoadError(f"Model {self.spec.id!r} ({self.spec.family}) has no int8 path; serve it without "
                             f"--quantize int8")

    # --- shared validation ------------------------------------------------------------------
    def check_embed_options(self, options: EmbedOptions) -> None:
        """Validate task, dimensions and model-specific options against the catalog row."""
        check_embed_options(self.spec, options)

    def resolve_task(self, task: str | None) -> str | None:
        return task if task is not None else self.spec.default_task


def check_embed_options(spec: ModelSpec, options: EmbedOptions) -> None:
    errors: list[FieldError] = []
    if options.task is not None:
        if not spec.tasks:
            # The hosted API ignores `task` for models without tasks (clients such as pymilvus send it).
            options.task = None
        elif spec.task(options.task) is None:
            allowed = ", ".join(spec.task_names)
            errors.append(FieldError("body -> task", f"Model {spec.id!r} has no task {options.task!r}; "
                                     f"allowed tasks: {allowed}", "enum", options.task))
    if options.dimensions is not None:
        max_dims = spec.max_dimensions
        if options.dimensions < 1:
            errors.append(FieldError("body -> dimensions", "Input should be greater than 0",
                                     "greater_than", options.dimensions))
        elif max_dims is not None and options.dimensions > max_dims:
            errors.append(FieldError("body -> dimensions",
                                     f"Input should be less than or equal to {max_dims}",
                                     "less_than_equal", options.dimensions))
    if options.late_chunking and "late_chunking" not in spec.options:
        errors.append(FieldError("body -> late_chunking",
                                 f"Model {spec.id!r} does not support late_chunking", "value_error", True))
    if options.return_multivector and "return_multivector" not in spec.options:
        errors.append(FieldError("body -> return_multivector",
                                 f"Model {spec.id!r} does not support return_multivector", "value_error",
                                 True))
    if options.return_multivector and options.dimensions is not None:
        # single-vector Matryoshka cut; late-interaction families with per-token dimensions handle it themselves
        errors.append(FieldError("body -> dimensions", "dimensions cannot be combined with return_multivector",
                                 "value_error", options.dimensions))
    if options.return_tokenized_input and not options.return_multivector:
        errors.append(FieldError("body -> return_tokenized_input", "return_tokenized_input requires "
                                 "return_multivector", "value_error", True))
    if errors:
        raise ValidationFailedError(errors)


def int8_backbone_for(family: Any, module: Any, folder: Path, opts: Any) -> Any:
    """The int8 runtime's backbone for `module`, the family's torch backbone (CPU, float32, weights unpatched)."""
    from ..runtimes.backbone import MODULE
    from ..runtimes.int8_runtime import int8_backbone

    if MODULE not in family.backbone.capabilities or family.device != "cpu":
        raise ModelLoadError(f"--quantize int8 runs on CPU from a torch backbone; {family.spec.id} is on "
                             f"{family.backbone.runtime} / {family.device}")
    return int8_backbone(module, folder=folder, cache_dir=opts.cache_dir, threads=opts.threads,
                         name=family.spec.id)
