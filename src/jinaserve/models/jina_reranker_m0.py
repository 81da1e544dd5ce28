"""jina-reranker-m0: a pointwise reranker on a Qwen2-VL-2B backbone (research/jina-api.md §6.1).

Prompt: "**Document**:\\n{doc}\\n**Query**:\\n{query}" followed by the score token (id 100); score =
sigmoid(MLP(h_last) − 2.65) where h_last is the final (normed) hidden state of that last token and the MLP
is Linear(H→H) + ReLU + Linear(H→1) (`score.0`, `score.2` in the checkpoint).

Text documents only in this version: the language model runs on transformers' native `Qwen2VLTextModel`
(SDPA, no KV cache, no remote code) and the vision tower is not loaded. For text-only inputs Qwen2-VL's
3-axis rotary positions are all equal to the token index, which is what the text model uses; right
padding with an attention mask keeps every sequence's positions as if it ran alone. Image documents are
refused with a clear 400.

Checkpoint layouts accepted: the published one (`model.*` language model, `visual.*`, `score.*`) and
transformers ≥ 4.52's (`model.language_model.*`, `model.visual.*`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
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

log = logging.getLogger("jinaserve.models.jina_reranker_m0")


def build_prompt(query: str, doc: str) -> str:
    return f"**Document**:\n{doc}\n**Query**:\n{query}"


@dataclass
class M0Payload:
    ids: list[int]


class JinaRerankerM0Family(ModelFamily):
    family_name = "jina_reranker_m0"

    def __init__(self, spec: ModelSpec, model: Any, score: torch.nn.Module, tokenizer: Any, *,
                 device: str = "cpu") -> None:
        self.spec = spec
        self.model = model
        self.score = score
        self.tokenizer = tokenizer
        self.device = device
        extra = spec.extra
        self.score_token_id = int(extra.get("score_token_id", 100))
        self.logit_bias = float(extra.get("logit_bias", 2.65))
        self.max_tokens = int(spec.max_tokens)
        self.max_query_tokens = int(extra.get("max_query_tokens", 512))
        # as the reference compute_score(): documents get the room the query does not need
        self.max_doc_tokens = max(self.max_tokens - self.max_query_tokens, self.max_query_tokens)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaRerankerM0Family:
        from transformers import AutoTokenizer, Qwen2VLConfig, Qwen2VLTextModel

        from ..runtimes.torch_runtime import configure_threads, load_pretrained, select_device, select_dtype

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        config = Qwen2VLConfig.from_pretrained(str(folder))
        text_config = config.text_config
        text_config.use_cache = False
        # published layout: model.* = language model; newer: model.language_model.*
        model = load_pretrained(Qwen2VLTextModel, folder, device=device, dtype=dtype, config=text_config,
                                key_mapping={r"^model\.language_model\.": "model."})
        score = _load_score_head(folder, text_config.hidden_size).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        if cls_score_token_oob(spec, len(tokenizer), text_config.vocab_size):
            raise ValueError(f"{folder}: score token id is outside the vocabulary")
        log.info("loaded %s from %s (Qwen2-VL text model, %d layers, hidden %d; text documents only; %s, %s)",
                 spec.id, folder, text_config.num_hidden_layers, text_config.hidden_size, device, dtype)
        return cls(spec, model, score, tokenizer, device=device)

    # ------------------------------------------------------------------ planning
    def encode(self, query: str, doc: str) -> list[int]:
        d_ids = self.tokenizer(doc, truncation=True, max_length=self.max_doc_tokens)["input_ids"]
        if len(d_ids) >= self.max_doc_tokens:
            doc = self.tokenizer.decode(d_ids)
        ids = self.tokenizer(build_prompt(query, doc), truncation=True, max_length=self.max_tokens - 1)["input_ids"]
        return [*ids, self.score_token_id]

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        for i, d in enumerate(job.documents):
            if d.text is None:
                raise InvalidInputError(f"Document at index {i} is an image; this server runs {self.spec.id!r} on "
                                        f"text documents only")
        with self._tokenizer_lock:
            payloads = [M0Payload(self.encode(job.query, d.text or "")) for d in job.documents]
        items = [WorkItem(p, len(p.ids)) for p in payloads]
        total = sum(len(p.ids) for p in payloads)

        def assemble(outs: list[Any]) -> RerankResult:
            return RerankResult(np.asarray(outs, dtype=np.float32), total)

        return RerankPlan(items, total, assemble)

    # ------------------------------------------------------------------ execution
    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        input_ids, mask = pad_batch([p.ids for p in payloads], self.pad_id, side="right", device=self.device)
        attention_mask = mask if len(payloads) > 1 else None
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        last = torch.stack([hidden[i, len(p.ids) - 1] for i, p in enumerate(payloads)]).float()
        logits = self.score(last).view(-1)
        return [float(x) for x in torch.sigmoid(logits - self.logit_bias).cpu()]


def cls_score_token_oob(spec: ModelSpec, tokenizer_size: int, vocab_size: int) -> bool:
    return int(spec.extra.get("score_token_id", 100)) >= max(tokenizer_size, vocab_size)


def _load_score_head(folder: Path, hidden: int) -> torch.nn.Module:
    from safetensors import safe_open

    wanted = {f"score.{i}.{k}" for i in (0, 2) for k in ("weight", "bias")}
    found: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            for k in wanted & set(sf.keys()):
                found[k] = sf.get_tensor(k)
    if set(found) != wanted:
        raise ValueError(f"{folder}: score head weights missing: {sorted(wanted - set(found))}")
    head = torch.nn.Sequential(torch.nn.Linear(hidden, found["score.0.weight"].shape[0]), torch.nn.ReLU(),
                               torch.nn.Linear(found["score.2.weight"].shape[1], 1))
    with torch.no_grad():
        head[0].weight.copy_(found["score.0.weight"].float())
        head[0].bias.copy_(found["score.0.bias"].float())
        head[2].weight.copy_(found["score.2.weight"].float())
        head[2].bias.copy_(found["score.2.bias"].float())
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head
