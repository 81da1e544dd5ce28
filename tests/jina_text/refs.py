"""Hand-written references for the Jina text tests: the LoRA delta applied by explicit math, the
prompt put in front by string concatenation, the last token taken by index, the JinaBERT forward
written out op by op. None of them calls jinaserve code."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

WRAPPER_KEYS = ("auto_map", "model_type", "architectures", "task_names", "transformers_version")


def raw_tokenize(folder: Path, text: str) -> list[int]:
    """Token ids straight from tokenizer.json (with its post-processor, i.e. its special tokens)."""
    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


def backbone(folder: Path, kind: str) -> torch.nn.Module:
    from transformers import AutoConfig, EuroBertModel, Qwen2Model, Qwen3Model

    raw = {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if k not in WRAPPER_KEYS}
    config = AutoConfig.for_model(kind, **raw)
    config._attn_implementation = "eager"
    cls = {"qwen3": Qwen3Model, "eurobert": EuroBertModel, "qwen2": Qwen2Model}[kind]
    model = cls(config).eval()
    state = {k.removeprefix("model."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    model.load_state_dict(state, strict=True)
    return model


def merge_lora_by_hand(model: torch.nn.Module, adapter: Path) -> torch.nn.Module:
    """W ← W + (alpha / r) · B @ A for every pair in the PEFT file."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    sd = load_file(str(adapter / "adapter_model.safetensors"))
    n = 0
    with torch.no_grad():
        for key, a in sd.items():
            if ".lora_A." not in key:
                continue
            b = sd[key.replace(".lora_A.", ".lora_B.")]
            module = key.removeprefix("base_model.model.").split(".lora_A.")[0]
            model.get_submodule(module).weight += scale * (b @ a)
            n += 1
    assert n > 0
    return model


def last_token_vector(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0, len(ids) - 1]
    v = h.numpy().astype(np.float64)
    return v / np.linalg.norm(v)


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# --------------------------------------------------------------------------------- JinaBERT by hand
def _ln(x: torch.Tensor, sd: dict, name: str, eps: float = 1e-12) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def _lin(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    y = x @ sd[f"{name}.weight"].T
    return y + sd[f"{name}.bias"] if f"{name}.bias" in sd else y


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def jinabert_mean_vector(folder: Path, ids: list[int], *, heads: int, qk_post_norm: bool) -> np.ndarray:
    """One sequence, no padding: embeddings → layers with ALiBi (slopes 2^(-8k/heads) for a power of two
    head count) → mean over tokens → unit length. Float64 throughout."""
    sd = {k.removeprefix("bert."): v.double() for k, v in load_file(str(folder / "model.safetensors")).items()}
    n = len(ids)
    x = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.token_type_embeddings.weight"][0]
    x = _ln(x, sd, "embeddings.LayerNorm")
    hidden = x.shape[-1]
    d = hidden // heads
    slopes = torch.tensor([2 ** (-8 * (k + 1) / heads) for k in range(heads)], dtype=torch.float64)
    dist = (torch.arange(n)[None, :] - torch.arange(n)[:, None]).abs().double()
    bias = -slopes[:, None, None] * dist
    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in sd:
        p = f"encoder.layer.{layer}"
        q, k, v = (_lin(x, sd, f"{p}.attention.self.{m}") for m in ("query", "key", "value"))
        if qk_post_norm:
            q, k = _ln(q, sd, f"{p}.attention.self.layer_norm_q"), _ln(k, sd, f"{p}.attention.self.layer_norm_k")
        q, k, v = (t.view(n, heads, d).transpose(0, 1) for t in (q, k, v))
        probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d) + bias, dim=-1)
        ctx = (probs @ v).transpose(0, 1).reshape(n, hidden)
        a = _ln(_lin(ctx, sd, f"{p}.attention.output.dense") + x, sd, f"{p}.attention.output.LayerNorm")
        if qk_post_norm:
            y = _ln(x + a, sd, f"{p}.layer_norm_1")
            u = _lin(y, sd, f"{p}.mlp.up_gated_layer")
            half = u.shape[-1] // 2
            x = _ln(y + _lin(u[:, :half] * _gelu(u[:, half:]), sd, f"{p}.mlp.down_layer"), sd, f"{p}.layer_norm_2")
        else:
            g = _lin(a, sd, f"{p}.mlp.gated_layers")
            half = g.shape[-1] // 2
            x = _ln(_lin(_gelu(g[:, :half]) * g[:, half:], sd, f"{p}.mlp.wo") + a, sd, f"{p}.mlp.layernorm")
        layer += 1
    return unit(x.mean(0).numpy())


# --------------------------------------------------------------------------------- services
@contextmanager
def service(model_id: str, folder: Path, **extra_overrides):
    """A running ModelService for `folder` under catalog row `model_id` (extra overrides applied)."""
    from jinaserve.catalog import lookup
    from jinaserve.engine.service import ModelService
    from jinaserve.models import family_class
    from jinaserve.models.loading import LoadOptions

    spec = lookup(model_id)
    assert spec is not None
    if extra_overrides:
        spec = replace(spec, extra={**spec.extra, **extra_overrides})
    family = family_class(spec.family).load(spec, folder, LoadOptions(device="cpu", dtype="float32", threads=1))
    svc = ModelService(model_id, family, max_batch_tokens=4096, max_batch_size=16)
    try:
        yield svc
    finally:
        svc.close()


def embed(svc, texts: list[str], **options) -> np.ndarray:
    from jinaserve.jobs import EmbedInput, EmbedOptions

    result = svc.embed_sync([EmbedInput(text=t) for t in texts], EmbedOptions(**options))
    return np.stack(result.vectors)
