"""jina-reranker-v1-base-en / -turbo-en / -tiny-en: JinaBERT cross-encoders (facts: docs/more-models.md).

`JinaBertForSequenceClassification`: JinaBERT → [CLS] → `bert.pooler.dense` + tanh → `classifier` (1 label);
score = sigmoid(logit), a probability in (0, 1). Documents longer than the context are truncated (query first).
"""

from __future__ import annotations

from .spec import Detect, ModelSpec

_V1 = {
    "base-en": ("137M", "JinaBERT-base (12 layers) cross-encoder, English, 8k context"),
    "turbo-en": ("37.8M", "distilled JinaBERT cross-encoder (faster), English, 8k context"),
    "tiny-en": ("33M", "distilled JinaBERT cross-encoder (fastest), English, 8k context"),
}

ROWS: list[ModelSpec] = [
    ModelSpec(
        id=f"jina-reranker-v1-{size}",
        family="jina_reranker_v1",
        kind="rerank",
        hf_repo=f"jinaai/jina-reranker-v1-{size}",
        pooling="cls",
        max_tokens=8192,
        licence="Apache-2.0",
        params=params,
        fp32_only=True,  # ALiBi
        description=f"{desc}; score = sigmoid(logit) (0..1).",
        extra={"max_query_tokens": 512},
        # the three sizes have the same files: a name (HF cache path, model card title, NAME=) picks the size,
        # an unnamed folder is served with the base row's facts (same family, `priority`)
        detect=(Detect(architectures=("JinaBertForSequenceClassification",), priority=1 if size == "base-en" else 0,
                       layout="JinaBertForSequenceClassification (JinaBERT cross-encoder)"),),
    )
    for size, (params, desc) in _V1.items()
]
