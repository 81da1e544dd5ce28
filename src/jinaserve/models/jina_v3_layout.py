"""Checkpoint layouts of jina-embeddings-v3 and how each maps onto transformers' native class.

Two published layouts hold the same model:

1. `jinaai/jina-embeddings-v3-hf` (native): `config.json` with `model_type: jina_embeddings_v3`, base weights
   that `JinaEmbeddingsV3Model.from_pretrained` reads, and one PEFT LoRA folder per task
   (`retrieval_query/`, `retrieval_passage/`, `separation/`, `classification/`, `text_matching/`), each with
   `adapter_config.json` (r, lora_alpha, target_modules) and `adapter_model.safetensors`
   (`base_model.model.<module>.lora_A.weight` (r, in) / `lora_B.weight` (out, r) for linear layers,
   `<module>.lora_embedding_A` (r, num) / `lora_embedding_B` (dim, r) for embeddings).

2. `jinaai/jina-embeddings-v3` (remote code, `xlm-roberta-flash-implementation`): `config.json` with
   `model_type: xlm-roberta`, `lora_adaptations` (task order), `lora_rank`, `lora_alpha`, `rotary_emb_base`;
   one weight file whose keys live under `roberta.` and use the flash-attention names. Every Linear and
   Embedding is wrapped by `torch.nn.utils.parametrize`, so its weight is stored as
   `<module>.parametrizations.weight.original` and the LoRA factors of ALL tasks are stacked in
   `<module>.parametrizations.weight.0.lora_A` / `lora_B`:
     Linear    (out, in):  lora_A (T, r, in),  lora_B (T, out, r);  W_t = W + lora_B[t] @ lora_A[t] * alpha/r
     Embedding (num, dim): lora_A (T, num, r), lora_B (T, r, dim);  W_t = W + lora_A[t] @ lora_B[t] * alpha/r
   with t the index of the task in `lora_adaptations`.

Key mapping, remote → native (after dropping `roberta.` and `.parametrizations.weight.original` → `.weight`):
   emb_ln.*                          → embeddings.LayerNorm.*
   embeddings.word_embeddings.*      → embeddings.word_embeddings.*      (LoRA: embedding)
   embeddings.token_type_embeddings.*→ embeddings.token_type_embeddings.* (LoRA: embedding)
   encoder.layers.N.mixer.Wqkv.*     → layers.N.self_attn.{q,k,v}_proj.*  (rows split in 3; LoRA: A shared,
                                                                          B split in 3)
   encoder.layers.N.mixer.out_proj.* → layers.N.self_attn.o_proj.*
   encoder.layers.N.mlp.fc1/fc2.*    → layers.N.mlp.fc1/fc2.*
   encoder.layers.N.norm1.*          → layers.N.post_attention_layernorm.*
   encoder.layers.N.norm2.*          → layers.N.post_mlp_layernorm.*
   pooler.dense.*                    → pooler.dense.*   (unused by mean pooling)
The same module-name mapping is applied to PEFT adapter keys, so adapters saved with either naming load; an
adapter on a fused `mixer.Wqkv` is split like the weight: B by output rows, A shared (one rank-r pair, as in
the remote code) or also split when it holds three stacked rank-r A's (q, k, v pairs concatenated).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import ModelLoadError

log = logging.getLogger("jinaserve.models.jina_v3")

Layout = Literal["hf", "remote"]

_LAYER_RENAMES: tuple[tuple[str, str], ...] = (
    ("mixer.out_proj", "self_attn.o_proj"),
    ("norm1", "post_attention_layernorm"),
    ("norm2", "post_mlp_layernorm"),
    ("mlp.fc1", "mlp.fc1"),
    ("mlp.fc2", "mlp.fc2"),
)
_QKV = ("q_proj", "k_proj", "v_proj")


@dataclass
class LoRAWeight:
    """One module's LoRA factors for one task, in a fixed orientation.

    linear:    a (r, in),  b (out, r):  delta W = b @ a * scale          (shape of nn.Linear.weight)
    embedding: a (num, r), b (r, dim):  delta W = a @ b * scale          (shape of nn.Embedding.weight)
    """

    kind: Literal["linear", "embedding"]
    a: torch.Tensor
    b: torch.Tensor
    scale: float

    def delta(self) -> torch.Tensor:
        a, b = self.a.float(), self.b.float()
        return (b @ a if self.kind == "linear" else a @ b) * self.scale


TaskAdapters = dict[str, LoRAWeight]  # native module path -> LoRA factors


# ----------------------------------------------------------------------------------------------- names
def map_module(path: str) -> list[tuple[str, int | None]]:
    """Native module path(s) for a module path in either layout; with the Wqkv split, each target carries
    its chunk index (0, 1, 2) along the output rows."""
    p = path
    for prefix in ("base_model.model.", "roberta."):
        if p.startswith(prefix):
            p = p[len(prefix):]
    if p == "emb_ln":
        return [("embeddings.LayerNorm", None)]
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", p)
    if m is None:
        return [(p, None)]
    layer, rest = m.group(1), m.group(2)
    if rest == "mixer.Wqkv":
        return [(f"layers.{layer}.self_attn.{name}", i) for i, name in enumerate(_QKV)]
    for old, new in _LAYER_RENAMES:
        if rest == old:
            return [(f"layers.{layer}.{new}", None)]
    return [(f"layers.{layer}.{rest}", None)]


def _chunk(t: torch.Tensor, index: int | None, dim: int = 0) -> torch.Tensor:
    return t if index is None else t.chunk(3, dim=dim)[index].contiguous()


# ----------------------------------------------------------------------------------------------- detection
def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a jina-embeddings-v3 checkpoint")
    return json.loads(path.read_text())


def detect_layout(config: dict[str, Any]) -> Layout:
    if config.get("model_type") == "jina_embeddings_v3":
        return "hf"
    archs = config.get("architectures") or []
    auto_map = config.get("auto_map") or {}
    remote_code = any("modeling_lora" in str(v) for v in (auto_map.values() if isinstance(auto_map, dict) else []))
    if "lora_adaptations" in config or "XLMRobertaLoRA" in archs or remote_code:
        return "remote"
    raise ModelLoadError(
        f"not a jina-embeddings-v3 checkpoint: model_type {config.get('model_type')!r}, architectures {archs}; "
        f"expected the native layout (model_type jina_embeddings_v3) or the remote-code layout "
        f"(XLMRobertaLoRA with lora_adaptations)")


# ----------------------------------------------------------------------------------------------- PEFT adapters
def read_peft_adapter(folder: Path) -> TaskAdapters:
    """A PEFT LoRA folder → {native module path: LoRAWeight}."""
    cfg_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
    if not cfg_file.is_file():
        raise ModelLoadError(f"adapter folder {folder} has no adapter_config.json")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ModelLoadError(f"{folder}: unsupported PEFT type {cfg.get('peft_type')!r} (LoRA expected)")
    if cfg.get("use_dora"):
        raise ModelLoadError(f"{folder}: DoRA adapters are not supported")
    if weights_file.is_file():
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    elif (folder / "adapter_model.bin").is_file():
        state = torch.load(str(folder / "adapter_model.bin"), map_location="cpu", weights_only=True)
    else:
        raise ModelLoadError(f"adapter folder {folder} has no adapter_model.safetensors")
    alpha_pattern: dict[str, float] = cfg.get("alpha_pattern") or {}
    rank_pattern: dict[str, int] = cfg.get("rank_pattern") or {}

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        m = re.fullmatch(r"(.+)\.(lora_A|lora_B)(?:\.[^.]+)?\.weight|(.+)\.(lora_embedding_A|lora_embedding_B)"
                         r"(?:\.[^.]+)?", key)
        if m is None:
            raise ModelLoadError(f"{folder}: unexpected adapter tensor {key!r}")
        module, part = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        pairs.setdefault(module, {})[part] = tensor

    out: TaskAdapters = {}
    for module, parts in pairs.items():
        short = module.removeprefix("base_model.model.")
        rank = _pattern_value(short, rank_pattern, cfg.get("r", 8))
        alpha = _pattern_value(short, alpha_pattern, cfg.get("lora_alpha", rank))
        scale = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
        if "lora_A" in parts and "lora_B" in parts:
            a, b = parts["lora_A"], parts["lora_B"]  # (r, in), (out, r)
            if cfg.get("fan_in_fan_out"):
                raise ModelLoadError(f"{folder}: fan_in_fan_out adapters are not supported")
            fused_a = a.shape[0] == 3 * b.shape[1]  # a fused Wqkv saved as concatenated per-projection pairs
            for target, idx in map_module(module):
                out[target] = LoRAWeight("linear", _chunk(a, idx) if fused_a else a, _chunk(b, idx), scale)
        elif "lora_embedding_A" in parts and "lora_embedding_B" in parts:
            a, b = parts["lora_embedding_A"], parts["lora_embedding_B"]  # (r, num), (dim, r)
            for target, _ in map_module(module):
                out[target] = LoRAWeight("embedding", a.T.contiguous(), b.T.contiguous(), scale)
        else:
            raise ModelLoadError(f"{folder}: incomplete LoRA pair for {module!r}: {sorted(parts)}")
    if not out:
        raise ModelLoadError(f"adapter folder {folder} holds no LoRA weights")
    return out


def _pattern_value(module: str, pattern: dict[str, Any], default: Any) -> Any:
    for key, value in pattern.items():
        if module == key or module.endswith("." + key) or re.fullmatch(key, module):
            return value
    return default


# ----------------------------------------------------------------------------------------------- remote layout
def native_config_from_remote(config: dict[str, Any]) -> Any:
    """The `JinaEmbeddingsV3Config` equivalent to a remote-code (XLMRobertaFlashConfig) config."""
    from transformers import JinaEmbeddingsV3Config

    if config.get("position_embedding_type", "rotary") not in ("rotary", "absolute"):
        raise ModelLoadError(f"unsupported position_embedding_type {config.get('position_embedding_type')!r}")
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "layer_norm_eps", "max_position_embeddings", "type_vocab_size", "pad_token_id",
            "bos_token_id", "eos_token_id", "initializer_range")
    kwargs = {k: config[k] for k in keys if k in config}
    kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": float(config.get("rotary_emb_base",
                                                                                          20000.0))}
    return JinaEmbeddingsV3Config(**kwargs)


def read_weight_files(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (single or sharded safetensors, else pytorch_model.bin)."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for name in files:
            state.update(load_file(str(folder / name)))
        return state
    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    raise ModelLoadError(f"{folder} holds no model.safetensors / pytorch_model.bin")


def convert_remote_state(state: dict[str, torch.Tensor], lora_adaptations: list[str],
                         lora_alpha: float) -> tuple[dict[str, torch.Tensor], dict[str, TaskAdapters]]:
    """Remote-code tensors → (native state dict, {task name: adapters})."""
    native: dict[str, torch.Tensor] = {}
    adapters: dict[str, TaskAdapters] = {task: {} for task in lora_adaptations}
    lora: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        m = re.fullmatch(r"(.+)\.parametrizations\.weight\.(original|0\.lora_A|0\.lora_B)", key)
        if m is not None:
            module, part = m.group(1), m.group(2)
            if part == "original":
                for target, idx in map_module(module):
                    native[f"{target}.weight"] = _chunk(tensor, idx)
            else:
                lora.setdefault(module, {})[part[2:]] = tensor
            continue
        module, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias"):
            log.debug("ignoring remote tensor %s", key)
            continue
        for target, idx in map_module(module):
            native[f"{target}.{leaf}"] = _chunk(tensor, idx)

    for module, parts in lora.items():
        if set(parts) != {"lora_A", "lora_B"}:
            raise ModelLoadError(f"incomplete LoRA parametrization for {module!r}: {sorted(parts)}")
        a_all, b_all = parts["lora_A"], parts["lora_B"]
        if a_all.shape[0] != len(lora_adaptations):
            raise ModelLoadError(f"{module}: {a_all.shape[0]} stacked adapters but lora_adaptations lists "
                                 f"{len(lora_adaptations)}")
        is_embedding = module.endswith("embeddings")
        for t, task in enumerate(lora_adaptations):
            a, b = a_all[t], b_all[t]
            if is_embedding:  # a (num, r), b (r, dim)
                rank = a.shape[1]
                for target, _ in map_module(module):
                    adapters[task][target] = LoRAWeight("embedding", a, b, lora_alpha / rank)
            else:  # a (r, in), b (out, r)
                rank = a.shape[0]
                for target, idx in map_module(module):
                    adapters[task][target] = LoRAWeight("linear", a, _chunk(b, idx), lora_alpha / rank)
    return native, adapters


def build_native_model(config: Any, state: dict[str, torch.Tensor], *, device: str, dtype: torch.dtype,
                       attn_implementation: str = "sdpa") -> Any:
    """A `JinaEmbeddingsV3Model` holding `state` (native names), without random initialisation."""
    from transformers import JinaEmbeddingsV3Model

    config._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = JinaEmbeddingsV3Model(config)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    if missing:
        raise ModelLoadError(f"remote-code checkpoint lacks {len(missing)} weights, e.g. {missing[:5]}")
    if result.unexpected_keys:
        log.debug("ignored %d remote tensors: %s", len(result.unexpected_keys), result.unexpected_keys[:5])
    if any(k.startswith("pooler.") for k in result.missing_keys):
        model.pooler = None  # not in the checkpoint and not used by mean pooling
    # non-persistent buffers (RoPE inverse frequencies) were created on the meta device
    model.rotary_emb = type(model.rotary_emb)(config)
    emb = model.embeddings
    for name in ("position_ids", "token_type_ids"):  # XLM-R's non-persistent index buffers
        buf = getattr(emb, name, None)
        if isinstance(buf, torch.Tensor) and buf.is_meta:
            value = torch.arange(buf.shape[-1]).expand(buf.shape) if name == "position_ids" else \
                torch.zeros(buf.shape, dtype=buf.dtype)
            emb.register_buffer(name, value.to(buf.dtype), persistent=False)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise ModelLoadError(f"remote-code checkpoint lacks weights: {leftover[:5]}")
    model.eval()
    model.to(device=device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_remote_checkpoint(folder: Path, config: dict[str, Any], *, device: str, dtype: torch.dtype,
                           default_adaptations: list[str]) -> tuple[Any, dict[str, TaskAdapters]]:
    adaptations = list(config.get("lora_adaptations") or default_adaptations)
    native_state, adapters = convert_remote_state(read_weight_files(folder), adaptations,
                                                  float(config.get("lora_alpha", 1.0)))
    model = build_native_model(native_config_from_remote(config), native_state, device=device, dtype=dtype)
    return model, adapters
