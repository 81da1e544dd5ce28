"""Options every family loader receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LoadOptions:
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    runtime: str = "torch"
    quant: str | None = None
    # "int8": the backbone runs as an ONNX Runtime dynamic-int8 graph (runtimes.int8_runtime); None = as loaded
    quantize: str | None = None
    # llamacpp runtime: context size and llama.cpp batch size in tokens (None = min(trained, 8192) / context)
    gguf_ctx_size: int | None = None
    gguf_batch_size: int | None = None
    offline: bool = False
    cache_dir: str | None = None
    quiet: bool = False  # no download progress bars (they show only when stderr is a terminal anyway)
    trust_remote_code: bool = False
    # Listwise rerankers (jina-reranker-v3): cap on one block's context, in tokens (None = the model's).
    rerank_block_tokens: int | None = None
    # jinaserve.images.ImageFetchPolicy for families that take images (None: its defaults)
    image_policy: Any = None
