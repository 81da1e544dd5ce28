"""jina-clip-v1 and jina-clip-v2: text + EVA02 image embeddings in one space (facts: docs/more-models.md).

The text tower's architecture config lives in another published repo (`text_config.hf_model_name_or_path`);
`text_defaults` copies the values the reference loads from there (jina-bert-v2-base for v1, jina-embeddings-v3 for
v2). The loader reads the sizes from the weights; these defaults supply the rest.
"""

from __future__ import annotations

from .spec import Detect, ModelSpec, TaskSpec

CLIP_V2_QUERY_PREFIX = "Represent the query for retrieving evidence documents: "

ROWS: list[ModelSpec] = [
    ModelSpec(
        id="jina-clip-v2",
        family="jina_clip",
        kind="embedding",
        hf_repo="jinaai/jina-clip-v2",
        tasks=(TaskSpec("retrieval.query", None, CLIP_V2_QUERY_PREFIX, "query text (documents and images: no task)"),),
        default_task=None,
        pooling="mean",
        dims=1024,
        matryoshka_dims=(64, 128, 256, 512, 768, 1024),
        max_tokens=8192,
        licence="CC-BY-NC-4.0",
        params="865M",
        description="Jina-XLM-RoBERTa text + EVA02-L/14 vision (512×512), one 1024-d space for text and images, "
        "Matryoshka 64..1024, 89 languages.",
        extra={
            "text_backbone": "xlm-roberta",
            # jinaai/jina-embeddings-v3 config.json values the reference starts from
            "text_defaults": {"hidden_act": "gelu", "layer_norm_eps": 1e-5, "max_position_embeddings": 8194,
                              "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                              "position_embedding_type": "rotary", "rotary_emb_base": 20000.0},
            "text_head_dim": 64,
        },
        # the text tower's repo, named in config.json, tells v2 from v1 (both are JinaCLIPModel)
        detect=(Detect(architectures=("JinaCLIPModel",),
                       config={"text_config.hf_model_name_or_path": ("jinaai/jina-embeddings-v3",
                                                                     "jinaai/xlm-roberta-flash-implementation")},
                       layout="JinaCLIPModel: jina-embeddings-v3 text tower + EVA02 vision tower"),),
    ),
    ModelSpec(
        id="jina-clip-v1",
        family="jina_clip",
        kind="embedding",
        hf_repo="jinaai/jina-clip-v1",
        pooling="mean",
        dims=768,
        max_tokens=8192,
        licence="Apache-2.0",
        params="223M",
        fp32_only=True,  # ALiBi text tower (as jina-embeddings-v2)
        description="JinaBERT text + EVA02-B/16 vision (224×224), one 768-d space for text and images, English.",
        extra={
            "text_backbone": "jinabert",
            # jinaai/jina-bert-v2-base-en / jina-bert-flash-implementation config.json values
            "text_defaults": {"type_vocab_size": 2, "layer_norm_eps": 1e-12, "feed_forward_type": "geglu",
                              "position_embedding_type": "alibi", "pad_token_id": 0},
            "text_head_dim": 64,
            "ignore_dimensions": True,  # the hosted ClipV1 schema has no `dimensions`
        },
        detect=(Detect(architectures=("JinaCLIPModel",),
                       config={"text_config.hf_model_name_or_path": ("jinaai/jina-bert-flash-implementation",
                                                                     "jinaai/jina-bert-implementation")},
                       layout="JinaCLIPModel: JinaBERT text tower + EVA02 vision tower"),),
    ),
]
