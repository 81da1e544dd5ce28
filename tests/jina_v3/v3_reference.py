"""Independent reference: applies a task's LoRA by explicit math to a plain `JinaEmbeddingsV3Model`."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from v3_builders import ALPHA, HIDDEN, LAYERS, RANK, TinyV3


@lru_cache(maxsize=4)
def _base(folder: str):
    from transformers import JinaEmbeddingsV3Model

    return JinaEmbeddingsV3Model.from_pretrained(folder, attn_implementation="eager").eval()


@lru_cache(maxsize=8)
def _reference_model(folder: str, task: str | None, tiny_id: int):
    return _build_reference(_TINY[tiny_id], task)


_TINY: dict[int, TinyV3] = {}


def reference_model(tiny: TinyV3, task: str | None):
    _TINY[id(tiny)] = tiny
    return _reference_model(str(tiny.folder), task, id(tiny))


def _build_reference(tiny: TinyV3, task: str | None):
    """W_task = W + B @ A * alpha/r on every Linear; E_task = E + A @ B * alpha/r on both embedding tables."""
    model = copy.deepcopy(_base(str(tiny.folder)))
    if task is None:
        return model
    s = ALPHA / RANK
    f = tiny.lora[task]
    with torch.no_grad():
        for emb in ("word_embeddings", "token_type_embeddings"):
            a, b = f[emb]
            getattr(model.embeddings, emb).weight += a @ b * s
        for layer in range(LAYERS):
            blk = model.layers[layer]
            a, b = f[f"{layer}.Wqkv"]
            delta = b @ a * s
            blk.self_attn.q_proj.weight += delta[:HIDDEN]
            blk.self_attn.k_proj.weight += delta[HIDDEN:2 * HIDDEN]
            blk.self_attn.v_proj.weight += delta[2 * HIDDEN:]
            for name, lin in (("out_proj", blk.self_attn.o_proj), ("fc1", blk.mlp.fc1), ("fc2", blk.mlp.fc2)):
                a, b = f[f"{layer}.{name}"]
                lin.weight += b @ a * s
    return model


def hidden_states(tiny: TinyV3, task: str | None, ids: list[int]) -> torch.Tensor:
    model = reference_model(tiny, task)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state[0]


@lru_cache(maxsize=4)
def tokenizer(folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def reference_embedding(tiny: TinyV3, task: str | None, text: str, prefix: str = "") -> np.ndarray:
    """Tokenise prefix + text with the checkpoint's tokenizer, run, mean-pool (one sequence: no padding)."""
    ids = tokenizer(str(Path(tiny.folder)))(prefix + text)["input_ids"]
    return hidden_states(tiny, task, ids).mean(dim=0).numpy()
