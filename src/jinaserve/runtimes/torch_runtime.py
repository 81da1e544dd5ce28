"""PyTorch execution helpers: device and dtype choice, thread settings, padding, model loading."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelLoadError

log = logging.getLogger("jinaserve.runtime.torch")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_threads_configured = False


def select_device(requested: str = "auto") -> str:
    """auto → cuda, then mps, then cpu. An explicit device that is missing is an error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but CUDA is not available (torch "
                             f"{torch.__version__}); use --device cpu or auto")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("device 'mps' requested but MPS is not available; use --device cpu or auto")
    return requested


def select_dtype(device: str, requested: str = "auto", *, fp32_only: bool = False,
                 prefer: str = "float16") -> torch.dtype:
    """fp32 on CPU and for fp32-only models; on GPUs fp16 or bf16 (auto picks bf16 where supported)."""
    if fp32_only:
        return torch.float32
    if requested != "auto":
        return _DTYPES[requested]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def configure_threads(threads: int | None = None) -> int:
    """Use every core for intra-op parallelism once per process (inter-op 1: one batch at a time)."""
    global _threads_configured
    if threads:
        n = threads
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count() or 1
    if not _threads_configured:
        torch.set_num_threads(max(1, n))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set once in this process
            pass
        _threads_configured = True
    return n


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, *, side: str = "right",
              device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists to one tensor; returns (input_ids, attention_mask).

    Filled in one numpy array (one C-level copy per row) rather than one small tensor per row.
    """
    longest = max(len(s) for s in sequences)
    ids = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), longest), dtype=np.int64)
    for i, seq in enumerate(sequences):
        n = len(seq)
        if n == 0:
            continue
        if side == "left":
            ids[i, longest - n:] = seq
            mask[i, longest - n:] = 1
        else:
            ids[i, :n] = seq
            mask[i, :n] = 1
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def load_pretrained(model_cls: Any, path: str | Path, *, device: str, dtype: torch.dtype,
                    attn_implementation: str = "sdpa", **kwargs: Any) -> Any:
    """Load a transformers model with SDPA attention (never an eager n×n matrix where avoidable)."""
    try:
        model = model_cls.from_pretrained(str(path), dtype=dtype, attn_implementation=attn_implementation,
                                          **kwargs)
    except (ValueError, ImportError) as exc:
        if attn_implementation == "eager":
            raise
        log.warning("%s does not support %s attention (%s); falling back to eager",
                    getattr(model_cls, "__name__", model_cls), attn_implementation, exc)
        model = model_cls.from_pretrained(str(path), dtype=dtype, attn_implementation="eager", **kwargs)
    model.eval()
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
