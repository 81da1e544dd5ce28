"""CLIP image preprocessing as the jina-clip checkpoints publish it (`preprocessor_config.json`).

Published keys (jinaai/jina-clip-v2 `preprocessor_config.json`: `size` 512, `resize_mode` "shortest",
`interpolation` "bicubic", `fill_color` 0, `mean` / `std` the OpenAI CLIP constants): the image is converted to
RGB, its shorter side resized to `size` (the longer one to `int(size · long / short)`), a `size`×`size` square cut
from the centre (top = round((h − size) / 2), likewise left), scaled to [0, 1] and normalised per channel with
`mean` / `std`. `resize_mode` "squash" resizes straight to `size`×`size`. This is the same sequence of Pillow
operations the reference processor runs (torchvision's Resize / CenterCrop on Pillow images call Pillow).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipImageConfig:
    size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"

    @classmethod
    def from_folder(cls, folder: Path, default_size: int) -> ClipImageConfig:
        path = folder / "preprocessor_config.json"
        raw: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        size = raw.get("size", default_size)
        if isinstance(size, dict):  # {"shortest_edge": n} / {"height": n, "width": n}
            size = size.get("shortest_edge") or size.get("height")
        cfg = cls(size=int(size), mean=tuple(raw.get("mean", OPENAI_CLIP_MEAN)),  # type: ignore[arg-type]
                  std=tuple(raw.get("std", OPENAI_CLIP_STD)),  # type: ignore[arg-type]
                  resize_mode=raw.get("resize_mode", "shortest"), interpolation=raw.get("interpolation", "bicubic"))
        if cfg.resize_mode not in ("shortest", "squash"):
            raise ValueError(f"{path}: unsupported resize_mode {cfg.resize_mode!r} (shortest or squash)")
        if cfg.interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f"{path}: unsupported interpolation {cfg.interpolation!r} (bicubic or bilinear)")
        return cfg


def clip_pixels(image: Any, cfg: ClipImageConfig) -> np.ndarray:
    """A Pillow image → float32 (3, size, size), normalised."""
    from PIL import Image

    img = image.convert("RGB")
    resample = Image.Resampling.BICUBIC if cfg.interpolation == "bicubic" else Image.Resampling.BILINEAR
    s = cfg.size
    if cfg.resize_mode == "squash":
        img = img.resize((s, s), resample)
    else:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)
        new_w, new_h = (s, new_long) if w <= h else (new_long, s)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), resample)
        top = round((new_h - s) / 2.0)
        left = round((new_w - s) / 2.0)
        img = img.crop((left, top, left + s, top + s))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
