"""jina-embeddings-v5-text-small (Qwen3 decoder) and -nano (EuroBERT encoder), natively.

Published layout (the base repos): `config.json` with `model_type: jina_embeddings_v5`,
`architectures: [JinaEmbeddingsV5Model]`, `task_names` and an `auto_map` to remote code; apart from
those keys the config is the backbone's own (a Qwen3Config or an EuroBertConfig). The base weights
are the backbone's (`layers.N.self_attn.q_proj.weight`, ..., optionally under `model.`), and each task
has a PEFT LoRA folder `adapters/{retrieval,text-matching,classification,clustering}/` (r 32,
alpha 32, targets q/k/v/o/gate/up/down projections).

We build the native transformers backbone (`Qwen3Model` / `EuroBertModel`) from that config, load
the base weights, and apply the task adapters (merged per task or runtime LoRA, see `lora.py`).
Per-task merged repos (`...-retrieval` etc.) have no `adapters/` folder: their weights already hold
the task's delta, so they load as the plain backbone.

Task → (adapter, prefix) comes from the catalog row: `retrieval.query` → retrieval + "Query: ",
`retrieval.passage` → retrieval + "Document: ", the others → their own adapter + "Document: ".
Pooling: last real token (the mask decides, any padding side), then the service truncates to
`dimensions` and L2-normalises. The tokenizer's own special tokens are kept (the -nano's appends
its end-of-text token, the -small's appends nothing), as the reference `encode` does.

Sources (no hub access here): the adapter folder layout, PEFT key names
(`base_model.model.layers.N.self_attn.q_proj.lora_A.weight`), the merge formula and r/alpha come from
vLLM's `model_executor/models/jina.py` and third-party loaders that read the published files; the
config wrapper keys and the -nano `is_decoder: false` / appended end-of-text token from the same. The
layout of the per-task merged repos (a plain backbone checkpoint with the task merged, no adapters/) is
inferred from vLLM/TEI/llama.cpp serving them without adapter support.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..catalog import ModelSpec
from ..errors import ModelLoadError
from .loading import LoadOptions
from .lora import MergedAdapters, PeftAdapters, load_adapters
from .text_embedding import TextEmbeddingFamily

log = logging.getLogger("jinaserve.models.jina_v5")

# Keys of the published config that belong to the remote-code wrapper, not to the backbone.
_WRAPPER_KEYS = ("auto_map", "model_type", "architectures", "task_names", "transformers_version")
_BACKBONES = {"qwen3": "Qwen3Model", "eurobert": "EuroBertModel", "qwen2": "Qwen2Model"}


def native_config(folder: Path, backbone: str) -> Any:
    """The transformers config of the backbone, from a (possibly remote-code) config.json."""
    from transformers import AutoConfig

    raw = json.loads((folder / "config.json").read_text())
    model_type = raw.get("model_type")
    if model_type in _BACKBONES:
        backbone = model_type
    if backbone not in _BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r} for {folder}; known: {sorted(_BACKBONES)}")
    native = {k: v for k, v in raw.items() if k not in _WRAPPER_KEYS}
    config = AutoConfig.for_model(backbone, **native)
    config.use_cache = False  # embeddings: one forward pass, no KV cache to keep alive
    return config


def load_backbone(folder: Path, config: Any, *, device: str, dtype: torch.dtype) -> Any:
    """The native backbone with SDPA attention; refuses a checkpoint whose weights do not fit it."""
    import transformers

    cls = getattr(transformers, _BACKBONES[config.model_type])
    model, info = cls.from_pretrained(str(folder), config=config, dtype=dtype, attn_implementation="sdpa",
                                      output_loading_info=True)
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if problems:
        raise ValueError(f"{folder}: weights do not match {cls.__name__}: {problems}")
    model.eval()
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_tokenizer(folder: Path, config: Any, padding_side: str) -> Any:
    """The published `tokenizer.json` exactly as shipped (its pre-tokenizer and post-processor decide
    the ids and the appended special tokens), never a class rebuilt from the model type."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (folder / "tokenizer.json").is_file():
        tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    else:
        tok = AutoTokenizer.from_pretrained(str(folder), config=config, trust_remote_code=False)
    tok.padding_side = padding_side
    return tok


def checked_dims(spec: ModelSpec, hidden: int) -> int:
    """The loaded weights decide the vector size (a local folder may hold another size than the row)."""
    if spec.dims and spec.dims != hidden:
        log.warning("%s: the checkpoint's hidden size is %d, the catalog says %d; serving %d-d vectors",
                    spec.id, hidden, spec.dims, hidden)
    return hidden


class JinaV5Family(TextEmbeddingFamily):
    family_name = "jina_v5"

    def __init__(self, *args: Any, adapters: MergedAdapters | PeftAdapters | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adapters = adapters

    @property
    def int8_capable(self) -> bool:  # type: ignore[override]
        return self.adapters is None  # task adapters patch the torch weights; a merged repo is plain

    def forward_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       group: Hashable) -> torch.Tensor:
        if self.adapters is not None:
            self.adapters.activate(group)
        return super().forward_hidden(input_ids, attention_mask, group)

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaV5Family:
        from ..runtimes.torch_runtime import auto_cpu_dtype, configure_threads, select_device, select_dtype

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        config = native_config(folder, spec.extra.get("backbone", "qwen3"))
        model = load_backbone(folder, config, device=device, dtype=dtype)
        model, dtype = auto_cpu_dtype(model, device=device, requested=opts.dtype, fp32_only=spec.fp32_only,
                                      name=spec.id)
        tokenizer = load_tokenizer(folder, config, spec.extra.get("padding_side", "right"))
        adapters = None
        names = sorted({t.adapter for t in spec.tasks if t.adapter})
        if names:
            if not (folder / "adapters").is_dir():
                raise ModelLoadError(f"{folder} has no adapters/ folder; model {spec.id!r} needs the task adapters "
                                     f"{names} (for a per-task merged repo use its own catalog id)")
            keep_base = any(t.adapter is None for t in spec.tasks)
            mode = spec.extra.get("adapter_mode", "merged")
            adapters = load_adapters(model, folder, names, mode, keep_base=keep_base, device=device)
        spec = replace(spec, dims=checked_dims(spec, config.hidden_size))
        log.info("loaded %s from %s (backbone=%s, adapters=%s, device=%s, dtype=%s)", spec.id, folder,
                 config.model_type, adapters.mode if adapters else "none (merged repo)", device, dtype)
        return cls(spec, model, tokenizer, device=device, adapters=adapters,
                   padding_side=spec.extra.get("padding_side", "right"))
