"""Base of every transformers text-embedding family: tokenise with the task prefix, batch, run the
backbone, pool. Subclasses add adapters (per-`group` weights), other pooling or late chunking.

Also gives every embedding model a rerank path: cosine between the query embedding (the model's
query task, if it has one) and each document embedding (its passage task).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..catalog import ModelSpec
from ..errors import InvalidInputError
from ..jobs import EmbedInput, EmbedOptions, RerankJob, RerankResult
from ..outputs import cosine_similarity
from ..runtimes.backbone import Backbone, as_backbone
from ..runtimes.torch_runtime import pad_batch
from .base import EmbedPlan, ModelFamily, RerankPlan, WorkItem
from .pooling import pool
from .text import check_token_ids, texts_of, tokenize

log = logging.getLogger("jinaserve.models.text")


@dataclass
class TextPayload:
    ids: list[int]
    group: Hashable = None  # adapter / per-task weights key; same for every item of a batch


class TextEmbeddingFamily(ModelFamily):
    """A backbone (any runtime: `runtimes.backbone`) + pooling. `self.backbone.encode(ids, mask)` → last
    hidden state; `self.model` is what the family was built with (a torch module or the backbone itself)."""

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, *, device: str = "cpu",
                 pooling: str | None = None, padding_side: str | None = None,
                 max_tokens: int | None = None) -> None:
        self.spec = spec
        self.model = model
        self.backbone: Backbone = as_backbone(model)
        self.tokenizer = tokenizer
        self.device = device
        self.pooling = pooling or spec.pooling
        self.padding_side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
        self.max_tokens = max_tokens or spec.max_tokens
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)
        self.vocab_size = len(tokenizer)

    # ----------------------------------------------------------------- hooks for subclasses
    def prefix_for(self, task: str | None) -> str:
        t = self.spec.task(task)
        return t.prefix if t else ""

    def group_for(self, task: str | None) -> Hashable:
        """Batch key: items of different adapters never share a batch."""
        t = self.spec.task(task)
        return t.adapter if t else None

    def forward_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       group: Hashable) -> torch.Tensor:
        return self.backbone.encode(input_ids, attention_mask)

    def postprocess(self, pooled: torch.Tensor, group: Hashable) -> torch.Tensor:
        """Applied after pooling (e.g. a Dense projection)."""
        return pooled

    # Families whose forward patches the backbone's weights per task (LoRA) set this False.
    int8_capable = True

    def quantize_int8(self, folder: Path, opts: Any) -> None:
        if not self.int8_capable:
            super().quantize_int8(folder, opts)
        from .base import int8_backbone_for

        self.backbone = int8_backbone_for(self, self.model, folder, opts)
        self.model = self.backbone  # the float32 module is no longer held

    # ----------------------------------------------------------------- GGUF (llama.cpp backbone)
    @classmethod
    def load_gguf(cls, spec: ModelSpec, folder: Path, backbone: Backbone, opts: Any, *,
                  pooling: str | None = None, max_tokens: int | None = None, dims: int | None = None,
                  **kwargs: Any) -> TextEmbeddingFamily:
        """This family around a llama.cpp backbone (`models.gguf`): the HF tokenizer next to the GGUF, or the
        GGUF's own vocabulary; max tokens capped by llama.cpp's context and batch."""
        from ..runtimes.llamacpp_runtime import load_tokenizer

        dims = dims or backbone.hidden_size
        if spec.dims and spec.dims != dims:
            log.warning("%s: the GGUF's hidden size is %d, the catalog says %d; serving %d-d vectors", spec.id,
                        dims, spec.dims, dims)
        pooling = pooling or spec.pooling
        limit = min(int(max_tokens or spec.max_tokens or backbone.n_ctx), backbone.n_ctx, backbone.n_batch)
        spec = replace(spec, dims=dims, max_tokens=limit, pooling=pooling)  # type: ignore[arg-type]
        padding_side = spec.extra.get("padding_side")
        tokenizer = load_tokenizer(folder, backbone, padding_side)
        return cls(spec, backbone, tokenizer, device="cpu", pooling=pooling, padding_side=padding_side,
                   max_tokens=limit, **kwargs)

    # ----------------------------------------------------------------- planning
    def tokenize_inputs(self, inputs: Sequence[EmbedInput], task: str | None,
                        truncate: bool) -> list[list[int]]:
        texts = texts_of(inputs, self.spec.id)
        prefix = self.prefix_for(task)
        text_idx = [i for i, t in enumerate(texts) if t is not None]
        ids: list[list[int] | None] = [None] * len(inputs)
        tokenized = tokenize(self.tokenizer, [prefix + texts[i] for i in text_idx],  # type: ignore[operator]
                             max_tokens=self.max_tokens, truncate=truncate, indices=text_idx)
        for pos, i in enumerate(text_idx):
            ids[i] = tokenized[pos]
        for i, item in enumerate(inputs):
            if item.token_ids is not None:
                ids[i] = check_token_ids(item.token_ids, vocab_size=self.vocab_size,
                                         max_tokens=self.max_tokens, truncate=truncate, index=i)
        return ids  # type: ignore[return-value]

    def plan_embed(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        task = self.resolve_task(options.task)
        ids = self.tokenize_inputs(inputs, task, options.truncate)
        group = self.group_for(task)
        items = [WorkItem(TextPayload(x, group), len(x), group) for x in ids]
        return EmbedPlan(items, sum(len(x) for x in ids), lambda outs: list(outs))

    # ----------------------------------------------------------------- execution
    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        group = payloads[0].group
        input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, side=self.padding_side,
                                    device=self.device)
        hidden = self.forward_hidden(input_ids, mask, group)
        pooled = self.postprocess(pool(self.pooling, hidden, mask), group)
        return list(pooled.float().cpu().numpy())

    # ----------------------------------------------------------------- rerank by cosine
    def rerank_tasks(self) -> tuple[str | None, str | None]:
        names = self.spec.task_names
        q = self.spec.extra.get("rerank_query_task") or ("retrieval.query" if "retrieval.query" in names
                                                          else self.spec.default_task)
        d = self.spec.extra.get("rerank_document_task") or ("retrieval.passage" if "retrieval.passage"
                                                             in names else self.spec.default_task)
        return q, d

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        q_task, d_task = self.rerank_tasks()
        docs: list[EmbedInput] = []
        for i, d in enumerate(job.documents):
            if d.text is not None:
                docs.append(EmbedInput(text=d.text))
            elif self.embeds_images and d.image is not None:
                docs.append(EmbedInput(image=d.image))
            else:
                raise InvalidInputError(f"Document at index {i} is not text; model {self.spec.id!r} "
                                        f"ranks text only")
        q_plan = self.plan_embed([EmbedInput(text=job.query)],
                                 EmbedOptions(task=q_task, truncate=True))
        d_plan = self.plan_embed(docs, EmbedOptions(task=d_task, truncate=job.options.truncate))
        n_q = len(q_plan.items)

        def assemble(outs: list[Any]) -> RerankResult:
            q = np.asarray(q_plan.assemble(outs[:n_q])[0])
            d = np.stack(d_plan.assemble(outs[n_q:])) if job.documents else np.zeros((0, q.shape[-1]))
            scores = cosine_similarity(d, q) if len(d) else np.zeros(0, dtype=np.float32)
            return RerankResult(np.asarray(scores, dtype=np.float32),
                                q_plan.total_tokens + d_plan.total_tokens)

        return RerankPlan(q_plan.items + d_plan.items, q_plan.total_tokens + d_plan.total_tokens, assemble)
