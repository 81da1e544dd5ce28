"""Hand-written references for the Jina text tests: the LoRA delta applied by explicit math, the
prompt put in front by string concatenation, the last token taken by index, the JinaBERT forward
written out op by op. None of them calls jinaserve code."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from jinabert_ref import jinabert_hidden

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
def jinabert_mean_vector(folder: Path, ids: list[int], *, heads: int, qk_post_norm: bool) -> np.ndarray:
    """One sequence, no padding: the float64 JinaBERT forward (tests/jinabert_ref.py) → mean over tokens → unit
    length."""
    sd = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    return unit(jinabert_hidden(sd, ids, heads=heads, qk_post_norm=qk_post_norm).mean(0).numpy())


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
