"""Cross-encoder rerankers: a sequence-classification checkpoint with one label.

Each (query, document) pair, or each window of a long document, is one work item, so pairs from
concurrent requests share batches. Score = sigmoid(logit), a probability in (0, 1).

Two ways to treat a document longer than the model's context:
- truncate (generic cross-encoders, as sentence-transformers' CrossEncoder does);
- sliding windows (catalog rows with `window_overlap`, e.g. jina-reranker-v2-base-multilingual, as its
  `rerank()` helper): the query (with its special tokens, cut to `max_query_tokens`) is paired with
  windows of `max_tokens − len(query) − 2` document tokens that overlap by
  `min(window_overlap, window // 4)` tokens, the last window ending at the document's end; the input is
  `<s> q </s></s> window </s>` and the document's score is the maximum over its windows.

jina-reranker-v2's published weights use a remote-code "flash" XLM-RoBERTa layout (`mixer.Wqkv`, `norm1`,
`mlp.fc1`, ...). They are mapped onto transformers' native `XLMRobertaForSequenceClassification` (SDPA
attention), so no remote code runs.
"""

from __future__ import annotations

import json
import logging
import re
import threading
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
        self.max_query_tokens = min(int(spec.extra.get("max_query_tokens", self.max_tokens // 2)),
                                    self.max_tokens // 2)
        overlap = spec.extra.get("window_overlap")
        self.window_overlap: int | None = int(overlap) if overlap is not None else None
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.uses_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.sep_id = int(sep) if sep is not None else None
        # A fast tokenizer's truncation settings are shared state: concurrent plans must not interleave.
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> CrossEncoderFamily:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        from ..runtimes.torch_runtime import (
            auto_cpu_dtype,
            configure_threads,
            load_pretrained,
            select_device,
            select_dtype,
        )

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        if is_flash_xlmr(folder):
            model, config = load_flash_xlmr(folder, device=device, dtype=dtype)
        else:
            config = AutoConfig.from_pretrained(str(folder))
            if getattr(config, "num_labels", 1) != 1:
                raise ValueError(f"{folder} has {config.num_labels} labels; a cross-encoder reranker needs 1")
            model = load_pretrained(AutoModelForSequenceClassification, folder, device=device, dtype=dtype)
        model, dtype = auto_cpu_dtype(model, device=device, requested=opts.dtype, fp32_only=spec.fp32_only,
                                      name=spec.id)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        max_pos = getattr(config, "max_position_embeddings", 512) or 512
        if getattr(config, "model_type", "") in {"xlm-roberta", "roberta", "camembert"}:
            max_pos -= 2  # RoBERTa positions start after the padding index
        limit = min(spec.max_tokens or 512, getattr(tokenizer, "model_max_length", 512) or 512, max_pos)
        spec = replace(spec, max_tokens=int(limit))
        log.info("loaded cross-encoder %s from %s (max_tokens=%s, windows=%s, device=%s)", spec.id, folder, limit,
                 spec.extra.get("window_overlap") is not None, device)
        return cls(spec, model, tokenizer, device=device)

    # ------------------------------------------------------------------ planning
    def encode_pairs(self, query: str, docs: list[str]) -> list[PairPayload]:
        """One truncated pair per document (generic cross-encoders)."""
        q_ids = self.tokenizer(query, add_special_tokens=False, truncation=True,
                               max_length=self.max_query_tokens)["input_ids"]
        q_text = self.tokenizer.decode(q_ids)
        enc = self.tokenizer([q_text] * len(docs), docs, truncation="only_second",
                             max_length=self.max_tokens, padding=False, return_attention_mask=False)
        type_ids = enc.get("token_type_ids") if self.uses_type_ids else None
        return [PairPayload(list(ids), list(type_ids[i]) if type_ids is not None else None)
                for i, ids in enumerate(enc["input_ids"])]

    def encode_windows(self, query: str, docs: list[str]) -> tuple[list[PairPayload], list[int]]:
        """Sliding-window pairs `<s> q </s></s> window </s>` and the document index of each."""
        assert self.window_overlap is not None
        if self.sep_id is None:
            raise ValueError(f"{self.spec.id}: tokenizer has no separator token for windowed pairs")
        q_ids = list(self.tokenizer(query, truncation=True, max_length=self.max_query_tokens)["input_ids"])
        window = self.max_tokens - len(q_ids) - 2
        if window < 1:
            raise InvalidInputError(f"Query is too long for model {self.spec.id!r}")
        overlap = min(self.window_overlap, window // 4)
        doc_ids = self.tokenizer(docs, add_special_tokens=False, truncation=False,
                                 return_attention_mask=False)["input_ids"]
        payloads: list[PairPayload] = []
        owners: list[int] = []
        for pid, ids in enumerate(doc_ids):
            for w in sliding_windows(list(ids), window, overlap):
                seq = [*q_ids, self.sep_id, *w, self.sep_id]
                type_ids = ([0] * len(q_ids) + [1] * (len(w) + 2)) if self.uses_type_ids else None
                payloads.append(PairPayload(seq, type_ids))
                owners.append(pid)
        return payloads, owners

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        docs = []
        for i, d in enumerate(job.documents):
            if d.text is None:
                raise InvalidInputError(f"Document at index {i} is not text; model {self.spec.id!r} ranks "
                                        f"text only")
            docs.append(d.text)
        n_docs = len(docs)
        with self._tokenizer_lock:
            if self.window_overlap is not None:
                payloads, owners = self.encode_windows(job.query, docs) if docs else ([], [])
            else:
                payloads = self.encode_pairs(job.query, docs) if docs else []
                owners = list(range(n_docs))
        items = [WorkItem(p, len(p.ids)) for p in payloads]
        total = sum(len(p.ids) for p in payloads)

        def assemble(outs: list[Any]) -> RerankResult:
            scores = np.zeros(n_docs, dtype=np.float32)
            for owner, s in zip(owners, outs, strict=True):
                scores[owner] = max(scores[owner], float(s))
            return RerankResult(scores, total)

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


def sliding_windows(ids: list[int], window: int, overlap: int) -> list[list[int]]:
    """Windows of `window` tokens, `overlap` apart from the next; the last one ends at the end."""
    if len(ids) <= window:
        return [ids]
    out = []
    start = 0
    while start < len(ids):
        end = start + window
        if end >= len(ids):
            out.append(ids[-window:])
            break
        out.append(ids[start:end])
        start = end - overlap
    return out


# ---------------------------------------------------------------------- flash XLM-R layout
_FLASH_LAYER = re.compile(r"^roberta\.encoder\.layers\.(\d+)\.(.+)$")
_FLASH_NAMES = {
    "mixer.out_proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
    "norm2": "output.LayerNorm",
}


def is_flash_xlmr(folder: Path) -> bool:
    """True for the remote-code flash XLM-RoBERTa layout of jina-reranker-v2 (and jina-embeddings-v3)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    auto_map = config.get("auto_map") or {}
    return any("modeling_xlm_roberta" in str(v) for v in auto_map.values()) and \
        config.get("position_embedding_type", "absolute") == "absolute"


def map_flash_xlmr_state(state: dict[str, torch.Tensor], hidden: int) -> dict[str, torch.Tensor]:
    """Flash-layout keys → native XLMRobertaForSequenceClassification keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("roberta.emb_ln."):
            out["roberta.embeddings.LayerNorm." + key.rsplit(".", 1)[1]] = value
            continue
        m = _FLASH_LAYER.match(key)
        if m is None:
            out[key] = value
            continue
        layer, rest = m.groups()
        base = f"roberta.encoder.layer.{layer}."
        module, _, kind = rest.rpartition(".")
        if module == "mixer.Wqkv":
            q, k, v = value.split(hidden, dim=0)
            for name, part in (("query", q), ("key", k), ("value", v)):
                out[f"{base}attention.self.{name}.{kind}"] = part
        elif module in _FLASH_NAMES:
            out[f"{base}{_FLASH_NAMES[module]}.{kind}"] = value
        else:
            raise ValueError(f"unexpected key {key!r} in a flash XLM-RoBERTa checkpoint")
    return out


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if files:
        state: dict[str, torch.Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
        return state
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not bins:
        raise FileNotFoundError(f"{folder} has no *.safetensors or pytorch_model*.bin weights")
    state = {}
    for f in bins:
        state.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return state


def load_flash_xlmr(folder: Path, *, device: str, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    raw = json.loads((folder / "config.json").read_text())
    drop = {"auto_map", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
            "_name_or_path", "use_flash_attn"}
    config = XLMRobertaConfig(**{k: v for k, v in raw.items() if k not in drop})
    if getattr(config, "num_labels", 1) != 1:
        raise ValueError(f"{folder} has {config.num_labels} labels; a cross-encoder reranker needs 1")
    model = XLMRobertaForSequenceClassification._from_config(config, attn_implementation="sdpa")
    state = map_flash_xlmr_state(read_state_dict(folder), config.hidden_size)
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = {n for n, _ in model.named_parameters()}
    missing_params = [k for k in missing if k in params]
    if missing_params or unexpected:
        raise ValueError(f"{folder}: flash XLM-RoBERTa weights do not fit (missing {missing_params[:5]}, "
                         f"unexpected {list(unexpected)[:5]})")
    model = model.to(device=device, dtype=dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, config
