"""Independent float64 references, written op by op from the published modeling code (none calls jinaserve):
JinaBERT hidden states (tests/jinabert_ref.py), the EVA02 vision tower (2-D RoPE on every patch token, sub-LN, SwiGLU,
CLS after the final norm), and the CLIP image preprocessing."""

from __future__ import annotations

import math

import numpy as np
import torch

from jinabert_ref import layer_norm as _ln
from jinabert_ref import linear as _lin


def eva_image_vector(sd: dict[str, torch.Tensor], cfg: dict, pixels: np.ndarray) -> np.ndarray:
    """One image (3, S, S) → the CLS vector after the final norm (EVA02 with sub-LN, SwiGLU, 2-D RoPE)."""
    sd = {k: v.double() for k, v in sd.items()}
    w, hd, p = cfg["width"], cfg["head_width"], cfg["patch_size"]
    heads, g = w // hd, cfg["image_size"] // p
    img = torch.from_numpy(pixels).double()
    # patch embedding as an explicit sum over each patch's pixels
    patches = img.unfold(1, p, p).unfold(2, p, p)  # (3, g, g, p, p)
    patches = patches.permute(1, 2, 0, 3, 4).reshape(g * g, -1)
    x = patches @ sd["patch_embed.proj.weight"].reshape(w, -1).T + sd["patch_embed.proj.bias"]
    x = torch.cat([sd["cls_token"][0], x]) + sd["pos_embed"][0]
    # RoPE angles per patch and head coordinate: first half by row, second half by column
    half = hd // 2
    scale = cfg["pt_hw_seq_len"] / g if cfg["intp_freq"] else 1.0
    ang = torch.zeros(g * g, hd, dtype=torch.float64)
    for r in range(g):
        for c in range(g):
            for j in range(hd):
                pos = (r if j < half else c) * scale
                k = (j % half) // 2
                ang[r * g + c, j] = pos / (10000 ** (2 * k / half))

    def rope(t: torch.Tensor) -> torch.Tensor:  # (heads, n, hd); CLS (row 0) untouched
        body = t[:, 1:]
        a, b = body[..., 0::2], body[..., 1::2]
        cos, sin = ang[:, 0::2].cos(), ang[:, 0::2].sin()
        out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)
        return torch.cat([t[:, :1], out], dim=1)

    n = x.shape[0]
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        b = f"blocks.{i}"
        y = _ln(x, sd, f"{b}.norm1", 1e-6)
        q = y @ sd[f"{b}.attn.q_proj.weight"].T + sd[f"{b}.attn.q_bias"]
        k = y @ sd[f"{b}.attn.k_proj.weight"].T
        v = y @ sd[f"{b}.attn.v_proj.weight"].T + sd[f"{b}.attn.v_bias"]
        q, k, v = (t.view(n, heads, hd).transpose(0, 1) for t in (q, k, v))
        q, k = rope(q), rope(k)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)
        ctx = (att @ v).transpose(0, 1).reshape(n, w)
        x = x + _lin(_ln(ctx, sd, f"{b}.attn.inner_attn_ln", 1e-6), sd, f"{b}.attn.proj")
        y = _ln(x, sd, f"{b}.norm2", 1e-6)
        hidden = torch.nn.functional.silu(_lin(y, sd, f"{b}.mlp.w1")) * _lin(y, sd, f"{b}.mlp.w2")
        x = x + _lin(_ln(hidden, sd, f"{b}.mlp.ffn_ln", 1e-6), sd, f"{b}.mlp.w3")
        i += 1
    return _ln(x, sd, "norm", 1e-6)[0].numpy()


def clip_preprocess(image, size: int) -> np.ndarray:
    """Shorter side → size (bicubic), centre crop, /255, OpenAI CLIP mean/std (the published processor's steps)."""
    from PIL import Image

    w, h = image.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    img = image.convert("RGB").resize((nw, nh), Image.Resampling.BICUBIC)
    top, left = round((nh - size) / 2.0), round((nw - size) / 2.0)
    arr = np.asarray(img, dtype=np.float64)[top:top + size, left:left + size] / 255.0
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    return ((arr - mean) / std).transpose(2, 0, 1).astype(np.float32)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)
