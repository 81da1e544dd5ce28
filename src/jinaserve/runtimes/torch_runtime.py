"""PyTorch execution: device and dtype choice (incl. `--dtype auto` on CPU), thread settings, padding,
model loading, and `TorchBackbone` (the runtime interface of `runtimes.backbone` over a torch module).

`--dtype auto` on CPU (`auto_cpu_dtype`): float32, unless (1) the CPU has native bf16 (`avx512_bf16` or
`amx_bf16` in its flags: without them torch emulates bf16 and runs ~10× slower than fp32), (2) a load-time
probe of the loaded backbone shows bf16 at least `BF16_MIN_SPEEDUP` times faster on this machine, and (3) the
probe's bf16 hidden states stay within cosine `BF16_MIN_COSINE` of fp32 (mean-pooled and last-token states of
every probe sequence). The choice and its reasons are logged.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelLoadError
from .backbone import MODULE, Backbone
from .cpu import NATIVE_BF16_FLAGS, native_bf16

log = logging.getLogger("jinaserve.runtime.torch")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_threads_configured = False
# `--dtype auto` on CPU: bf16 only when the probe shows at least this speed-up and this cosine floor.
BF16_MIN_SPEEDUP = 1.15
BF16_MIN_COSINE = 0.999


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
    """The dtype to load in: fp32 on CPU (`auto_cpu_dtype` may then move an auto model to bf16) and for
    fp32-only models; on GPUs fp16 or bf16 (auto picks bf16 where supported)."""
    if fp32_only:
        return torch.float32
    if requested != "auto":
        return _DTYPES[requested]
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def _probe_ids(vocab_size: int, seed: int = 0) -> list[torch.Tensor]:
    """Deterministic probe batches of token ids (ids above the special-token range), 3 shapes."""
    g = torch.Generator().manual_seed(seed)
    low = min(1000, max(1, vocab_size // 4))
    return [torch.randint(low, max(low + 1, vocab_size), (b, t), generator=g) for b, t in ((8, 16), (4, 64),
                                                                                           (2, 192))]


def _probe_run(module: Any, batches: list[torch.Tensor], repeats: int) -> tuple[float, list[torch.Tensor]]:
    """Median seconds of one pass over `batches` (after a warm-up pass) and the hidden states."""
    def one() -> list[torch.Tensor]:
        return [TorchBackbone(module).encode(ids, torch.ones_like(ids)).float() for ids in batches]

    with torch.inference_mode():
        states = one()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            one()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], states


def _probe_cosine(ref: list[torch.Tensor], got: list[torch.Tensor]) -> float:
    """Smallest cosine over every probe sequence's mean-pooled and last-token hidden state."""
    worst = 1.0
    for a, b in zip(ref, got, strict=True):
        for x, y in ((a.mean(1), b.mean(1)), (a[:, -1], b[:, -1])):
            worst = min(worst, float(torch.nn.functional.cosine_similarity(x, y, dim=-1).min()))
    return worst


def auto_cpu_dtype(model: Any, *, device: str, requested: str, fp32_only: bool = False,
                   vocab_size: int | None = None, name: str = "model", flags: frozenset[str] | None = None,
                   repeats: int = 3) -> tuple[Any, torch.dtype]:
    """`--dtype auto` on CPU for a module loaded in float32: returns (module, dtype), the module converted to
    bf16 only when the CPU has native bf16, the load-time probe shows it faster, and within the cosine floor
    (see the module docstring). Anything but (cpu, auto, not fp32-only) keeps the module as it is."""
    current = next((p.dtype for p in model.parameters()), torch.float32)
    if device != "cpu" or requested != "auto" or fp32_only or current != torch.float32:
        return model, current
    flag = native_bf16(flags)
    if flag is None:
        log.info("%s: dtype auto → float32 (this CPU has no native bf16: none of %s in its flags; emulated "
                 "bf16 is several times slower than fp32)", name, "/".join(NATIVE_BF16_FLAGS))
        return model, torch.float32
    vocab = int(vocab_size or getattr(getattr(model, "config", None), "vocab_size", 0) or 30000)
    batches = _probe_ids(vocab)
    fp32_s, ref = _probe_run(model, batches, repeats)
    candidate = copy.deepcopy(model).to(torch.bfloat16)
    bf16_s, got = _probe_run(candidate, batches, repeats)
    speedup, cosine = fp32_s / max(bf16_s, 1e-9), _probe_cosine(ref, got)
    if speedup >= BF16_MIN_SPEEDUP and cosine >= BF16_MIN_COSINE:
        log.info("%s: dtype auto → bfloat16 (CPU flag %s; probe %.2f× faster than float32, min cosine %.5f ≥ %s)",
                 name, flag, speedup, cosine, BF16_MIN_COSINE)
        del model
        return candidate, torch.bfloat16
    why = (f"only {speedup:.2f}× faster (< {BF16_MIN_SPEEDUP})" if speedup < BF16_MIN_SPEEDUP
           else f"min cosine {cosine:.5f} < {BF16_MIN_COSINE}")
    log.info("%s: dtype auto → float32 (CPU flag %s, but the bf16 probe was %s)", name, flag, why)
    del candidate
    return model, torch.float32


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


class TorchBackbone(Backbone):
    """A transformers module (or any module returning `last_hidden_state` / a tuple) as a `Backbone`."""

    runtime = "torch"
    capabilities = frozenset({MODULE})

    def __init__(self, module: Any) -> None:
        self.module = module
        config = getattr(module, "config", None)
        self.hidden_size = int(getattr(config, "hidden_size", 0) or 0)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        out = self.module(input_ids=input_ids, attention_mask=attention_mask)
        if isinstance(out, torch.Tensor):
            return out
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
