"""Generic cross-encoder reranker: a sequence-classification checkpoint with one label.

Each (query, document) pair is one work item, so pairs from concurrent requests share batches.
Score = sigmoid(logit), a probability in (0, 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..catalog import ModelSpec
from ..errors import InvalidInputError
from ..jobs import RerankJob, RerankResult
from ..runtimes.torch_runtime import pad_batch
from .base import ModelFamily, RerankPlan, WorkItem
from .loading import LoadOptions

log = logging.getLogger("jinaserve.models.cross_encoder")


@dataclass
class PairPayload:
    ids: list[int]
    type_ids: list[int] | None = None


class CrossEncoderFamily(ModelFamily):
    family_name = "cross_encoder"

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, *, device: str = "cpu",
                 max_tokens: int | None = None) -> None:
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_tokens = max_tokens or spec.max_tokens
        self.max_query_tokens = int(spec.extra.get("max_query_tokens", self.max_tokens // 2))
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.uses_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", [])

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> CrossEncoderFamily:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        from ..runtimes.torch_runtime import configure_threads, load_pretrained, select_device, select_dtype

        configure_threads(opts.threads)
        config = AutoConfig.from_pretrained(str(folder))
        if getattr(config, "num_labels", 1) != 1:
            raise ValueError(f"{folder} has {config.num_labels} labels; a cross-encoder reranker needs 1")
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        model = load_pretrained(AutoModelForSequenceClassification, folder, device=device, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        limit = min(spec.max_tokens or 512, getattr(tokenizer, "model_max_length", 512) or 512,
                    getattr(config, "max_position_embeddings", 512) or 512)
        spec = replace(spec, max_tokens=int(limit))
        log.info("loaded cross-encoder %s from %s (max_tokens=%s, device=%s)", spec.id, folder, limit, device)
        return cls(spec, model, tokenizer, device=device)

    # ------------------------------------------------------------------ planning
    def encode_pairs(self, query: str, docs: list[str]) -> list[PairPayload]:
        q_ids = self.tokenizer(query, add_special_tokens=False, truncation=True,
                               max_length=self.max_query_tokens)["input_ids"]
        q_text = self.tokenizer.decode(q_ids)
        enc = self.tokenizer([q_text] * len(docs), docs, truncation="only_second",
                             max_length=self.max_tokens, padding=False, return_attention_mask=False)
        type_ids = enc.get("token_type_ids") if self.uses_type_ids else None
        return [PairPayload(list(ids), list(type_ids[i]) if type_ids is not None else None)
                for i, ids in enumerate(enc["input_ids"])]

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        docs = []
        for i, d in enumerate(job.documents):
            if d.text is None:
                raise InvalidInputError(f"Document at index {i} is not text; model {self.spec.id!r} ranks "
                                        f"text only")
            docs.append(d.text)
        payloads = self.encode_pairs(job.query, docs) if docs else []
        items = [WorkItem(p, len(p.ids)) for p in payloads]
        total = sum(len(p.ids) for p in payloads)

        def assemble(outs: list[Any]) -> RerankResult:
            return RerankResult(np.asarray(outs, dtype=np.float32), total)

        return RerankPlan(items, total, assemble)

    # ------------------------------------------------------------------ execution
    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, device=self.device)
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
        if payloads[0].type_ids is not None:
            type_ids, _ = pad_batch([p.type_ids for p in payloads], 0, device=self.device)
            kwargs["token_type_ids"] = type_ids
        logits = self.model(**kwargs).logits.float().view(-1)
        return [float(x) for x in torch.sigmoid(logits).cpu()]
