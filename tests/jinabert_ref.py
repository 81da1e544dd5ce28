"""An independent float64 JinaBERT forward, written op by op from the published modeling code (it calls no
jinaserve code): ALiBi attention (slopes 2^(-8k/heads) for a power-of-two head count), the GLU MLP, and the
qk-post-norm variant of jina-embeddings-v2-base-code. Shared by the text-model and the jina-clip/colbert/
reranker-v1 references."""

from __future__ import annotations

import math

import torch


def layer_norm(x: torch.Tensor, sd: dict, name: str, eps: float = 1e-12) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def linear(x: torch.Tensor, sd: dict, name: str) -> torch.Tensor:
    y = x @ sd[f"{name}.weight"].T
    return y + sd[f"{name}.bias"] if f"{name}.bias" in sd else y


def gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def jinabert_hidden(sd: dict[str, torch.Tensor], ids: list[int], *, heads: int, types: list[int] | None = None,
                    attend: list[int] | None = None, qk_post_norm: bool = False) -> torch.Tensor:
    """Last hidden states (n, H) of one unpadded sequence; `attend` = 0 masks a key out of every attention row."""
    sd = {k: v.double() for k, v in sd.items()}
    n = len(ids)
    x = sd["embeddings.word_embeddings.weight"][ids] + sd["embeddings.token_type_embeddings.weight"][types or [0] * n]
    x = layer_norm(x, sd, "embeddings.LayerNorm")
    h = x.shape[-1]
    d = h // heads
    slopes = torch.tensor([2 ** (-8 * (k + 1) / heads) for k in range(heads)], dtype=torch.float64)
    dist = (torch.arange(n)[None, :] - torch.arange(n)[:, None]).abs().double()
    bias = -slopes[:, None, None] * dist
    if attend is not None:
        bias = bias + torch.tensor([0.0 if a else -1e30 for a in attend], dtype=torch.float64)[None, None, :]
    i = 0
    while f"encoder.layer.{i}.attention.self.query.weight" in sd:
        p = f"encoder.layer.{i}"
        q, k, v = (linear(x, sd, f"{p}.attention.self.{m}") for m in ("query", "key", "value"))
        if qk_post_norm:
            q = layer_norm(q, sd, f"{p}.attention.self.layer_norm_q")
            k = layer_norm(k, sd, f"{p}.attention.self.layer_norm_k")
        q, k, v = (t.view(n, heads, d).transpose(0, 1) for t in (q, k, v))
        probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d) + bias, dim=-1)
        ctx = (probs @ v).transpose(0, 1).reshape(n, h)
        a = layer_norm(linear(ctx, sd, f"{p}.attention.output.dense") + x, sd, f"{p}.attention.output.LayerNorm")
        if qk_post_norm:
            y = layer_norm(x + a, sd, f"{p}.layer_norm_1")
            u = linear(y, sd, f"{p}.mlp.up_gated_layer")
            half = u.shape[-1] // 2
            x = layer_norm(y + linear(u[:, :half] * gelu(u[:, half:]), sd, f"{p}.mlp.down_layer"), sd,
                           f"{p}.layer_norm_2")
        else:
            g = linear(a, sd, f"{p}.mlp.gated_layers")
            half = g.shape[-1] // 2
            x = layer_norm(linear(gelu(g[:, :half]) * g[:, half:], sd, f"{p}.mlp.wo") + a, sd, f"{p}.mlp.layernorm")
        i += 1
    return x
