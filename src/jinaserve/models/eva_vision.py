"""EVA02 vision tower of jina-clip-v1 / -v2, written from the published checkpoint layout (no remote code).

Published layout (`vision_model.` prefix in the jina-clip checkpoints; `vision_config` in config.json: `width`,
`layers`, `head_width`, `mlp_ratio`, `image_size`, `patch_size`, `qkv_bias`, `subln`, `naive_swiglu`,
`rope_embeddings`, `pt_hw_seq_len`, `intp_freq`, `post_norm`, `ls_init_value`, `embed_dim`, `proj_type`)::

    patch_embed.proj                       Conv2d(3, W, P, stride P) with bias
    cls_token (1, 1, W), pos_embed (1, 1 + (S/P)², W)
    blocks.N.norm1 / norm2                 LayerNorm(W, eps 1e-6)
    blocks.N.attn.q_proj/k_proj/v_proj     Linear(W, W, no bias) (subln) — or fused `attn.qkv` (3W, W)
    blocks.N.attn.q_bias / v_bias          (W,) when qkv_bias (k has no bias)
    blocks.N.attn.inner_attn_ln            LayerNorm(W) on the attention output before `proj` (subln)
    blocks.N.attn.proj                     Linear(W, W)
    blocks.N.mlp.w1 / w2 / ffn_ln / w3     SwiGLU: w3(ffn_ln(silu(w1 x) * w2 x)) (naive_swiglu)
    blocks.N.mlp.fc1 / ffn_ln / fc2        or GELU MLP: fc2(ffn_ln(gelu(fc1 x)))
    blocks.N.gamma_1 / gamma_2             layer scale (ls_init_value)
    norm                                   final LayerNorm; the image vector is the CLS token after it
    head                                   Identity (embed_dim == W, proj_type null) or Linear(W, embed_dim)

2-D RoPE (`rope_embeddings`): each head's dimension is split in two halves, the first rotated by the patch's row,
the second by its column, with the frequencies 1 / 10000^(2k/(head_dim/2)); positions are
`arange(g) / g * pt_hw_seq_len` for a g×g grid when `intp_freq`, else `arange(pt_hw_seq_len)` (then g must equal
`pt_hw_seq_len`). Pairs of coordinates (2i, 2i+1) are rotated together; the CLS token is not rotated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

EPS = 1e-6  # the published towers build every LayerNorm with eps 1e-6


@dataclass
class EvaVisionConfig:
    width: int = 768
    layers: int = 12
    head_width: int = 64
    mlp_ratio: float = 4.0
    image_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    qkv_bias: bool = True
    subln: bool = False
    naive_swiglu: bool = False
    rope_embeddings: bool = False
    pt_hw_seq_len: int = 16
    intp_freq: bool = False
    post_norm: bool = False
    ls_init_value: float | None = None
    proj_type: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EvaVisionConfig:
        cfg = cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        if cfg.width % cfg.head_width:
            raise ValueError(f"vision width {cfg.width} is not a multiple of head_width {cfg.head_width}")
        if cfg.proj_type not in (None, "linear"):
            raise ValueError(f"unsupported vision proj_type {cfg.proj_type!r} (null or 'linear' expected)")
        if cfg.proj_type is None and cfg.embed_dim != cfg.width:
            raise ValueError(f"vision embed_dim {cfg.embed_dim} differs from width {cfg.width} without a projection")
        if cfg.rope_embeddings and not cfg.intp_freq and cfg.pt_hw_seq_len != cfg.grid:
            raise ValueError(f"RoPE grid {cfg.pt_hw_seq_len} does not match the {cfg.grid}×{cfg.grid} patch grid "
                             f"(and intp_freq is off)")
        return cfg

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def rope_tables(cfg: EvaVisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin of shape (grid², head_dim): [row half | column half], each frequency repeated for its pair."""
    half = cfg.head_width // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, half, 2)[: half // 2].float() / half))
    n = cfg.grid if cfg.intp_freq else cfg.pt_hw_seq_len
    t = torch.arange(n, dtype=torch.float32) / n * cfg.pt_hw_seq_len
    f = torch.repeat_interleave(torch.outer(t, freqs), 2, dim=-1)  # (n, half)
    rows = f[:, None, :].expand(n, n, half)
    cols = f[None, :, :].expand(n, n, half)
    table = torch.cat([rows, cols], dim=-1).reshape(n * n, 2 * half)
    return table.cos(), table.sin()


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class _Attention(nn.Module):
    def __init__(self, cfg: EvaVisionConfig) -> None:
        super().__init__()
        w = cfg.width
        self.heads = cfg.heads
        self.subln = cfg.subln
        if cfg.subln:
            self.q_proj = nn.Linear(w, w, bias=False)
            self.k_proj = nn.Linear(w, w, bias=False)
            self.v_proj = nn.Linear(w, w, bias=False)
        else:
            self.qkv = nn.Linear(w, 3 * w, bias=False)
        if cfg.qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(w))
            self.v_bias = nn.Parameter(torch.zeros(w))
        else:
            self.q_bias = self.v_bias = None
        self.inner_attn_ln = nn.LayerNorm(w, eps=EPS) if cfg.subln else nn.Identity()
        self.proj = nn.Linear(w, w)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        b, n, w = x.shape
        if self.subln:
            q = F.linear(x, self.q_proj.weight, self.q_bias)
            k = F.linear(x, self.k_proj.weight)
            v = F.linear(x, self.v_proj.weight, self.v_bias)
        else:
            bias = None if self.q_bias is None else torch.cat(
                (self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
            q, k, v = F.linear(x, self.qkv.weight, bias).chunk(3, dim=-1)
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        if rope is not None:  # every token but CLS
            cos, sin = rope
            q = torch.cat((q[:, :, :1], q[:, :, 1:] * cos + _rotate_pairs(q[:, :, 1:]) * sin), dim=2)
            k = torch.cat((k[:, :, :1], k[:, :, 1:] * cos + _rotate_pairs(k[:, :, 1:]) * sin), dim=2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, w)
        return self.proj(self.inner_attn_ln(out))


class _SwiGLU(nn.Module):
    def __init__(self, w: int, hidden: int, subln: bool) -> None:
        super().__init__()
        self.w1 = nn.Linear(w, hidden)
        self.w2 = nn.Linear(w, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=EPS) if subln else nn.Identity()
        self.w3 = nn.Linear(hidden, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class _Mlp(nn.Module):
    def __init__(self, w: int, hidden: int, subln: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(w, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=EPS) if subln else nn.Identity()
        self.fc2 = nn.Linear(hidden, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.ffn_ln(F.gelu(self.fc1(x))))


class _Block(nn.Module):
    def __init__(self, cfg: EvaVisionConfig) -> None:
        super().__init__()
        w = cfg.width
        hidden = int(w * cfg.mlp_ratio)
        self.post_norm = cfg.post_norm
        self.norm1 = nn.LayerNorm(w, eps=EPS)
        self.attn = _Attention(cfg)
        self.norm2 = nn.LayerNorm(w, eps=EPS)
        self.mlp: nn.Module = _SwiGLU(w, hidden, cfg.subln) if cfg.naive_swiglu else _Mlp(w, hidden, cfg.subln)
        if cfg.ls_init_value:
            self.gamma_1 = nn.Parameter(torch.ones(w))
            self.gamma_2 = nn.Parameter(torch.ones(w))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        a = self.norm1(self.attn(x, rope)) if self.post_norm else self.attn(self.norm1(x), rope)
        x = x + (a if self.gamma_1 is None else self.gamma_1 * a)
        m = self.norm2(self.mlp(x)) if self.post_norm else self.mlp(self.norm2(x))
        return x + (m if self.gamma_2 is None else self.gamma_2 * m)


class EvaVisionTransformer(nn.Module):
    """pixel_values (B, 3, S, S) → image embeddings (B, embed_dim), before normalisation."""

    def __init__(self, cfg: EvaVisionConfig) -> None:
        super().__init__()
        self.config = cfg
        w = cfg.width
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, w))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid ** 2 + 1, w))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(w, eps=EPS)
        self.head: nn.Module = nn.Identity() if cfg.proj_type is None else nn.Linear(w, cfg.embed_dim,
                                                                                      bias=cfg.qkv_bias)
        if cfg.rope_embeddings:
            cos, sin = rope_tables(cfg)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(pixel_values.to(self.pos_embed.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        rope = (self.rope_cos.to(x.dtype), self.rope_sin.to(x.dtype)) if self.config.rope_embeddings else None
        for block in self.blocks:
            x = block(x, rope)
        return self.head(self.norm(x)[:, 0])

    @classmethod
    def from_state(cls, raw_config: dict[str, Any], state: dict[str, torch.Tensor], *, dtype: torch.dtype,
                   device: str, source: str = "checkpoint") -> EvaVisionTransformer:
        cfg = EvaVisionConfig.from_dict(raw_config)
        with torch.device("meta"):
            model = cls(cfg)
        result = model.load_state_dict(state, strict=False, assign=True)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"{source}: the vision tower does not match the EVA02 layout of its vision_config "
                             f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})")
        if cfg.rope_embeddings:  # non-persistent buffers were made on the meta device
            cos, sin = rope_tables(cfg)
            model.register_buffer("rope_cos", cos, persistent=False)
            model.register_buffer("rope_sin", sin, persistent=False)
        model.to(device=device, dtype=dtype).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model
