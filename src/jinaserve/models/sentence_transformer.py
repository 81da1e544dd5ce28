"""Generic sentence-transformers-style bi-encoder: any checkpoint folder with (optionally)
`modules.json`, `1_Pooling/config.json`, `Dense` and `Normalize` modules.

Pooling is read from the folder (mean, cls, last-token, max); without `modules.json` the catalog
row's pooling (default mean) is used.
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
from .loading import LoadOptions
from .text_embedding import TextEmbeddingFamily

log = logging.getLogger("jinaserve.models.st")

_ACTIVATIONS = {
    "torch.nn.modules.linear.Identity": torch.nn.Identity,
    "torch.nn.modules.activation.Tanh": torch.nn.Tanh,
    "torch.nn.modules.activation.ReLU": torch.nn.ReLU,
    "torch.nn.modules.activation.GELU": torch.nn.GELU,
}


def read_st_layout(folder: Path) -> dict[str, Any]:
    """Parse modules.json & co. into {transformer_path, pooling, dense: [...], normalize, max_seq_length,
    prompts}."""
    layout: dict[str, Any] = {"transformer_path": folder, "pooling": None, "dense": [], "normalize": False,
                              "max_seq_length": None, "prompts": {}}
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        for module in json.loads(modules_file.read_text()):
            kind = module.get("type", "").rsplit(".", 1)[-1]
            path = folder / module.get("path", "")
            if kind == "Transformer":
                layout["transformer_path"] = path
                cfg = path / "sentence_bert_config.json"
                if cfg.is_file():
                    layout["max_seq_length"] = json.loads(cfg.read_text()).get("max_seq_length")
            elif kind == "Pooling":
                layout["pooling"] = _pooling_mode(json.loads((path / "config.json").read_text()))
            elif kind == "Dense":
                layout["dense"].append(path)
            elif kind == "Normalize":
                layout["normalize"] = True
            else:
                raise ValueError(f"unsupported sentence-transformers module type {module.get('type')!r}")
    elif (folder / "sentence_bert_config.json").is_file():
        layout["max_seq_length"] = json.loads((folder / "sentence_bert_config.json").read_text()).get(
            "max_seq_length")
    st_cfg = folder / "config_sentence_transformers.json"
    if st_cfg.is_file():
        layout["prompts"] = json.loads(st_cfg.read_text()).get("prompts", {}) or {}
    return layout


def _pooling_mode(cfg: dict[str, Any]) -> str:
    if cfg.get("pooling_mode_lasttoken"):
        return "last"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    if cfg.get("pooling_mode_mean_tokens") or cfg.get("pooling_mode_mean_sqrt_len_tokens"):
        return "mean"
    mode = cfg.get("pooling_mode")
    if mode in {"mean", "cls", "max"}:
        return mode
    if mode == "lasttoken":
        return "last"
    raise ValueError(f"unsupported pooling config {cfg}")


def _load_dense(path: Path, device: str, dtype: torch.dtype) -> torch.nn.Module:
    cfg = json.loads((path / "config.json").read_text())
    linear = torch.nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
    weights_file = path / "model.safetensors"
    if weights_file.is_file():
        from safetensors.torch import load_file

        state = load_file(str(weights_file))
    else:
        state = torch.load(str(path / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    state = {k.removeprefix("linear."): v for k, v in state.items()}
    linear.load_state_dict(state)
    act_name = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
    act = _ACTIVATIONS.get(act_name)
    if act is None:
        raise ValueError(f"unsupported Dense activation {act_name!r}")
    return torch.nn.Sequential(linear, act()).to(device=device, dtype=dtype).eval()


class SentenceTransformerFamily(TextEmbeddingFamily):
    family_name = "sentence_transformer"

    def __init__(self, *args: Any, dense: list[torch.nn.Module] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dense = dense or []

    def postprocess(self, pooled: torch.Tensor, group: Hashable) -> torch.Tensor:
        for layer in self.dense:
            pooled = layer(pooled)
        return pooled

    @classmethod
    def load_gguf(cls, spec: ModelSpec, folder: Path, backbone: Any, opts: Any, **kwargs: Any) -> Any:
        """A GGUF inside a sentence-transformers folder: its Pooling / Dense / max_seq_length apply."""
        if not (folder / "modules.json").is_file():
            return super().load_gguf(spec, folder, backbone, opts, **kwargs)
        layout = read_st_layout(folder)
        dense = [_load_dense(p, "cpu", torch.float32) for p in layout["dense"]]
        return super().load_gguf(spec, folder, backbone, opts, pooling=layout["pooling"],
                                 max_tokens=layout["max_seq_length"],
                                 dims=dense[-1][0].out_features if dense else None, dense=dense)

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> SentenceTransformerFamily:
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from ..runtimes.torch_runtime import (
            auto_cpu_dtype,
            configure_threads,
            load_pretrained,
            select_device,
            select_dtype,
        )

        configure_threads(opts.threads)
        layout = read_st_layout(folder)
        tpath = layout["transformer_path"]
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        model = load_pretrained(AutoModel, tpath, device=device, dtype=dtype)
        model, dtype = auto_cpu_dtype(model, device=device, requested=opts.dtype, fp32_only=spec.fp32_only,
                                      name=spec.id)
        tokenizer = AutoTokenizer.from_pretrained(str(tpath))
        config = AutoConfig.from_pretrained(str(tpath))
        dense = [_load_dense(p, device, dtype) for p in layout["dense"]]
        max_tokens = layout["max_seq_length"] or spec.max_tokens or getattr(config, "max_position_embeddings",
                                                                            512)
        dims = spec.dims
        if dense:
            dims = dense[-1][0].out_features
        dims = dims or getattr(config, "hidden_size", None)
        spec = replace(spec, dims=dims, max_tokens=int(max_tokens),
                       pooling=layout["pooling"] or spec.pooling)  # type: ignore[arg-type]
        log.info("loaded %s from %s (pooling=%s, dims=%s, max_tokens=%s, device=%s, dtype=%s)", spec.id,
                 folder, spec.pooling, dims, max_tokens, device, dtype)
        return cls(spec, model, tokenizer, device=device, dense=dense)
