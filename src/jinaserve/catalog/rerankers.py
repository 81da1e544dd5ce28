"""Rows for Jina's rerankers (facts: docs/reference/hosted-api.md, sections "Rerank", "Per-model mechanics",
"jina-reranker-v3 prompt and scoring").

Score ranges: jina-reranker-v3 gives a cosine similarity in [-1, 1]; v2 and m0 give a sigmoid
probability in (0, 1).
"""

from __future__ import annotations

from .spec import Detect, ModelSpec

ROWS: list[ModelSpec] = [
    ModelSpec(
        id="jina-reranker-v3",
        family="jina_reranker_v3",
        kind="rerank",
        hf_repo="jinaai/jina-reranker-v3",
        aliases=("jina-reranker-v3-0.6b",),
        pooling="none",
        dims=512,
        max_tokens=131072,
        licence="CC-BY-NC-4.0",
        params="0.6B",
        description="Listwise reranker: Qwen3-0.6B backbone + 1024→512→512 projector; score = cosine of the "
        "projected query and document vectors (−1..1).",
        options=frozenset({"instruction", "max_doc_length", "return_embeddings"}),
        detect=(Detect(architectures=("JinaForRanking",), layout="JinaForRanking (Qwen3 + projector)"),),
        extra={
            "doc_token": "<|embed_token|>",
            "query_token": "<|rerank_token|>",
            "max_query_tokens": 512,
            "default_max_doc_length": 2048,
            "max_doc_length_limit": 8192,
            "block_size": 125,
            "projector_dim": 512,
        },
    ),
    ModelSpec(
        id="jina-reranker-v2-base-multilingual",
        family="cross_encoder",
        kind="rerank",
        hf_repo="jinaai/jina-reranker-v2-base-multilingual",
        aliases=("jina-reranker-v2", "jina-reranker-v2-base"),
        pooling="cls",
        max_tokens=1024,
        licence="CC-BY-NC-4.0",
        params="278M",
        description="XLM-RoBERTa cross-encoder; score = sigmoid(logit) (0..1); long documents are scored "
        "over sliding windows (max over windows).",
        extra={
            "max_query_tokens": 512,
            "window_overlap": 80,
        },
        # the published config names stock XLM-R classification with an `auto_map` to Jina's flash code
        detect=(Detect(architectures=("XLMRobertaForSequenceClassification",), auto_map=("modeling_xlm_roberta",),
                       layout="flash XLM-RoBERTa cross-encoder (remote-code key names)"),),
    ),
    ModelSpec(
        id="jina-reranker-m0",
        family="jina_reranker_m0",
        kind="rerank",
        hf_repo="jinaai/jina-reranker-m0",
        pooling="last",
        max_tokens=10240,
        licence="CC-BY-NC-4.0",
        params="2.44B",
        description="Qwen2-VL-2B pointwise reranker with an MLP head; score = sigmoid(MLP(last) − 2.65) (0..1).",
        detect=(Detect(architectures=("JinaVLForRanking",), layout="JinaVLForRanking (Qwen2-VL + score head)"),),
        extra={
            "score_token_id": 100,
            "logit_bias": 2.65,
            "max_query_tokens": 512,
        },
    ),
]
