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
class Detect:
    """One way to recognise a checkpoint folder as a catalog row, whatever the folder is called.

    Every condition that is given must hold (an empty rule never matches). The rule format, the priority
    order between matching rules and the folder facts they read are documented in docs/architecture.md
    ("Adding a model family"); `jinaserve inspect FOLDER` shows which rule matched.
    """

    architectures: tuple[str, ...] = ()  # config.json `architectures` names one of these
    model_type: tuple[str, ...] = ()  # config.json `model_type` is one of these
    auto_map: tuple[str, ...] = ()  # some config.json `auto_map` value contains one of these substrings
    config_keys: tuple[str, ...] = ()  # each key is in config.json with a non-empty value
    # dotted key -> expected: the value equals it, is one of them (a tuple), or (a list value) contains it
    config: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # each glob (relative to the folder) matches a file or folder
    no_files: tuple[str, ...] = ()  # no glob matches
    st_modules: tuple[str, ...] = ()  # modules.json lists a module whose type contains one of these
    st_prompts: dict[str, str] = field(default_factory=dict)  # config_sentence_transformers.json prompts
    priority: int = 0  # breaks a tie between equally specific rules of different rows (higher wins)
    layout: str = ""  # what the rule recognises, for logs and `jinaserve inspect` (not a condition)

    @property
    def specificity(self) -> int:
        """How many facts the rule checks: the more, the more specific (the better match)."""
        return (bool(self.architectures) + bool(self.model_type) + bool(self.auto_map) + bool(self.st_modules)
                + len(self.config_keys) + len(self.config) + len(self.files) + len(self.no_files)
                + len(self.st_prompts))


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
    # How a local folder of this model is recognised from its own files (see `Detect`). The older keys
    # `extra["detect_architectures"]` (+ `extra["detect_config"]`: dotted key -> allowed values) still work:
    # they count as `Detect(architectures=..., config={key: (allowed, ...)})`.
    detect: tuple[Detect, ...] = ()

    @property
    def detect_rules(self) -> tuple[Detect, ...]:
        legacy = tuple(self.extra.get("detect_architectures", ()))
        if not legacy:
            return self.detect
        allowed = {k: tuple(v) for k, v in (self.extra.get("detect_config") or {}).items()}
        return (*self.detect, Detect(architectures=legacy, config=allowed))

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
