"""JinaBERT (jina-embeddings-v2): a BERT encoder with ALiBi attention biases and a gated (GLU) MLP.

transformers has no native class for it, so it lives here, written from the published checkpoint
layout (no `trust_remote_code`). Two variants are published:

* `jinaai/jina-bert-implementation` (v2-base-en/-de/-es/-zh, v2-small-en), per layer::

      encoder.layer.N.attention.self.{query,key,value}      Linear(h, h)
      encoder.layer.N.attention.output.{dense,LayerNorm}    post-LN: LN(dense(ctx) + x)
      encoder.layer.N.mlp.gated_layers                      Linear(h, 2i, bias=False)
      encoder.layer.N.mlp.wo                                Linear(i, h)
      encoder.layer.N.mlp.layernorm                         LN(wo(act(g[:i]) * g[i:]) + x)

* `jinaai/jina-bert-v2-qk-post-norm` (v2-base-code), per layer::

      encoder.layer.N.attention.self.{query,key,value}
      encoder.layer.N.attention.self.{layer_norm_q,layer_norm_k}   LN over the full projection
      encoder.layer.N.attention.output.{dense,LayerNorm}           a = LN(dense(ctx) + x)
      encoder.layer.N.layer_norm_1                                 y = LN1(x + a)
      encoder.layer.N.mlp.up_gated_layer                           Linear(h, 2i, bias=False)
      encoder.layer.N.mlp.down_layer                               Linear(i, h)
      encoder.layer.N.layer_norm_2                                 LN2(y + down(u[:i] * act(u[i:])))

Embeddings: `embeddings.{word_embeddings,token_type_embeddings,LayerNorm}` (no position embeddings:
ALiBi). The ALiBi bias of head h is `-slope_h * |i - j|` (symmetric, encoder), with the slopes of
Press et al. (the geometric series, with the interleaving rule for a head count that is not a power
of two). Checkpoints may carry a `bert.` prefix and `pooler.` / `cls.` heads; both are handled.

The variant is read from the weights (`mlp.up_gated_layer` present → qk-post-norm). The v2 models
must run in fp32: ALiBi biases over 8k tokens overflow fp16 (NaNs).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

_IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")


@dataclass
class JinaBertConfig:
    vocab_size: int = 30528
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    feed_forward_type: str = "geglu"
    pad_token_id: int = 0
    max_position_embeddings: int = 8192
    qk_post_norm: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, qk_post_norm: bool = False) -> JinaBertConfig:
        if raw.get("position_embedding_type", "alibi") != "alibi":
            raise ValueError(f"JinaBERT needs position_embedding_type 'alibi', got {raw['position_embedding_type']!r}")
        fields = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw and k != "qk_post_norm"}
        cfg = cls(**fields, qk_post_norm=qk_post_norm)
        if cfg.feed_forward_type not in ("geglu", "reglu"):
            raise ValueError(f"unsupported JinaBERT feed_forward_type {cfg.feed_forward_type!r}")
        return cfg


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi head slopes (Press et al.); non-powers of two interleave the next power's slopes."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


class AlibiBias:
    """The attention bias of one batch, ALiBi plus padded keys masked out, made one block of query rows
    at a time: a full (B, heads, L, L) tensor would take B x 3.2 GB at 8192 tokens and 12 heads."""

    # at most this many bias elements per block (64M floats = 256 MiB in fp32)
    max_block_elements = 1 << 26

    def __init__(self, n_heads: int, length: int, attention_mask: torch.Tensor | None, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        self.length = length
        self.dtype = dtype
        self.slopes = torch.tensor(alibi_slopes(n_heads), device=device, dtype=dtype)[None, :, None, None]
        self.positions = torch.arange(length, device=device)
        self.key_pad = None if attention_mask is None else (attention_mask == 0)[:, None, None, :]
        batch = 1 if attention_mask is None else attention_mask.shape[0]
        self.block = max(1, self.max_block_elements // max(1, batch * n_heads * length))

    def blocks(self) -> list[tuple[int, int]]:
        return [(lo, min(lo + self.block, self.length)) for lo in range(0, self.length, self.block)]

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        distance = (self.positions[None, :] - self.positions[lo:hi, None]).abs().to(self.dtype)
        bias = -self.slopes * distance[None, None]
        if self.key_pad is not None:
            bias = bias.masked_fill(self.key_pad, torch.finfo(self.dtype).min)
        return bias


class _Embeddings(nn.Module):
    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(types))


class _SelfAttention(nn.Module):
    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.head_dim = h // cfg.num_attention_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.qk_post_norm = cfg.qk_post_norm
        if cfg.qk_post_norm:
            self.layer_norm_q = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
            self.layer_norm_k = nn.LayerNorm(h, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: AlibiBias) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.query(x), self.key(x), self.value(x)
        if self.qk_post_norm:
            q, k = self.layer_norm_q(q), self.layer_norm_k(k)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        # the (B, heads, rows, L) bias is built per block of query rows, so memory stays bounded at 8k tokens
        ctx = torch.cat([F.scaled_dot_product_attention(q[:, :, lo:hi], k, v, attn_mask=bias.rows(lo, hi))
                         for lo, hi in bias.blocks()], dim=2)
        return ctx.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)


class _SelfOutput(nn.Module):
    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, ctx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(ctx) + x)


class _Attention(nn.Module):
    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(cfg)
        self.output = _SelfOutput(cfg)

    def forward(self, x: torch.Tensor, bias: AlibiBias) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


def _activation(cfg: JinaBertConfig) -> nn.Module:
    return nn.GELU() if cfg.feed_forward_type == "geglu" else nn.ReLU()


class _GLUMLP(nn.Module):
    """jina-bert-implementation: LN(wo(act(g[:i]) * g[i:]) + x)."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.inter = cfg.intermediate_size
        self.gated_layers = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.act = _activation(cfg)
        self.wo = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gated_layers(x)
        return self.layernorm(self.wo(self.act(g[..., : self.inter]) * g[..., self.inter:]) + x)


class _UpGatedMLP(nn.Module):
    """jina-bert-v2-qk-post-norm: down(u[:i] * act(u[i:])) (residual and norm in the layer)."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.inter = cfg.intermediate_size
        self.up_gated_layer = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.act = _activation(cfg)
        self.down_layer = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.up_gated_layer(x)
        return self.down_layer(u[..., : self.inter] * self.act(u[..., self.inter:]))


class _Layer(nn.Module):
    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.qk_post_norm = cfg.qk_post_norm
        self.attention = _Attention(cfg)
        if cfg.qk_post_norm:
            self.mlp: nn.Module = _UpGatedMLP(cfg)
            self.layer_norm_1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
            self.layer_norm_2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        else:
            self.mlp = _GLUMLP(cfg)

    def forward(self, x: torch.Tensor, bias: AlibiBias) -> torch.Tensor:
        a = self.attention(x, bias)
        if not self.qk_post_norm:
            return self.mlp(a)
        y = self.layer_norm_1(x + a)
        return self.layer_norm_2(y + self.mlp(y))


class _Encoder(nn.Module):
    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg.num_hidden_layers))


class JinaBertModel(nn.Module):
    """Returns the last hidden state (B, L, H)."""

    def __init__(self, cfg: JinaBertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Encoder(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids)
        bias = AlibiBias(self.config.num_attention_heads, input_ids.shape[1], attention_mask, x.dtype, x.device)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_folder(cls, folder: Path, *, dtype: torch.dtype = torch.float32,
                    device: str = "cpu") -> JinaBertModel:
        raw = json.loads((folder / "config.json").read_text())
        backbone, _ = split_state(read_raw_state(folder))
        return cls.from_state(raw, backbone, dtype=dtype, device=device, source=str(folder))

    @classmethod
    def from_state(cls, raw_config: dict[str, Any], state: dict[str, torch.Tensor], *,
                   dtype: torch.dtype = torch.float32, device: str = "cpu",
                   source: str = "checkpoint") -> JinaBertModel:
        """A model holding `state` (backbone keys without a `bert.` prefix, see `split_state`)."""
        state = map_flash_names(state)
        qk = any(".mlp.up_gated_layer." in k for k in state)
        model = cls(JinaBertConfig.from_dict(raw_config, qk_post_norm=qk))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{source} does not match the JinaBERT layout "
                             f"({'qk-post-norm' if qk else 'jina-bert-implementation'}): "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        model.to(device=device, dtype=dtype).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model


def read_raw_state(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (safetensors shards, else pytorch_model.bin), keys as stored."""
    files = sorted(folder.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(str(folder / "pytorch_model.bin"), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} holds no model.safetensors or pytorch_model.bin")


def split_state(state: dict[str, torch.Tensor], prefix: str = "bert."
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(backbone tensors with `prefix` removed, everything else: heads such as `bert.pooler.dense`,
    `classifier`, ColBERT's `linear`). Position/token-type id buffers are dropped."""
    backbone: dict[str, torch.Tensor] = {}
    extras: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key.removeprefix(prefix)
        if k.endswith(_IGNORED_SUFFIXES):
            continue
        if k.startswith(("embeddings.", "encoder.", "emb_ln.")):
            backbone[k] = value
        else:
            extras[key] = value
    return backbone, extras


# Flash-attention BERT names (fused Wqkv, `emb_ln`, `encoder.layers.N.mixer`, `norm1`) → the names above. Used for
# checkpoints saved by the flash variant of the JinaBERT remote code (jina-clip-v1's text tower); the MLP keeps its
# `mlp.gated_layers / mlp.wo / mlp.layernorm` names. Anything else is left as is and fails the strict load.
_FLASH_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_FLASH_RENAMES = {"mixer.out_proj": "attention.output.dense", "norm1": "attention.output.LayerNorm"}


def map_flash_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not any(k.startswith(("emb_ln.", "encoder.layers.")) for k in state):
        return state
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("emb_ln."):
            out["embeddings.LayerNorm." + key.rsplit(".", 1)[1]] = value
            continue
        m = _FLASH_LAYER.match(key)
        if m is None:
            out[key] = value
            continue
        layer, rest = m.groups()
        module, _, leaf = rest.rpartition(".")
        base = f"encoder.layer.{layer}."
        if module == "mixer.Wqkv":
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"{base}attention.self.{name}.{leaf}"] = part.contiguous()
        else:
            out[base + _FLASH_RENAMES.get(module, module) + "." + leaf] = value
    return out
