"""The runtime interface a model family calls: token ids in, per-token hidden states out.

A family (in `models/`) owns everything that is the model's knowledge: prompts, task → adapter, pooling,
projectors, how a request becomes batches. A runtime owns only the network's execution. Every runtime
hands the family one `Backbone`:

* `encode(input_ids, attention_mask)` → last hidden states `[batch, tokens, hidden]` (a torch tensor on
  the family's device; rows at padding positions are unspecified and masked by the family's pooling);
* `capabilities`, a set of names the family checks instead of asking which runtime it got:
  - `"module"`: `backbone.module` is a `torch.nn.Module` whose weights the family may patch (task LoRA merged
    into Linear weights, PEFT adapters, vision towers);
  - `"adapters"`: named adapters switched with `use_adapter(key)` (llama.cpp LoRA GGUFs);
  - `"unpadded"`: sequences run without padding (llama.cpp packs them), so padding costs nothing;
* `hidden_size`, `runtime` (a name for logs and `/v1/models`), `close()`.

Runtimes: `torch_runtime.TorchBackbone` (any transformers module), `int8_runtime.OnnxInt8Backbone` (ONNX
Runtime, dynamic int8), `llamacpp_runtime.LlamaCppBackbone` (GGUF). This module imports nothing from
`models/`; nor does any runtime.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import Any

MODULE = "module"
ADAPTERS = "adapters"
UNPADDED = "unpadded"


class Backbone(ABC):
    runtime: str = "?"
    capabilities: frozenset[str] = frozenset()
    hidden_size: int = 0

    @abstractmethod
    def encode(self, input_ids: Any, attention_mask: Any | None) -> Any:
        """Last hidden states [B, T, H] for padded `input_ids` [B, T] (`attention_mask` None = no padding)."""

    def use_adapter(self, key: Hashable | None) -> None:
        """Switch to the adapter `key` (None = base weights); only with the `adapters` capability."""
        if key is not None:
            raise NotImplementedError(f"the {self.runtime} runtime has no switchable adapters")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the runtime holds (files, native memory)."""


def as_backbone(model: Any) -> Backbone:
    """A `Backbone` as is; anything else is taken for a torch module (transformers model)."""
    if isinstance(model, Backbone):
        return model
    from .torch_runtime import TorchBackbone

    return TorchBackbone(model)


__all__ = ["ADAPTERS", "MODULE", "UNPADDED", "Backbone", "as_backbone"]
