"""jina-reranker-v1-base-en / -turbo-en / -tiny-en: JinaBERT cross-encoders (no remote code).

Published layout: `config.json` (`architectures: [JinaBertForSequenceClassification]`, `model_type` bert, ALiBi,
GLU MLP, 1 label), weights `bert.embeddings.*`, `bert.encoder.layer.N.*` (jina-bert-implementation names),
`bert.pooler.dense` and `classifier`. The score is sigmoid(classifier(tanh(pooler(h_[CLS])))), as the remote
code's `BertForSequenceClassification` head computes it (TEI's JinaBERT classifier does the same). Pairs,
truncation and batching are the cross-encoder family's (`cross_encoder.py`): `[CLS] query [SEP] doc [SEP]` with
token types 0 / 1, the query cut to 512 tokens, the document cut to fit the 8192-token context.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from ..catalog import ModelSpec
from ..errors import ModelLoadError
from .cross_encoder import CrossEncoderFamily
from .jinabert import JinaBertModel, read_raw_state, split_state
from .loading import LoadOptions

log = logging.getLogger("jinaserve.models.jina_reranker_v1")


class JinaBertClassifier(nn.Module):
    """JinaBERT + BERT sequence-classification head; `forward(...).logits` is (B, labels)."""

    def __init__(self, bert: JinaBertModel, pooler: nn.Linear | None, classifier: nn.Linear) -> None:
        super().__init__()
        self.bert = bert
        self.pooler = pooler
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        cls = self.bert(input_ids, attention_mask, token_type_ids)[:, 0]
        if self.pooler is not None:
            cls = torch.tanh(self.pooler(cls))
        return SimpleNamespace(logits=self.classifier(cls))


def _linear(extras: dict[str, torch.Tensor], name: str) -> nn.Linear | None:
    weight = extras.get(f"{name}.weight")
    if weight is None:
        return None
    bias = extras.get(f"{name}.bias")
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class JinaRerankerV1Family(CrossEncoderFamily):
    family_name = "jina_reranker_v1"

    @classmethod
    def load(cls, spec: ModelSpec, folder: Path, opts: LoadOptions) -> JinaRerankerV1Family:
        from transformers import AutoTokenizer

        from ..runtimes.torch_runtime import configure_threads, select_device, select_dtype

        configure_threads(opts.threads)
        device = select_device(opts.device)
        dtype = select_dtype(device, opts.dtype, fp32_only=True)  # ALiBi over long inputs overflows fp16
        config = json.loads((folder / "config.json").read_text())
        backbone, extras = split_state(read_raw_state(folder))
        classifier = _linear(extras, "classifier")
        if classifier is None:
            raise ModelLoadError(f"{folder}: no 'classifier.weight': not a JinaBertForSequenceClassification "
                                 f"checkpoint")
        if classifier.out_features != 1:
            raise ModelLoadError(f"{folder} has {classifier.out_features} labels; a reranker needs 1")
        try:
            bert = JinaBertModel.from_state(config, backbone, dtype=dtype, device=device, source=str(folder))
        except ValueError as exc:
            raise ModelLoadError(f"{spec.id}: {exc}") from exc
        model = JinaBertClassifier(bert, _linear(extras, "bert.pooler.dense"), classifier)
        model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        limit = min(spec.max_tokens, getattr(tokenizer, "model_max_length", spec.max_tokens) or spec.max_tokens)
        spec = replace(spec, max_tokens=int(limit))
        log.info("loaded JinaBERT reranker %s from %s (%d layers, pooler=%s, max_tokens=%d, device=%s)", spec.id,
                 folder, bert.config.num_hidden_layers, model.pooler is not None, limit, device)
        return cls(spec, model, tokenizer, device=device)


__all__: list[Any] = ["JinaBertClassifier", "JinaRerankerV1Family"]
