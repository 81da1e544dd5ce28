"""FLOPs of a forward pass from an architecture's shapes (config.json), for the MFU column.

Counted: every matmul of the encoder/decoder stack (2 FLOPs per multiply-add): attention projections
(q, k, v with grouped-query heads, o), the attention scores and the weighted sum (each 2·T·d per token per
layer for a sequence of T tokens), and the MLP (2 matrices, or 3 for gated/SwiGLU MLPs). Not counted:
embeddings (a gather), norms, activations, softmax, pooling (all O(H) per token, < 1% here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GATED = {"qwen2", "qwen3", "llama", "mistral", "eurobert", "gemma", "gemma2", "gemma3"}


def shapes(config: dict[str, Any]) -> dict[str, Any]:
    h = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or h // heads)
    kv = int(config.get("num_key_value_heads") or heads)
    return {"hidden": h, "layers": int(config["num_hidden_layers"]), "inter": int(config["intermediate_size"]),
            "q_dim": heads * head_dim, "kv_dim": kv * head_dim,
            "gated": str(config.get("model_type", "")).lower() in GATED}


def flops_per_token(config: dict[str, Any], seq_len: float) -> float:
    """Forward FLOPs per token of a sequence of `seq_len` tokens."""
    s = shapes(config)
    h, q, kv = s["hidden"], s["q_dim"], s["kv_dim"]
    proj = 2 * (h * q + 2 * h * kv + q * h)
    mlp = 2 * (3 if s["gated"] else 2) * h * s["inter"]
    attn = 2 * 2 * seq_len * q
    return float(s["layers"] * (proj + mlp + attn))


def config_of(folder: Path) -> dict[str, Any]:
    """config.json of a checkpoint folder (a sentence-transformers folder keeps it in the root)."""
    return json.loads((Path(folder) / "config.json").read_text())


def params_matmul(config: dict[str, Any]) -> int:
    """Weights that take part in matmuls (for the record next to MFU)."""
    s = shapes(config)
    h = s["hidden"]
    return s["layers"] * (h * s["q_dim"] + 2 * h * s["kv_dim"] + s["q_dim"] * h
                          + (3 if s["gated"] else 2) * h * s["inter"])
