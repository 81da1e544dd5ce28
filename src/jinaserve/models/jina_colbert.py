"""jina-colbert-v1-en / jina-colbert-v2: ColBERT late interaction on JinaBERT (v1) or Jina-XLM-RoBERTa (v2).

Published layout (Stanford ColBERT `HF_ColBERT` checkpoint): `config.json` of the backbone (`architectures:
[HF_ColBERT]`; v1 `model_type` bert with ALiBi/GLU, v2 xlm-roberta with RoPE in the flash layout), the backbone
weights under `bert.` / `roberta.` and `linear.weight` (dim × hidden, no bias); optional `artifact.metadata`
(ColBERT's own config: `query_token_id`, `doc_token_id`, `query_maxlen`, `attend_to_mask_tokens`,
`mask_punctuation`), which wins over the catalog row's defaults.

Encoding, as Stanford ColBERT's tokenizers and `ColBERT.query` / `ColBERT.doc` do:

* text → `[CLS] tokens [SEP]` (`<s> … </s>` for XLM-R), cut to (limit − 1) tokens, then the marker token is
  inserted after the first token: the query marker (v1 `[unused0]`, v2 `[QueryMarker]`) or the document marker
  (`[unused1]`, `[DocumentMarker]`);
* queries are cut to `query_length` (32) and padded to exactly 32 with `[MASK]` ("query augmentation"); the
  padding is attended to when `attend_to_query_expansion` (v2) and masked out of attention otherwise (v1); every
  one of the 32 positions yields a vector;
* documents keep their length (up to the model's 8192 tokens); the vectors of punctuation tokens (the first token
  id of each character of `string.punctuation`) are dropped;
* vector = L2-normalise(linear(last hidden state)); `dimensions` 64/96 (v2) keeps the first coordinates and
  normalises again (Matryoshka).

Rerank: score = Σ over query vectors of max over document vectors of their dot product (cosine), i.e. ColBERT's
MaxSim score, not rescaled.
"""

from __future__ import annotations

import json
import logging
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..catalog import ModelSpec
from ..errors import FieldError, InvalidInputError, ModelLoadError, ValidationFailedError
from ..jobs import EmbedInput, EmbedOptions, RerankJob, RerankResult
from ..runtimes.torch_runtime import pad_batch
from .base import EmbedPlan, ModelFamily, RerankPlan, WorkItem
from .loading import LoadOptions
from .text import tokenize

log = logging.getLogger("jinaserve.models.jina_colbert")

QUERY_TASK, DOCUMENT_TASK = "retrieval.query", "retrieval.passage"


@dataclass
class ColbertPayload:
    ids: list[int]
    attend: list[int]  # attention mask (0 on query expansion tokens when they are not attended)
    keep: list[bool] | None = None  # rows to output (None: all)


@dataclass
class ColbertSettings:
    query_marker: str
    document_marker: str
    query_length: int = 32
    attend_to_query_expansion: bool = False
    mask_punctuation: bool = True

    @classmethod
    def from_spec(cls, spec: ModelSpec, folder: Path) -> ColbertSettings:
        """Row defaults, overridden by the checkpoint's `artifact.metadata` (Stanford ColBERT config)."""
        e = spec.extra
        s = cls(str(e.get("query_marker", "[unused0]")), str(e.get("document_marker", "[unused1]")),
                int(e.get("query_length", 32)), bool(e.get("attend_to_query_expansion", False)))
        meta_file = folder / "artifact.metadata"
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            s = cls(str(meta.get("query_token_id", s.query_marker)), str(meta.get("doc_token_id", s.document_marker)),
                    int(meta.get("query_maxlen", s.query_length)),
                    bool(meta.get("attend_to_mask_tokens", s.attend_to_query_expansion)),
                    bool(meta.get("mask_punctuation", s.mask_punctuation)))
        return s


class JinaColBERTFamily(ModelFamily):
    family_name = "jina_colbert"
    multi_vector_only = True

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, linear: nn.Linear, settings: ColbertSettings, *,
                 backbone: str, device: str = "cpu") -> None:
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.linear = linear
        self.settings = settings
        self.backbone = backbone
        self.device = device
        self.max_tokens = spec.max_tokens
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.mask_id = tokenizer.mask_token_id
        self.markers = {QUERY_TASK: _token_id(tokenizer, settings.query_marker),
                        DOCUMENT_TASK: _token_id(tokenizer, settings.document_marker)}
        if self.mask_id is None:
            raise ModelLoadError(f"{spec.id}: the tokenizer has no mask token for query augmentation")
        encoded = [tokenizer.encode(c, add_special_tokens=False) for c in string.punctuation]
        self.skip_ids = {ids[0] for ids in encoded if ids} if settings.mask_punctuation else set()

    # ----------------------------------------------------------------- options
    def check_embed_options(self, options: EmbedOptions) -> None:
        allowed = self.spec.extra.get("allowed_dimensions")
        if self.spec.extra.get("ignore_dimensions"):
            options.dimensions = None  # not in the hosted v1 schema: ignored, as unknown fields are
        elif options.dimensions is not None and allowed and options.dimensions not in allowed:
            raise ValidationFailedError([FieldError(
                "body -> dimensions", f"Model {self.spec.id!r} takes dimensions {', '.join(map(str, allowed))}",
                "enum", options.dimensions)])
        dims, options.dimensions = options.dimensions, None  # the shared check knows single vectors only
        super().check_embed_options(options)
        options.dimensions = dims
        if options.late_chunking:
            raise ValidationFailedError([FieldError("body -> late_chunking", f"Model {self.spec.id!r} does not "
                                                    "support late_chunking", "value_error", True)])

    # ----------------------------------------------------------------- planning
    def encode(self, texts: Sequence[str], task: str, *, truncate: bool,
               indices: Sequence[int] | None = None) -> tuple[list[ColbertPayload], int]:
        """Payloads for texts in the role of `task` (query or document), and the real token count."""
        marker = self.markers[task]
        if task == QUERY_TASK:
            limit = self.settings.query_length - 1
            ids = tokenize(self.tokenizer, texts, max_tokens=limit, truncate=True, indices=indices)
        else:
            ids = tokenize(self.tokenizer, texts, max_tokens=self.max_tokens - 1, truncate=truncate, indices=indices)
        out: list[ColbertPayload] = []
        real = 0
        for seq in ids:
            seq = [*seq[:1], marker, *seq[1:]]
            real += len(seq)
            if task == QUERY_TASK:
                pad = self.settings.query_length - len(seq)
                attend = [1] * len(seq) + [int(self.settings.attend_to_query_expansion)] * pad
                out.append(ColbertPayload(seq + [int(self.mask_id)] * pad, attend))
            else:
                out.append(ColbertPayload(seq, [1] * len(seq), [t not in self.skip_ids for t in seq]))
        return out, real

    def plan_embed(self, inputs: Sequence[EmbedInput], options: EmbedOptions) -> EmbedPlan:
        bad = [FieldError(f"body -> input -> {i}", f"Model {self.spec.id!r} takes text only",
                          "value_error", "image" if x.image is not None else "token ids")
               for i, x in enumerate(inputs) if x.image is not None or x.token_ids is not None]
        if bad:
            raise ValidationFailedError(bad)
        task = options.task or self.spec.default_task or DOCUMENT_TASK
        payloads, real = self.encode([x.text or "" for x in inputs], task, truncate=options.truncate)
        dims = options.dimensions

        def assemble(outs: list[Any]) -> list[np.ndarray]:
            return [np.asarray(o)[:, :dims] if dims else np.asarray(o) for o in outs]

        tokenized = None
        if options.return_tokenized_input:
            tokenized = [[t for t, k in zip(self.tokenizer.convert_ids_to_tokens(p.ids), p.keep or [True] * len(p.ids),
                                            strict=True) if k] for p in payloads]
        return EmbedPlan([WorkItem(p, len(p.ids)) for p in payloads], real, assemble, tokenized)

    def plan_rerank(self, job: RerankJob) -> RerankPlan:
        docs = []
        for i, d in enumerate(job.documents):
            if d.text is None:
                raise InvalidInputError(f"Document at index {i} is not text; model {self.spec.id!r} ranks text only")
            docs.append(d.text)
        q, q_tokens = self.encode([job.query], QUERY_TASK, truncate=True)
        d, d_tokens = self.encode(docs, DOCUMENT_TASK, truncate=job.options.truncate)
        total = q_tokens + d_tokens

        def assemble(outs: list[Any]) -> RerankResult:
            query = np.asarray(outs[0], dtype=np.float32)
            scores = [maxsim(query, np.asarray(o, dtype=np.float32)) for o in outs[1:]]
            return RerankResult(np.asarray(scores, dtype=np.float32), total)

        return RerankPlan([WorkItem(p, len(p.ids)) for p in (*q, *d)], total, assemble)

    # ----------------------------------------------------------------- execution
    @torch.inference_mode()
    def run_batch(self, payloads: list[Any]) -> list[Any]:
        input_ids, _ = pad_batch([p.ids for p in payloads], self.pad_id, side="right", device=self.device)
        attend, _ = pad_batch([p.attend for p in payloads], 0, side="right", device=self.device)
        if self.backbone == "jinabert":
            hidden = self.model(input_ids, attend)
        else:
            hidden = self.model(input_ids=input_ids, attention_mask=attend).last_hidden_state
        vectors = F.normalize(self.linear(hidden).float(), p=2, dim=-1)
        outs = []
        for row, p in enumerate(payloads):
            v = vectors[row, :len(p.ids)]
            if p.keep is not None:
                v = v[torch.tensor(p.keep, device=v.device)]
            outs.append(v.cpu().numpy())
        return outs

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaColBERTFamily:
        from transformers import AutoTokenizer

        from ..runtimes.torch_runtime import configure_threads, select_device, select_dtype
        from .jina_v3_layout import read_weight_files

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=spec.fp32_only)
        config = json.loads((folder / "config.json").read_text())
        state = read_weight_files(folder)
        if "linear.weight" not in state:
            raise ModelLoadError(f"{folder}: no ColBERT projection 'linear.weight' in the checkpoint (the Stanford "
                                 f"ColBERT HF_ColBERT layout is expected)")
        weight = state.pop("linear.weight")
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            linear.weight.copy_(weight.float())
        backbone = str(spec.extra.get("backbone", "jinabert"))
        try:
            model = _backbone(backbone, config, state, dtype=dtype, device=device, source=str(folder))
        except ValueError as exc:
            raise ModelLoadError(f"{spec.id}: {exc}") from exc
        linear = linear.to(device=device, dtype=dtype).eval().requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        settings = ColbertSettings.from_spec(spec, folder)
        max_pos = int(config.get("max_position_embeddings", spec.max_tokens) or spec.max_tokens)
        limit = spec.max_tokens if backbone == "jinabert" else min(spec.max_tokens, max_pos - 2)
        dims = int(weight.shape[0])
        spec = replace(spec, dims=dims, max_tokens=limit,
                       matryoshka_dims=tuple(d for d in spec.matryoshka_dims if d <= dims))
        log.info("loaded ColBERT %s from %s (%s, %d-d vectors, query length %d, device=%s, dtype=%s)", spec.id,
                 folder, backbone, dims, settings.query_length, device, dtype)
        return cls(spec, model, tokenizer, linear, settings, backbone=backbone, device=device)


def maxsim(query: np.ndarray, document: np.ndarray) -> float:
    """ColBERT late interaction: Σ_query-vectors max_document-vectors ⟨q, d⟩ (rows unit length)."""
    if len(document) == 0:
        return 0.0
    return float((query @ document.T).max(axis=1).sum())


def _token_id(tokenizer: Any, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tokenizer.unk_token_id is not None and tid == tokenizer.unk_token_id):
        raise ModelLoadError(f"the tokenizer has no marker token {token!r}")
    return int(tid)


def _backbone(kind: str, config: dict[str, Any], state: dict[str, torch.Tensor], *, dtype: torch.dtype, device: str,
              source: str) -> Any:
    if kind == "jinabert":
        from .jinabert import JinaBertModel, split_state

        backbone, _ = split_state(state)
        return JinaBertModel.from_state(config, backbone, dtype=dtype, device=device, source=source)
    from .jina_v3_layout import build_native_model, convert_remote_state, native_config_from_remote

    native, _ = convert_remote_state(state, list(config.get("lora_adaptations") or []),
                                     float(config.get("lora_alpha", 1.0)))
    native = {k: v for k, v in native.items() if not k.startswith("pooler.")}
    return build_native_model(native_config_from_remote(config), native, device=device, dtype=dtype)
