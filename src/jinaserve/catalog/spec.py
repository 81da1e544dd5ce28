"""The row format of the model catalog: everything a family needs to know about one model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["embedding", "rerank"]
Pooling = Literal["mean", "cls", "last", "none"]


@dataclass(frozen=True)
class TaskSpec:
    """One API task: which adapter (LoRA name or per-task checkpoint) and which text prefix it uses."""

    name: str
    adapter: str | None = None
    prefix: str = ""
    description: str = ""


@dataclass(frozen=True)
class GGUFSpec:
    """Where a model's GGUF files live (used by the llama.cpp runtime)."""

    repo: str
    files: dict[str, str] = field(default_factory=dict)  # quant -> filename ("Q8_0" -> "x-Q8_0.gguf")
    default_quant: str = "F16"
    extra_files: tuple[str, ...] = ()  # e.g. projector.safetensors


@dataclass(frozen=True)
class ModelSpec:
    """One catalog row. `family` names the module in `jinaserve.models` that serves it."""

    id: str
    family: str
    kind: Kind
    hf_repo: str | None = None
    revision: str | None = None
    aliases: tuple[str, ...] = ()
    tasks: tuple[TaskSpec, ...] = ()
    default_task: str | None = None
    pooling: Pooling = "mean"
    dims: int | None = None
    matryoshka_dims: tuple[int, ...] = ()
    max_tokens: int = 512
    licence: str = "unknown"
    params: str = ""
    description: str = ""
    # Accepted request options beyond the common ones, e.g. {"late_chunking", "return_multivector"}.
    options: frozenset[str] = frozenset()
    # Normalise by default (the hosted API's `normalized` default is true).
    normalize: bool = True
    # Some models must run in fp32 (ALiBi JinaBERT gives NaNs in fp16).
    fp32_only: bool = False
    gguf: GGUFSpec | None = None
    # Local folder inside an installed Python package, used when the hub is unreachable (bundled models).
    bundled_path: str | None = None
    # Family-specific facts (projector sizes, special tokens, image settings...).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str | None) -> TaskSpec | None:
        if name is None:
            return None
        for t in self.tasks:
            if t.name == name:
                return t
        return None

    @property
    def max_dimensions(self) -> int | None:
        return self.dims
