"""jina-colbert-v1-en and jina-colbert-v2: late-interaction (ColBERT) models (facts: docs/more-models.md).

Output: one vector per token (`/v1/embeddings` multi-vector items, `/v1/multi-vector`); `/v1/rerank` scores by
MaxSim: the sum over the query's vectors of the best cosine with any document vector (the ColBERT score, not
rescaled: 0..query_length for the usual non-negative similarities). `input_type` query / document is the task
retrieval.query / retrieval.passage (default: document, as hosted).
"""

from __future__ import annotations

from .spec import Detect, ModelSpec, TaskSpec

COLBERT_TASKS = (
    TaskSpec("retrieval.query", None, "", "queries: query marker, padded to the query length with [MASK]"),
    TaskSpec("retrieval.passage", None, "", "documents: document marker, punctuation vectors dropped (default)"),
)

ROWS: list[ModelSpec] = [
    ModelSpec(
        id="jina-colbert-v2",
        family="jina_colbert",
        kind="embedding",
        hf_repo="jinaai/jina-colbert-v2",
        tasks=COLBERT_TASKS,
        default_task="retrieval.passage",
        pooling="none",
        dims=128,
        matryoshka_dims=(64, 96, 128),
        max_tokens=8192,
        licence="CC-BY-NC-4.0",
        params="560M",
        description="Jina-XLM-RoBERTa ColBERT: 128-d vectors per token (64/96 by Matryoshka cut), queries 32 tokens, "
        "89 languages.",
        options=frozenset({"return_multivector"}),
        extra={
            "backbone": "xlm-roberta",
            "dims_tensor": "linear.weight",  # its rows are the vector size (not the backbone's hidden size)
            "query_marker": "[QueryMarker]",
            "document_marker": "[DocumentMarker]",
            "query_length": 32,
            "attend_to_query_expansion": True,
            "allowed_dimensions": (64, 96, 128),
        },
        detect=(Detect(architectures=("HF_ColBERT",), model_type=("xlm-roberta",),
                       layout="HF_ColBERT: XLM-RoBERTa + linear projection"),),
    ),
    ModelSpec(
        id="jina-colbert-v1-en",
        family="jina_colbert",
        kind="embedding",
        hf_repo="jinaai/jina-colbert-v1-en",
        tasks=COLBERT_TASKS,
        default_task="retrieval.passage",
        pooling="none",
        dims=128,
        max_tokens=8192,
        licence="Apache-2.0",
        params="137M",
        fp32_only=True,  # ALiBi JinaBERT backbone
        description="JinaBERT ColBERT: 128-d vectors per token, queries 32 tokens, English, 8k documents.",
        options=frozenset({"return_multivector"}),
        extra={
            "backbone": "jinabert",
            "dims_tensor": "linear.weight",
            "query_marker": "[unused0]",
            "document_marker": "[unused1]",
            "query_length": 32,
            "attend_to_query_expansion": False,
            "ignore_dimensions": True,  # the hosted ColbertV1 schema has no `dimensions`
        },
        detect=(Detect(architectures=("HF_ColBERT",), model_type=("bert",),
                       layout="HF_ColBERT: JinaBERT + linear projection"),),
    ),
]
