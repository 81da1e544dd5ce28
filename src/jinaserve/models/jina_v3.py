"""jina-embeddings-v3 on transformers' native `JinaEmbeddingsV3Model` (no remote code).

- Tasks: each API task picks a LoRA adapter and an instruction prefix (catalog row). No task = the base
  weights, no prefix. Items of a request share a task; the batcher never mixes adapters in one batch
  (`WorkItem.group` = adapter name), so concurrent requests with different tasks each get their own task's
  vector.
- Adapters: every Linear of the encoder carries a per-task weight (see `TaskLinear`). Two strategies:
  `merged` (default) builds W + B·A·α/r for a task on its first use and keeps it, so a forward pass costs
  exactly the base model's (memory: one copy of the encoder's Linear weights per task used, 1.1 GiB fp32 /
  0.56 GiB bf16); `runtime` keeps only the rank-4 factors and adds x·Aᵀ·Bᵀ per call (≈7 MiB per task, slower;
  measured in `benchmarks/v3_adapters.py`, see docs/models/jina-embeddings-v3.md). The two embedding tables
  always apply their LoRA at runtime as a gather of r=4 columns: merging them would copy the 250k×1024
  vocabulary per task.
  `JINASERVE_V3_ADAPTERS=merged|runtime` picks the strategy. In merged mode the first request of a task pays
  the merge (measured in the benchmark); `JINASERVE_V3_PREMERGE=all` or a comma list of tasks merges them at
  load time instead, so no request waits for it.
- Late chunking (research §2.3): the request's inputs are joined with one space, the task instruction goes in
  front, the whole text is tokenised once and run once; each input's token span is mean-pooled, the first
  span also taking `<s>` and the instruction tokens, the last also `</s>`.
  Over-length joined text: `truncate=false` → 400 INPUT_TOKEN_LIMIT_EXCEEDED. `truncate=true` → the inputs
  are packed, in order and whole, into consecutive windows that each fit the 8192-token context (each window
  is its own pass with `<s>` + instruction ... `</s>`); a single input longer than a window is cut to fit.
  Every input thus gets a vector; context only crosses inputs of the same window.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..catalog import ModelSpec
from ..errors import FieldError, InvalidInputError, ModelLoadError, TokenLimitExceededError, ValidationFailedError
from ..jobs import EmbedInput, EmbedOptions
from ..runtimes.torch_runtime import pad_batch
from .base import EmbedPlan, WorkItem
from .jina_v3_layout import (
    LoRAWeight,
    TaskAdapters,
    detect_layout,
    load_remote_checkpoint,
    read_config,
    read_peft_adapter,
)
from .loading import LoadOptions
from .pooling import mean_pool
from .text import texts_of
from .text_embedding import TextEmbeddingFamily, TextPayload

log = logging.getLogger("jinaserve.models.jina_v3")

AdapterMode = Literal["merged", "runtime"]
ADAPTER_MODE_ENV = "JINASERVE_V3_ADAPTERS"
PREMERGE_ENV = "JINASERVE_V3_PREMERGE"


# ------------------------------------------------------------------------------------------------ adapters
class ActiveAdapter:
    """The adapter the current forward pass uses (None = base weights); shared by all task modules."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name: str | None = None


class TaskLinear(nn.Module):
    """A Linear with one weight per task.

    `merged`: the task's weight W + B·A·α/r is built on the task's first use (in the worker thread) and kept,
    so every later pass is one plain matmul, exactly as fast as the base model; memory grows by one weight copy
    per task actually used. `runtime`: only the rank-r factors are kept and x·Aᵀ·Bᵀ is added on every call.
    """

    def __init__(self, base: nn.Linear, active: ActiveAdapter, mode: AdapterMode) -> None:
        super().__init__()
        self.base = base
        self.mode = mode
        self._active = active
        self.merged: dict[str, torch.Tensor] = {}
        self.factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, name: str, lora: LoRAWeight) -> None:
        w = self.base.weight
        if lora.kind != "linear" or (lora.b.shape[0], lora.a.shape[1]) != tuple(w.shape):
            raise ModelLoadError(f"adapter {name!r}: LoRA factors {tuple(lora.b.shape)}·{tuple(lora.a.shape)} do "
                                 f"not fit a Linear of shape {tuple(w.shape)}")
        a = lora.a.to(device=w.device, dtype=torch.float32 if self.mode == "merged" else w.dtype)
        b = (lora.b.float() * lora.scale).to(device=w.device)  # scale folded into B
        self.factors[name] = (a, b if self.mode == "merged" else b.to(w.dtype))
        self.merged.pop(name, None)

    def merge(self, name: str) -> torch.Tensor | None:
        """The task's merged weight (built once, in fp32, then cast to the model dtype)."""
        weight = self.merged.get(name)
        if weight is None and name in self.factors:
            a, b = self.factors[name]
            w = self.base.weight
            weight = (w.float() + b.float() @ a.float()).to(w.dtype)
            self.merged[name] = weight
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name = self._active.name
        if name is None:
            return self.base(x)
        if self.mode == "merged":
            weight = self.merge(name)
            return self.base(x) if weight is None else F.linear(x, weight, self.base.bias)
        ab = self.factors.get(name)
        if ab is None:
            return self.base(x)
        return self.base(x) + F.linear(F.linear(x, ab[0]), ab[1])


class TaskEmbedding(nn.Module):
    """An Embedding whose per-task LoRA is applied by gathering the r-wide A rows of the looked-up ids."""

    def __init__(self, base: nn.Embedding, active: ActiveAdapter) -> None:
        super().__init__()
        self.base = base
        self._active = active
        self.factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, name: str, lora: LoRAWeight) -> None:
        w = self.base.weight
        if lora.kind != "embedding" or (lora.a.shape[0], lora.b.shape[1]) != tuple(w.shape):
            raise ModelLoadError(f"adapter {name!r}: embedding LoRA does not fit a table of shape {tuple(w.shape)}")
        a = lora.a.to(device=w.device, dtype=w.dtype)
        b = (lora.b.float() * lora.scale).to(device=w.device, dtype=w.dtype)
        self.factors[name] = (a, b)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids)
        ab = self.factors.get(self._active.name) if self._active.name is not None else None
        if ab is None:
            return out
        return out + F.embedding(ids, ab[0]) @ ab[1]


def install_adapters(model: nn.Module, adapters: dict[str, TaskAdapters], mode: AdapterMode) -> ActiveAdapter:
    """Wrap every module that some task adapts; returns the switch that selects the adapter."""
    active = ActiveAdapter()
    modules = dict(model.named_modules())
    wrappers: dict[str, TaskLinear | TaskEmbedding] = {}
    for name, task_adapters in adapters.items():
        for path, lora in task_adapters.items():
            wrapper = wrappers.get(path)
            if wrapper is None:
                module = modules.get(path)
                if isinstance(module, nn.Linear):
                    wrapper = TaskLinear(module, active, mode)
                elif isinstance(module, nn.Embedding):
                    wrapper = TaskEmbedding(module, active)
                else:
                    raise ModelLoadError(f"adapter {name!r} targets {path!r}, which is not a Linear or "
                                         f"Embedding of the model")
                parent_path, _, attr = path.rpartition(".")
                setattr(modules[parent_path] if parent_path else model, attr, wrapper)
                wrappers[path] = wrapper
            wrapper.add(name, lora)
    return active


def adapter_mode_from_env(default: AdapterMode = "merged") -> AdapterMode:
    value = os.environ.get(ADAPTER_MODE_ENV, default).strip().lower()
    if value not in ("merged", "runtime"):
        raise ModelLoadError(f"{ADAPTER_MODE_ENV} must be 'merged' or 'runtime', not {value!r}")
    return value  # type: ignore[return-value]


def premerge_tasks_from_env(spec: ModelSpec) -> list[str]:
    """Tasks whose merged weights are built at load time (`JINASERVE_V3_PREMERGE`: "all" or a comma list)."""
    value = os.environ.get(PREMERGE_ENV, "").strip()
    if not value:
        return []
    if value.lower() == "all":
        return [t.name for t in spec.tasks if t.adapter]
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if spec.task(n) is None]
    if unknown:
        raise ModelLoadError(f"{PREMERGE_ENV} names unknown task(s) {unknown}; the tasks of {spec.id} are "
                             f"{', '.join(spec.task_names)} (or 'all')")
    return names


# ------------------------------------------------------------------------------------------------ payloads
@dataclass
class LateChunkPayload:
    """One forward pass over joined inputs; `spans` are [start, end) token ranges, one per input."""

    ids: list[int]
    spans: list[tuple[int, int]]
    group: Hashable = None


# ------------------------------------------------------------------------------------------------ family
class JinaV3Family(TextEmbeddingFamily):
    family_name = "jina_v3"
    int8_capable = False  # task LoRA patches the torch weights per batch

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, *, adapters: dict[str, TaskAdapters],
                 adapter_mode: AdapterMode = "merged", device: str = "cpu") -> None:
        super().__init__(spec, model, tokenizer, device=device, pooling="mean", padding_side="right")
        missing = [t.adapter for t in spec.tasks if t.adapter and t.adapter not in adapters]
        if missing:
            raise ModelLoadError(f"{spec.id}: checkpoint has no adapter for {missing}; found {sorted(adapters)}")
        self.adapter_mode = adapter_mode
        self.active = install_adapters(model, adapters, adapter_mode)
        self.adapter_names = sorted(adapters)

    def prepare_task(self, task: str | None) -> None:
        """Build a task's merged weights now instead of on its first request (merged mode)."""
        t = self.spec.task(task)
        if t is None or not t.adapter or self.adapter_mode != "merged":
            return
        for module in self.model.modules():
            if isinstance(module, TaskLinear):
                module.merge(t.adapter)

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaV3Family:
        from transformers import AutoModel, AutoTokenizer

        from ..runtimes.torch_runtime import (
            auto_cpu_dtype,
            configure_threads,
            load_pretrained,
            select_device,
            select_dtype,
        )

        mode = adapter_mode_from_env()
        premerge = premerge_tasks_from_env(spec)
        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        config = read_config(folder)
        layout = detect_layout(config)
        if layout == "hf":
            model = load_pretrained(AutoModel, folder, device=device, dtype=dtype)
            adapters = {t.adapter: read_peft_adapter(folder / t.adapter) for t in spec.tasks if t.adapter}
        else:
            model, by_task = load_remote_checkpoint(folder, config, device=device, dtype=dtype,
                                                    default_adaptations=list(spec.extra.get("lora_adaptations",
                                                                                            spec.task_names)))
            adapters = {}
            for task_name, task_adapters in by_task.items():
                t = spec.task(task_name)
                if t is None or not t.adapter:
                    log.warning("%s: checkpoint adapter %r is not a task of the catalog row; ignored", spec.id,
                                task_name)
                    continue
                adapters[t.adapter] = task_adapters
        model, dtype = auto_cpu_dtype(model, device=device, requested=opts.dtype, fp32_only=spec.fp32_only,
                                      name=spec.id)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        hidden = int(model.config.hidden_size)
        max_pos = int(getattr(model.config, "max_position_embeddings", spec.max_tokens + 2))
        spec = replace(spec, dims=hidden, max_tokens=min(spec.max_tokens, max_pos - 2) if max_pos > 2 else
                       spec.max_tokens)
        log.info("loaded %s from %s (%s layout, %d task adapters, adapter mode %s, device=%s, dtype=%s)", spec.id,
                 folder, layout, len(adapters), mode, device, dtype)
        family = cls(spec, model, tokenizer, adapters=adapters, adapter_mode=mode, device=device)
        if premerge and mode == "merged":
            started = time.perf_counter()
            with torch.inference_mode():
                for task in premerge:
                    family.prepare_task(task)
            log.info("%s: merged the weights of %s at load time in %.2f s", spec.id, ", ".join(premerge),
                     time.perf_counter() - started)
        return family

    @classmethod
    def load_gguf(cls, spec: ModelSpec, folder: Path, backbone: Any, opts: Any, **_: Any) -> JinaV3Family:
        """The base GGUF + the task LoRA GGUFs next to it (see `GGUFJinaV3Family`)."""
        return _load_v3_gguf(spec, folder, backbone)

    # ----------------------------------------------------------------- forward
    def forward_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       group: Hashable) -> torch.Tensor:
        self.active.name = group if isinstance(group, str) else None
        try:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            self.active.name = None
        return out.last_hidden_state

    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        group = payloads[0].group
        input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, side="right", device=self.device)
        hidden = self.forward_hidden(input_ids, mask, group)
        pooled = mean_pool(hidden, mask).float().cpu().numpy()
        outs: list[Any] = []
        for i, p in enumerate(payloads):
            if isinstance(p, LateChunkPayload):
                h = hidden[i].float()
                outs.append(torch.stack([h[s:e].mean(dim=0) for s, e in p.spans]).cpu().numpy())
            else:
                outs.append(pooled[i])
        return outs

    # ----------------------------------------------------------------- planning
    def plan_embed(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        images = [i for i, item in enumerate(inputs) if item.image is not None]
        if images:  # the hosted v3 schema takes str / {"text"} only: a schema error there, so 422 here too
            raise ValidationFailedError([FieldError(f"body -> input -> {i}", f"Model {self.spec.id!r} takes text "
                                                    f"only; images are not supported", "value_error", "image")
                                         for i in images])
        if options.late_chunking:
            return self.plan_late_chunking(inputs, options)
        return super().plan_embed(inputs, options)

    def plan_late_chunking(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        texts = texts_of(inputs, self.spec.id)
        for i, t in enumerate(texts):
            if t is None:
                raise InvalidInputError(f"Input at index {i} is token ids; late_chunking needs text inputs")
        if not texts:
            return EmbedPlan([], 0, lambda outs: [])
        task = self.resolve_task(options.task)
        group = self.group_for(task)
        windows = late_chunk_windows(self.tokenizer, [t for t in texts if t is not None], self.prefix_for(task),
                                     max_tokens=self.max_tokens, truncate=options.truncate)
        items = [WorkItem(LateChunkPayload(ids, spans, group), len(ids), group) for ids, spans in windows]

        def assemble(outs: list[Any]) -> list[np.ndarray]:
            return [vec for window in outs for vec in np.asarray(window)]

        return EmbedPlan(items, sum(len(ids) for ids, _ in windows), assemble)


# ------------------------------------------------------------------------------------------------ late chunking
def late_chunk_windows(tokenizer: Any, texts: list[str], prefix: str, *, max_tokens: int,
                       truncate: bool) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Token ids and per-input spans of the pass(es) that late chunking runs (see module docstring)."""
    full = prefix + " ".join(texts)
    enc = tokenizer(full, add_special_tokens=True, return_offsets_mapping=True, return_special_tokens_mask=True,
                    truncation=False, return_attention_mask=False, return_token_type_ids=False)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]
    special: list[int] = list(enc["special_tokens_mask"])
    starts: list[int] = []
    pos = len(prefix)
    for t in texts:
        starts.append(pos)
        pos += len(t) + 1

    # owner of every content token: the last input that starts before the token ends (-1 = instruction)
    owners: list[int] = []
    for (_, end), is_special in zip(offsets, special, strict=True):
        owners.append(-2 if is_special else bisect.bisect_left(starts, end) - 1 if end > starts[0] else -1)
    counts = [0] * len(texts)
    for o in owners:
        if o >= 0:
            counts[o] += 1
    empty = [i for i, c in enumerate(counts) if c == 0]
    if empty:
        raise InvalidInputError(f"Input at index {empty[0]} has no tokens; late_chunking needs non-empty inputs")

    if len(ids) <= max_tokens:
        return [(ids, _spans_from_owners(owners, len(texts)))]
    if not truncate:
        raise TokenLimitExceededError(
            f"With late_chunking the inputs are joined into one text of {len(ids)} tokens (instruction and "
            f"special tokens included), over the model's limit of {max_tokens}; send fewer or shorter inputs "
            f"or set truncate=true")

    # truncate=true: pack whole inputs, in order, into windows that fit; cut an input that alone does not
    first = [p for p, s in enumerate(special) if s][:1]
    last = [p for p, s in enumerate(special) if s][-1:]
    head = [ids[p] for p in first] + [ids[p] for p, o in enumerate(owners) if o == -1]
    tail = [ids[p] for p in last]
    per_input: list[list[int]] = [[] for _ in texts]
    for p, o in enumerate(owners):
        if o >= 0:
            per_input[o].append(ids[p])
    budget = max_tokens - len(head) - len(tail)
    if budget < 1:
        raise TokenLimitExceededError(f"The task instruction alone fills the model's limit of {max_tokens} tokens")
    windows: list[list[list[int]]] = []
    used = budget + 1
    for toks in per_input:
        toks = toks[:budget]
        if used + len(toks) > budget:
            windows.append([])
            used = 0
        windows[-1].append(toks)
        used += len(toks)
    out: list[tuple[list[int], list[tuple[int, int]]]] = []
    for window in windows:
        seq = list(head)
        spans: list[tuple[int, int]] = []
        for j, toks in enumerate(window):
            start = 0 if j == 0 else len(seq)
            seq.extend(toks)
            spans.append((start, len(seq)))
        seq.extend(tail)
        spans[-1] = (spans[-1][0], len(seq))
        out.append((seq, spans))
    return out


def _spans_from_owners(owners: list[int], n: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) per input: instruction and leading special tokens go to the first input,
    trailing special tokens to the last."""
    ends = [0] * n
    for p, o in enumerate(owners):
        if o >= 0:
            ends[o] = p + 1
    spans: list[tuple[int, int]] = []
    start = 0
    for i in range(n):
        end = len(owners) if i == n - 1 else ends[i]
        spans.append((start, end))
        start = end
    return spans


__all__ = ["JinaV3Family", "LateChunkPayload", "TaskEmbedding", "TaskLinear", "TextPayload", "install_adapters",
           "late_chunk_windows"]


# ------------------------------------------------------------------------------------------------ GGUF
class GGUFJinaV3Family(JinaV3Family):
    """jina-embeddings-v3 on llama.cpp: the base GGUF + one LoRA GGUF per task, switched per batch through the
    backbone's `adapters` capability (items of different adapters never share a batch: the engine groups by
    adapter). Prefixes, grouping, mean pooling and late chunking are JinaV3Family's."""

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, adapter_names: list[str]) -> None:
        TextEmbeddingFamily.__init__(self, spec, model, tokenizer, device="cpu", pooling="mean",
                                     padding_side="right")
        self.adapter_mode = "llamacpp"
        self.adapter_names = adapter_names

    def prepare_task(self, task: str | None) -> None:
        return None

    def forward_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       group: Hashable) -> torch.Tensor:
        self.backbone.use_adapter(group if isinstance(group, str) else None)
        return self.backbone.encode(input_ids, attention_mask)


def _load_v3_gguf(spec: ModelSpec, folder: Path, backbone: Any) -> GGUFJinaV3Family:
    import tempfile

    from ..runtimes.backbone import ADAPTERS
    from ..runtimes.gguf_lora import fold_token_type_lora
    from ..runtimes.llamacpp_runtime import load_tokenizer, lora_files

    if ADAPTERS not in backbone.capabilities:
        raise ModelLoadError(f"{spec.id}: the {backbone.runtime} runtime cannot switch task adapters")
    gguf_path = backbone.path
    files = lora_files(gguf_path)
    # the converter names each file after the task (`lora_adaptations`); the row's adapter key may differ
    by_adapter = {t.adapter: files.get(t.name) or files.get(t.adapter) for t in spec.tasks if t.adapter}
    missing = sorted(a for a, f in by_adapter.items() if f is None)
    if missing:
        raise ModelLoadError(f"{spec.id}: no LoRA GGUF for {missing} next to {gguf_path.name} (expected "
                             f"lora-<task>-{gguf_path.name}, as llama.cpp's converter writes them); found "
                             f"{sorted(files) or 'none'}")
    # llama.cpp ignores the token-type LoRA the converter writes: fold it into the word-embedding LoRA (exact),
    # in a temporary copy (llama.cpp reads the adapter into memory at init, so the copy can go right after).
    with tempfile.TemporaryDirectory(prefix="jinaserve-lora-") as tmp:
        for name in sorted(by_adapter):
            src = by_adapter[name]
            assert src is not None
            folded = Path(tmp) / src.name
            backbone.add_adapter(name, folded if fold_token_type_lora(src, folded) else src)
    max_tokens = min(spec.max_tokens, backbone.n_ctx, backbone.n_batch, max(1, backbone.n_ctx_train - 2))
    spec = replace(spec, dims=backbone.hidden_size, max_tokens=max_tokens)
    return GGUFJinaV3Family(spec, backbone, load_tokenizer(folder, backbone, "right"), sorted(by_adapter))

